//! `Sparse<T>`: a spec section that is usually left at its default, kept as one pointer.
//!
//! A service's spec carries sections most services never set (process knobs: ulimits,
//! capabilities, sysctls, seccomp, ...). Inline, each costs its full size in every service the
//! store holds, whether set or not (issue 17: a `Service` was 1,264 bytes inline, and the
//! store's per-service memory is the target). `Sparse<T>` holds nothing for the default and a
//! box otherwise. It reads as a `&T` (the shared default when unset), is written through
//! `DerefMut` (which boxes a default first), compares by value, and serializes exactly as `T`,
//! so logs, snapshots and API messages are unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut};

/// The one shared default a [`Sparse<T>`] reads as when unset.
pub trait SharedDefault: Default + PartialEq + 'static {
    fn shared_default() -> &'static Self;
}

/// Implements [`SharedDefault`] for types whose `Default` is the value to share.
#[macro_export]
macro_rules! shared_default {
    ($t:ty) => {
        impl $crate::sparse::SharedDefault for $t {
            fn shared_default() -> &'static Self {
                static D: std::sync::LazyLock<$t> = std::sync::LazyLock::new(<$t>::default);
                &D
            }
        }
    };
}

/// `T`, boxed only when it differs from its default. See the module docs.
#[derive(Clone)]
pub struct Sparse<T: SharedDefault>(Option<Box<T>>);

impl<T: SharedDefault> Sparse<T> {
    /// Whether no value is held (reads give the default). A value written back to the
    /// default through `DerefMut` stays held until the next [`Sparse::from`].
    pub fn is_unset(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: SharedDefault> Default for Sparse<T> {
    fn default() -> Self {
        Sparse(None)
    }
}

impl<T: SharedDefault> From<T> for Sparse<T> {
    fn from(v: T) -> Self {
        if v == *T::shared_default() {
            Sparse(None)
        } else {
            Sparse(Some(Box::new(v)))
        }
    }
}

impl<T: SharedDefault> Deref for Sparse<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or_else(|| T::shared_default())
    }
}

impl<T: SharedDefault> DerefMut for Sparse<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Default::default)
    }
}

impl<T: SharedDefault> PartialEq for Sparse<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: SharedDefault + Eq> Eq for Sparse<T> {}

impl<T: SharedDefault + std::fmt::Debug> std::fmt::Debug for Sparse<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: SharedDefault + Serialize> Serialize for Sparse<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: SharedDefault + Deserialize<'de>> Deserialize<'de> for Sparse<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Sparse::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    struct Knobs {
        caps: Vec<String>,
        read_only: bool,
    }
    shared_default!(Knobs);

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Holder {
        knobs: Sparse<Knobs>,
    }

    #[test]
    fn the_default_is_held_as_nothing_and_read_as_the_default() {
        let s = Sparse::from(Knobs::default());
        assert!(s.is_unset());
        assert_eq!(*s, Knobs::default());
        assert!(Sparse::<Knobs>::default().is_unset());
        assert_eq!(std::mem::size_of::<Sparse<Knobs>>(), 8);
    }

    #[test]
    fn a_write_boxes_the_value_and_reads_see_it() {
        let mut h = Holder::default();
        h.knobs.read_only = true;
        assert!(!h.knobs.is_unset());
        assert!(h.knobs.read_only);
        h.knobs.caps.push("NET_ADMIN".into());
        assert_eq!(h.knobs.caps, ["NET_ADMIN"]);
    }

    #[test]
    fn values_compare_by_what_they_read_as() {
        let mut written_back = Holder::default().knobs;
        written_back.read_only = true;
        written_back.read_only = false;
        assert!(!written_back.is_unset());
        assert_eq!(written_back, Sparse::default());
        assert_ne!(
            Sparse::from(Knobs {
                read_only: true,
                ..Default::default()
            }),
            written_back
        );
    }

    #[test]
    fn serialized_exactly_as_the_value_and_read_back_sparse() {
        let set = Knobs {
            caps: vec!["SYS_TIME".into()],
            read_only: true,
        };
        let json = serde_json::to_string(&Holder {
            knobs: set.clone().into(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::to_string(&serde_json::json!({"knobs": set})).unwrap()
        );
        let back: Holder = serde_json::from_str(&json).unwrap();
        assert_eq!(*back.knobs, set);
        let unset: Holder =
            serde_json::from_str(r#"{"knobs":{"caps":[],"read_only":false}}"#).unwrap();
        assert!(unset.knobs.is_unset());
        assert_eq!(
            serde_json::to_string(&unset).unwrap(),
            r#"{"knobs":{"caps":[],"read_only":false}}"#
        );
    }
}
