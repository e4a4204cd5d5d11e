//! The version and timestamps every stored object carries. A leaf: the object modules use it,
//! it uses none of them.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Meta {
    /// Raft index of the last write to this object; 0 for an object not yet written.
    pub version: u64,
    /// Unix time in milliseconds.
    pub created_at: u64,
    pub updated_at: u64,
}
