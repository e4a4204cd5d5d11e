//! Raft glue: openraft type configuration, the sled-backed storage, the tonic network and the
//! gRPC service that receives peers' Raft traffic.

pub mod network;
pub mod service;
pub mod snapshot_file;
pub mod storage;

use serde::{Deserialize, Serialize};
use std::io::Cursor;
use swarm_types::store::{StoreError, WriteBatch};
use swarm_types::Object;

/// Rough upper bound of one AppendEntries' encoded entries: the log reader stops there; a
/// single larger entry is still sent.
pub(crate) const APPEND_BUDGET_BYTES: usize = 256 * 1024;

/// One Raft entry's application data: the write batches of several clients, coalesced by
/// the leader so that many concurrent writes share one entry (one append, one flush). Each
/// batch still applies atomically and succeeds or fails on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Proposal {
    /// Shared, so that the log cache hands out entries without copying them, and each batch
    /// with the client that wrote it (serialized exactly like a plain list).
    pub batches: std::sync::Arc<Vec<std::sync::Arc<WriteBatch>>>,
}

/// Result of applying one Raft entry: per batch, the objects as stored after the write
/// (deleted objects as they were; only for single-op batches, empty for bulk writes), or why
/// that batch was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct WriteOutcome {
    pub results: Vec<Result<Vec<Object>, StoreError>>,
}

openraft::declare_raft_types!(
    /// openraft types of swarm's replicated object store.
    pub TypeConfig:
        D = Proposal,
        R = WriteOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Binary encoding of Raft traffic and log entries (MessagePack with field names, so
/// `#[serde(default)]` fields keep old entries readable). JSON costs several times the CPU on
/// this hot path.
pub mod codec {
    pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(v)
    }
    pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, rmp_serde::decode::Error> {
        rmp_serde::from_slice(b)
    }
}

pub type RaftId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<RaftId>;
pub type StorageError = openraft::StorageError<RaftId>;

#[cfg(test)]
mod codec_tests {
    use swarm_types::network::{IpamSpec, NetworkDriver, NetworkSpec};
    use swarm_types::store::{Op, WriteBatch};
    use swarm_types::Network;
    use swarm_types::{NetworkId, Object};

    /// Networks (addresses, prefixes) survive the log's binary encoding.
    #[test]
    fn networks_round_trip_through_the_log_encoding() {
        let net = Network {
            id: NetworkId::new("n"),
            meta: Default::default(),
            spec: NetworkSpec {
                name: "n".into(),
                labels: Default::default(),
                driver: NetworkDriver::Overlay,
                ipam: IpamSpec {
                    subnet: Some("10.1.0.0/16".parse().unwrap()),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    ip_range: None,
                },
                attachable: false,
                internal: true,
            },
            subnet: "10.1.0.0/16".parse().unwrap(),
            gateway: "10.1.0.1".parse().unwrap(),
            ip_range: "10.1.0.0/16".parse().unwrap(),
            vni: 4097,
        };
        let b = WriteBatch {
            ops: vec![Op::Create(Object::Network(net))],
            now_ms: 1,
        };
        let bytes = super::codec::encode(&b).unwrap();
        let back: WriteBatch = super::codec::decode(&bytes).unwrap();
        assert_eq!(back, b);
    }

    /// A service's boxed and sparse sections (issue 17) encode as the plain values did: a
    /// spec written with them unset or set reads back the same, and an unset section still
    /// takes no box after decoding.
    #[test]
    fn services_with_sparse_sections_round_trip_through_the_log_encoding() {
        use swarm_types::objects::Service;
        use swarm_types::spec::ServiceSpec;
        use swarm_types::ServiceId;
        let plain = ServiceSpec::replicated("web", "web:1", 2);
        let mut set = plain.clone();
        set.task.container.options.read_only = true;
        set.task.container.options.cap_add = vec!["NET_ADMIN".into()];
        set.task.placement.constraints = vec!["node.role==worker".into()];
        set.update_config.parallelism = 3;
        for spec in [plain, set] {
            let svc = Service::new(ServiceId::new("s"), spec);
            let b = WriteBatch {
                ops: vec![Op::Create(Object::Service(Box::new(svc)))],
                now_ms: 1,
            };
            let back: WriteBatch =
                super::codec::decode(&super::codec::encode(&b).unwrap()).unwrap();
            assert_eq!(back, b);
            let Op::Create(Object::Service(s)) = &back.ops[0] else {
                panic!("not a service: {:?}", back.ops[0]);
            };
            let c = &s.spec.task.container;
            assert_eq!(c.options.is_unset(), !c.options.read_only);
            assert!(s.spec.rollback_config.is_unset());
        }
    }
}
