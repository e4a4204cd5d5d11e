//! The store's network rules: unique names, subnets and VXLAN ids, one task per address,
//! and no removal of a network in use.

use super::*;
use crate::network::{IpamSpec, NetworkDriver, NetworkSpec};
use crate::objects::{Meta, TaskStatus};

fn network(id: &str, name: &str, subnet: &str, vni: u32) -> Object {
    let subnet: crate::network::Ipv4Net = subnet.parse().unwrap();
    Object::Network(Network {
        id: NetworkId::new(id),
        meta: Meta::default(),
        spec: NetworkSpec {
            name: name.into(),
            labels: Default::default(),
            driver: NetworkDriver::Overlay,
            ipam: IpamSpec::default(),
            attachable: false,
            internal: false,
        },
        subnet,
        gateway: Ipv4Addr::from(u32::from(subnet.network()) + 1),
        ip_range: subnet,
        vni,
    })
}

fn task_on(id: &str, net: &str, addr: &str) -> Object {
    Object::Task(Task {
        id: TaskId::new(id),
        meta: Default::default(),
        service_id: ServiceId::new("s"),
        slot: 1,
        node_id: None,
        service_name: "web".into(),
        spec_version: 1,
        spec: Default::default(),
        desired_state: TaskState::Running,
        status: TaskStatus::default(),
        restarts: 0,
        networks: vec![NetworkAttachment {
            network_id: NetworkId::new(net),
            network_name: net.into(),
            driver: NetworkDriver::Overlay,
            address: addr.parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 1, 1),
            vni: 4097,
            internal: false,
            aliases: vec![],
        }],
    })
}

fn batch(ops: Vec<Op>) -> WriteBatch {
    WriteBatch { ops, now_ms: 1 }
}

#[test]
fn network_names_subnets_and_vnis_are_unique() {
    let mut s = StoreState::default();
    s.apply(
        &batch(vec![Op::Create(network("a", "front", "10.0.1.0/24", 4097))]),
        1,
    )
    .unwrap();
    let e = s
        .apply(
            &batch(vec![Op::Create(network("b", "front", "10.0.2.0/24", 4098))]),
            2,
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::NameConflict { .. }), "{e}");
    let e = s
        .apply(
            &batch(vec![Op::Create(network("b", "back", "10.0.0.0/16", 4098))]),
            2,
        )
        .unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");
    let e = s
        .apply(
            &batch(vec![Op::Create(network("b", "back", "10.0.2.0/24", 4097))]),
            2,
        )
        .unwrap_err();
    assert!(e.to_string().contains("VXLAN"), "{e}");
    s.apply(
        &batch(vec![Op::Create(network("b", "back", "10.0.2.0/24", 4098))]),
        2,
    )
    .unwrap();
}

#[test]
fn an_address_is_held_by_one_task_until_that_task_is_gone() {
    let mut s = StoreState::default();
    s.apply(
        &batch(vec![Op::Create(network("n", "front", "10.0.1.0/24", 4097))]),
        1,
    )
    .unwrap();
    s.apply(
        &batch(vec![Op::Create(task_on("t1", "n", "10.0.1.2/24"))]),
        2,
    )
    .unwrap();
    let e = s
        .apply(
            &batch(vec![Op::Create(task_on("t2", "n", "10.0.1.2/24"))]),
            3,
        )
        .unwrap_err();
    assert!(e.to_string().contains("held by task t1"), "{e}");
    // Outside the subnet, or on a network that does not exist.
    assert!(s
        .apply(
            &batch(vec![Op::Create(task_on("t2", "n", "10.0.2.2/24"))]),
            3
        )
        .is_err());
    assert!(s
        .apply(
            &batch(vec![Op::Create(task_on("t2", "x", "10.0.1.3/24"))]),
            3
        )
        .is_err());
    // A snapshot restored elsewhere knows the holder too.
    let mut copy: StoreState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    copy.rebuild_indexes();
    assert!(copy
        .apply(
            &batch(vec![Op::Create(task_on("t2", "n", "10.0.1.2/24"))]),
            3
        )
        .is_err());
    // The network cannot go while a task holds an address on it.
    let e = s
        .apply(
            &batch(vec![Op::Delete {
                kind: ObjectKind::Network,
                id: "n".into(),
                version: None,
            }]),
            3,
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    s.apply(
        &batch(vec![Op::Delete {
            kind: ObjectKind::Task,
            id: "t1".into(),
            version: None,
        }]),
        4,
    )
    .unwrap();
    s.apply(
        &batch(vec![Op::Create(task_on("t2", "n", "10.0.1.2/24"))]),
        5,
    )
    .unwrap();
    assert_eq!(
        s.address_holder(&NetworkId::new("n"), Ipv4Addr::new(10, 0, 1, 2)),
        Some(&TaskId::new("t2"))
    );
}

#[test]
fn a_failed_batch_leaves_the_address_index_as_it_was() {
    let mut s = StoreState::default();
    s.apply(
        &batch(vec![Op::Create(network("n", "front", "10.0.1.0/24", 4097))]),
        1,
    )
    .unwrap();
    let e = s.apply(
        &batch(vec![
            Op::Create(task_on("t1", "n", "10.0.1.2/24")),
            Op::Create(task_on("t2", "n", "10.0.1.2/24")),
        ]),
        2,
    );
    assert!(e.is_err());
    assert!(s
        .address_holder(&NetworkId::new("n"), Ipv4Addr::new(10, 0, 1, 2))
        .is_none());
}

#[test]
fn compacted_task_creations_keep_each_tasks_address() {
    let ops = vec![
        Op::Create(task_on("t1", "n", "10.0.1.2/24")),
        Op::Create(task_on("t2", "n", "10.0.1.3/24")),
    ];
    let c = compact(ops.clone());
    assert_eq!(c.len(), 1);
    let mut a = StoreState::default();
    let mut b = StoreState::default();
    for s in [&mut a, &mut b] {
        s.apply(
            &batch(vec![Op::Create(network("n", "front", "10.0.1.0/24", 4097))]),
            1,
        )
        .unwrap();
    }
    a.apply(&batch(ops), 2).unwrap();
    b.apply(&batch(c), 2).unwrap();
    assert_eq!(a.tasks, b.tasks);
}
