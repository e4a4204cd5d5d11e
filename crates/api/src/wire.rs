//! JSON payload helpers: objects and specs travel inside protobuf `bytes` fields as JSON of
//! their `swarm_types` definitions, so there is one schema for them.

use serde::{de::DeserializeOwned, Serialize};
use tonic::Status;

/// Encodes a value for a `bytes` field.
pub fn to_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("swarm types always serialize")
}

/// Decodes a `bytes` field, turning a malformed payload into `InvalidArgument`.
#[allow(clippy::result_large_err)]
pub fn from_bytes<T: DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(b)
        .map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

/// Objects per page of a streamed list: keeps each message far below the gRPC limit.
pub const PAGE_SIZE: usize = 500;
