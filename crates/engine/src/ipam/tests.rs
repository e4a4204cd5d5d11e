//! Tests of address allocation (including property tests).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use swarm_types::network::{IpamSpec, NetworkDriver};
use swarm_types::objects::TaskStatus;
use swarm_types::spec::NetworkAttachmentConfig;
use swarm_types::store::WriteBatch;
use swarm_types::{ObjectKind, ServiceId, TaskId};

fn spec(name: &str, subnet: Option<&str>) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        labels: BTreeMap::new(),
        driver: NetworkDriver::Overlay,
        ipam: IpamSpec {
            subnet: subnet.map(|s| s.parse().unwrap()),
            ..Default::default()
        },
        attachable: false,
        internal: false,
    }
}

fn apply(s: &mut StoreState, ops: Vec<Op>) {
    let index = s.count() as u64 + 1_000;
    s.apply(&WriteBatch { ops, now_ms: 1 }, index).unwrap();
}

fn create_network(s: &mut StoreState, name: &str, subnet: Option<&str>) -> Network {
    let n = new_network(s, NetworkId::new(name), spec(name, subnet)).unwrap();
    apply(s, vec![Op::Create(Object::Network(n.clone()))]);
    n
}

fn new_task(id: &str, nets: &[&str]) -> Op {
    let spec = swarm_types::spec::TaskSpec {
        networks: nets
            .iter()
            .map(|n| NetworkAttachmentConfig {
                target: n.to_string(),
                aliases: vec![],
            })
            .collect(),
        ..Default::default()
    };
    Op::Create(Object::Task(Task {
        id: TaskId::new(id),
        meta: Default::default(),
        service_id: ServiceId::new("s"),
        slot: 1,
        node_id: None,
        service_name: "s".into(),
        spec_version: 1,
        spec: spec.into(),
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Pending,
            ..Default::default()
        },
        restarts: 0,
        networks: vec![],
    }))
}

/// Every live task's addresses: distinct per network, inside the range, never reserved.
fn check_invariants(s: &StoreState) {
    let mut seen = std::collections::HashSet::new();
    for t in s.tasks.values() {
        for a in &t.networks {
            let net = &s.networks[&a.network_id];
            assert!(
                net.ip_range.contains(a.address.addr),
                "{} outside",
                a.address
            );
            assert_ne!(a.address.addr, net.gateway);
            assert_ne!(a.address.addr, net.subnet.network());
            assert_ne!(a.address.addr, net.subnet.broadcast());
            assert_eq!(a.address.prefix, net.subnet.prefix);
            assert!(
                seen.insert((a.network_id.clone(), a.address.addr)),
                "address {} on {} given twice",
                a.address,
                net.spec.name
            );
        }
    }
}

#[test]
fn subnets_come_from_the_pool_in_order_and_skip_taken_ones() {
    let mut s = StoreState::default();
    let a = create_network(&mut s, "a", None);
    assert_eq!(a.subnet.to_string(), "10.0.0.0/24");
    assert_eq!(a.gateway, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(a.vni, FIRST_VNI);
    let b = create_network(&mut s, "b", Some("10.0.1.0/24"));
    let c = create_network(&mut s, "c", None);
    assert_eq!(c.subnet.to_string(), "10.0.2.0/24");
    assert_eq!(b.vni, FIRST_VNI + 1);
    assert_eq!(c.vni, FIRST_VNI + 2);
    // A /16 larger than the pool's subnet size is fine when asked for.
    let big = create_network(&mut s, "big", Some("10.1.0.0/16"));
    assert_eq!(big.ip_range, big.subnet);
    let e = new_network(&s, NetworkId::new("x"), spec("x", Some("10.1.2.0/24"))).unwrap_err();
    assert!(
        e.to_string()
            .contains("overlaps subnet 10.1.0.0/16 of network big"),
        "{e}"
    );
}

#[test]
fn a_full_pool_says_so() {
    let pools = ["10.9.0.0/23".parse().unwrap()];
    let taken: Vec<Ipv4Net> = vec!["10.9.0.0/24".parse().unwrap()];
    assert_eq!(
        free_subnet(&pools, 24, &taken).unwrap().to_string(),
        "10.9.1.0/24"
    );
    let taken: Vec<Ipv4Net> = vec!["10.9.0.0/23".parse().unwrap()];
    let e = free_subnet(&pools, 24, &taken).unwrap_err().to_string();
    assert!(
        e.contains("no free /24 subnet") && e.contains("10.9.0.0/23"),
        "{e}"
    );
    assert!(free_subnet(&pools, 16, &[]).is_err());
}

#[test]
fn five_hundred_tasks_on_a_slash_16_get_distinct_addresses() {
    let mut s = StoreState::default();
    create_network(&mut s, "big", Some("10.20.0.0/16"));
    let mut ops: Vec<Op> = (0..500)
        .map(|i| new_task(&format!("t{i}"), &["big"]))
        .collect();
    attach_new_tasks(&s, &mut ops);
    apply(&mut s, swarm_types::store::compact(ops));
    assert_eq!(s.tasks.len(), 500);
    assert!(s.tasks.values().all(|t| t.networks.len() == 1));
    check_invariants(&s);
}

#[test]
fn a_full_network_rejects_the_task_with_the_reason() {
    let mut s = StoreState::default();
    create_network(&mut s, "tiny", Some("10.30.0.0/30"));
    let mut ops = vec![new_task("t1", &["tiny"]), new_task("t2", &["tiny"])];
    attach_new_tasks(&s, &mut ops);
    apply(&mut s, ops);
    let t1 = &s.tasks[&TaskId::new("t1")];
    assert_eq!(t1.networks[0].address.to_string(), "10.30.0.2/30");
    let t2 = &s.tasks[&TaskId::new("t2")];
    assert_eq!(t2.status.state, TaskState::Rejected);
    assert!(
        t2.status.err.contains("no free address on network tiny"),
        "{}",
        t2.status.err
    );
    let mut ops = vec![new_task("t3", &["gone"])];
    attach_new_tasks(&s, &mut ops);
    let Op::Create(Object::Task(t3)) = &ops[0] else {
        unreachable!()
    };
    assert!(t3.status.err.contains("network gone not found"));
}

#[derive(Debug, Clone)]
enum Step {
    Create(usize),
    Delete(usize),
    /// The allocator's state is thrown away and the store rebuilt from a snapshot, as on a
    /// new leader.
    LeaderChange,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1usize..12).prop_map(Step::Create),
        (0usize..64).prop_map(Step::Delete),
        Just(Step::LeaderChange),
    ]
}

proptest! {
    #[test]
    fn never_two_live_tasks_with_one_address(steps in prop::collection::vec(step(), 1..40)) {
        let mut s = StoreState::default();
        // Small ranges so that addresses run out and are reused.
        create_network(&mut s, "a", Some("10.40.0.0/27"));
        create_network(&mut s, "b", Some("10.41.0.0/28"));
        let mut next = 0usize;
        for st in steps {
            match st {
                Step::Create(n) => {
                    let mut ops: Vec<Op> = (0..n)
                        .map(|_| {
                            next += 1;
                            let nets: &[&str] = if next.is_multiple_of(2) { &["a", "b"] } else { &["a"] };
                            new_task(&format!("t{next}"), nets)
                        })
                        .collect();
                    attach_new_tasks(&s, &mut ops);
                    // The store accepts what the allocator decided (it would refuse a duplicate).
                    apply(&mut s, swarm_types::store::compact(ops));
                }
                Step::Delete(k) => {
                    let ids: Vec<TaskId> = s.tasks.keys().cloned().collect();
                    if !ids.is_empty() {
                        let id = ids[k % ids.len()].clone();
                        apply(&mut s, vec![Op::Delete { kind: ObjectKind::Task, id: id.to_string(), version: None }]);
                    }
                }
                Step::LeaderChange => {
                    let mut copy: StoreState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
                    copy.rebuild_indexes();
                    s = copy;
                }
            }
            check_invariants(&s);
            // Every task that could get addresses has them; a rejected one has none.
            for t in s.tasks.values() {
                if t.status.state == TaskState::Rejected {
                    prop_assert!(t.networks.is_empty());
                } else {
                    prop_assert_eq!(t.networks.len(), t.spec.networks.len());
                }
            }
        }
    }
}
