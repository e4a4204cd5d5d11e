//! Typed identifiers. Every object id is a 25-character lower-case base36 string, generated
//! randomly (as docker does); the newtypes keep a `NodeId` from being passed as a `ServiceId`.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        /// Immutable and shared: a clone (the store's map key, the index entries, the
        /// copies in change events and sessions) is a reference count, not a new string.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(std::sync::Arc<str>);

        impl Default for $name {
            fn default() -> Self {
                Self(std::sync::Arc::from(""))
            }
        }

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self::new(crate::util::random_base36(25))
            }
            /// Wraps an existing id string (as read from the wire or disk).
            pub fn new(s: impl Into<String>) -> Self {
                Self(std::sync::Arc::from(s.into()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The 12-character prefix shown in tables.
            pub fn short(&self) -> &str {
                &self.0[..self.0.len().min(12)]
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(std::sync::Arc::from(s))
            }
        }
    };
}

id_type!(
    /// Identity of a host in the cluster.
    NodeId
);
id_type!(
    /// Identity of a service.
    ServiceId
);
id_type!(
    /// Identity of one attempt to run one container.
    TaskId
);
id_type!(
    /// Identity of the cluster (certificate O field).
    ClusterId
);
id_type!(
    /// Identity of a network.
    NetworkId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_and_short_is_prefix() {
        let a = ServiceId::generate();
        let b = ServiceId::generate();
        assert_ne!(a, b);
        assert_eq!(a.short().len(), 12);
        assert!(a.as_str().starts_with(a.short()));
    }
}
