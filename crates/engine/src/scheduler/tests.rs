//! Tests of the scheduler: placement, spread, constraints, resources (including property tests).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use swarm_types::objects::{NodeDescription, NodeStatus, Platform, TaskStatus};
use swarm_types::spec::{NodeRole, NodeSpec, Placement, ResourceRequirements, Resources};

const CORE: i64 = 1_000_000_000;
const GIB: i64 = 1 << 30;

fn node(id: &str) -> Node {
    Node {
        id: NodeId::new(id),
        meta: Default::default(),
        spec: NodeSpec::default(),
        description: NodeDescription {
            hostname: format!("host-{id}"),
            platform: Platform {
                os: "linux".into(),
                arch: "amd64".into(),
            },
            nano_cpus: 4 * CORE,
            memory_bytes: 8 * GIB,
            engine_labels: BTreeMap::new(),
            version: "test".into(),
        },
        status: NodeStatus {
            state: NodeState::Ready,
            ..Default::default()
        },
        manager_status: None,
        role: NodeRole::Worker,
    }
}

fn with_label(mut n: Node, k: &str, v: &str) -> Node {
    n.spec.labels.insert(k.into(), v.into());
    n
}

fn spec() -> TaskSpec {
    TaskSpec::default()
}

fn reserving(cpu: i64, memory: i64) -> TaskSpec {
    TaskSpec {
        resources: ResourceRequirements {
            reservations: Resources {
                nano_cpus: cpu,
                memory_bytes: memory,
            },
            ..Default::default()
        }
        .into(),
        ..Default::default()
    }
}

fn placed(constraints: &[&str], preferences: &[&str], max_per_node: u64) -> TaskSpec {
    TaskSpec {
        placement: Placement {
            constraints: constraints.iter().map(|c| c.to_string()).collect(),
            preferences: preferences.iter().map(|p| p.to_string()).collect(),
            max_replicas_per_node: max_per_node,
        }
        .into(),
        ..Default::default()
    }
}

fn task(id: &str, service: &str, spec: &TaskSpec, on: Option<&str>) -> Task {
    Task {
        id: TaskId::new(id),
        meta: Default::default(),
        service_id: ServiceId::new(service),
        slot: 1,
        node_id: on.map(NodeId::new),
        service_name: service.into(),
        spec_version: 1,
        spec: spec.clone().into(),
        desired_state: TaskState::Running,
        restarts: 0,
        networks: Vec::new(),
        status: TaskStatus {
            state: if on.is_some() {
                TaskState::Running
            } else {
                TaskState::Pending
            },
            ..Default::default()
        },
    }
}

/// A store with `nodes`, `load` (placed tasks) and `n` pending tasks of `service` with `spec`;
/// returns the store and the pending ids.
fn cluster(
    nodes: Vec<Node>,
    load: Vec<Task>,
    service: &str,
    spec: &TaskSpec,
    n: usize,
) -> (StoreState, Vec<TaskId>) {
    let mut s = StoreState::default();
    for nd in nodes {
        s.nodes.insert(nd.id.clone(), nd);
    }
    for t in load {
        s.tasks.insert(t.id.clone(), Box::new(t));
    }
    let ids = add_pending(&mut s, service, spec, n);
    (s, ids)
}

fn add_pending(s: &mut StoreState, service: &str, spec: &TaskSpec, n: usize) -> Vec<TaskId> {
    (0..n)
        .map(|i| {
            let t = task(&format!("{service}-p{i:03}"), service, spec, None);
            let id = t.id.clone();
            s.tasks.insert(id.clone(), Box::new(t));
            id
        })
        .collect()
}

/// Node id chosen per assignment, in decision order.
fn chosen(plan: &SchedulePlan) -> Vec<&str> {
    plan.assignments.iter().map(|(_, n)| n.as_str()).collect()
}

fn per_node(plan: &SchedulePlan) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for (_, n) in &plan.assignments {
        *m.entry(n.as_str()).or_default() += 1;
    }
    m
}

#[test]
fn spreads_tasks_over_nodes() {
    let (s, ids) = cluster(
        vec![node("a"), node("b"), node("c")],
        vec![],
        "web",
        &spec(),
        3,
    );
    let plan = schedule(&s, &ids);
    assert_eq!(chosen(&plan), ["a", "b", "c"]);
    assert!(plan.unplaced.is_empty());
    let tasks: Vec<_> = plan.assignments.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(tasks, ids, "decisions follow the pending order");
}

#[test]
fn fills_least_loaded_nodes_first() {
    // Other services' load: a=2, c=1; the service's own load counts first: b has one of ours.
    let load = vec![
        task("o1", "other", &spec(), Some("a")),
        task("o2", "other", &spec(), Some("a")),
        task("o3", "other", &spec(), Some("c")),
    ];
    let (s, ids) = cluster(
        vec![node("a"), node("b"), node("c")],
        load,
        "web",
        &spec(),
        3,
    );
    assert_eq!(chosen(&schedule(&s, &ids)), ["b", "c", "a"]);

    let load = vec![
        task("o1", "other", &spec(), Some("a")),
        task("o2", "other", &spec(), Some("a")),
        task("w1", "web", &spec(), Some("b")),
    ];
    let (s, ids) = cluster(
        vec![node("a"), node("b"), node("c")],
        load,
        "web",
        &spec(),
        4,
    );
    // c (0 web, 0 total), a (0 web, 2 total), then b (1,1) before a (1,3) and c (1,1) by id.
    assert_eq!(chosen(&schedule(&s, &ids)), ["c", "a", "b", "c"]);
}

#[test]
fn finished_and_stopping_tasks_are_not_load() {
    let mut done = task("o1", "web", &reserving(4 * CORE, 0), Some("a"));
    done.status.state = TaskState::Failed;
    let mut stopping = task("o2", "web", &reserving(4 * CORE, 0), Some("a"));
    stopping.desired_state = TaskState::Shutdown;
    let running = task("o3", "web", &reserving(4 * CORE, 0), Some("b"));
    let (s, ids) = cluster(
        vec![node("a"), node("b")],
        vec![done, stopping, running],
        "web",
        &reserving(CORE, 0),
        1,
    );
    assert!(counts_as_load(&s.tasks[&TaskId::new("o3")]));
    assert!(!counts_as_load(&s.tasks[&TaskId::new("o1")]));
    assert_eq!(chosen(&schedule(&s, &ids)), ["a"]);
}

#[test]
fn unavailable_nodes_are_excluded_with_reasons() {
    let mut down = node("a-down");
    down.status.state = NodeState::Down;
    let mut unknown = node("b-unknown");
    unknown.status.state = NodeState::Unknown;
    let mut disconnected = node("c-disc");
    disconnected.status.state = NodeState::Disconnected;
    let mut paused = node("d-paused");
    paused.spec.availability = Availability::Pause;
    let mut drained = node("e-drained");
    drained.spec.availability = Availability::Drain;
    // Down and drained: the first failing filter (readiness) names the reason.
    let mut down_drained = node("f-down-drained");
    down_drained.status.state = NodeState::Down;
    down_drained.spec.availability = Availability::Drain;
    let nodes = vec![down, unknown, disconnected, paused, drained, down_drained];

    let (s, ids) = cluster(nodes.clone(), vec![], "web", &spec(), 2);
    let plan = schedule(&s, &ids);
    assert!(plan.assignments.is_empty());
    let reason = "no suitable node (2 nodes: node is down; 2 nodes: node not ready; \
                  1 node: node is drained; 1 node: node is paused)";
    assert_eq!(
        plan.unplaced,
        vec![
            (ids[0].clone(), reason.to_string()),
            (ids[1].clone(), reason.to_string())
        ]
    );

    let mut nodes = nodes;
    nodes.push(node("z-ready"));
    let (s, ids) = cluster(nodes, vec![], "web", &spec(), 2);
    let plan = schedule(&s, &ids);
    assert_eq!(chosen(&plan), ["z-ready", "z-ready"]);
}

#[test]
fn no_nodes_at_all() {
    let (s, ids) = cluster(vec![], vec![], "web", &spec(), 1);
    let plan = schedule(&s, &ids);
    assert_eq!(
        plan.unplaced,
        vec![(
            ids[0].clone(),
            "no suitable node (no nodes in the cluster)".to_string()
        )]
    );
}

#[test]
fn reservations_are_honored_and_exhausted() {
    // a: 4 cores, one already reserved by load; b: 2 cores.
    let mut b = node("b");
    b.description.nano_cpus = 2 * CORE;
    let load = vec![task("o1", "other", &reserving(CORE, GIB), Some("a"))];
    let (s, ids) = cluster(vec![node("a"), b], load, "web", &reserving(CORE, 0), 6);
    let plan = schedule(&s, &ids);
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 3), ("b", 2)]));
    assert_eq!(
        plan.unplaced,
        vec![(
            ids[5].clone(),
            "no suitable node (2 nodes: insufficient cpu)".to_string()
        )]
    );

    // Memory: 8 GiB nodes, 3 GiB each -> two per node.
    let (s, ids) = cluster(
        vec![node("a"), node("b")],
        vec![],
        "web",
        &reserving(0, 3 * GIB),
        5,
    );
    let plan = schedule(&s, &ids);
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 2), ("b", 2)]));
    assert_eq!(
        plan.unplaced[0].1,
        "no suitable node (2 nodes: insufficient memory)"
    );

    // A zero reservation fits anywhere, even on a node that reports no capacity.
    let mut empty = node("a");
    empty.description.nano_cpus = 0;
    empty.description.memory_bytes = 0;
    let (s, ids) = cluster(vec![empty], vec![], "web", &spec(), 3);
    assert_eq!(schedule(&s, &ids).assignments.len(), 3);
}

#[test]
fn constraints_on_every_key() {
    let mut m = node("m1");
    m.role = NodeRole::Manager;
    m.description.platform.arch = "arm64".into();
    m.description
        .engine_labels
        .insert("disk".into(), "ssd".into());
    let w = with_label(node("w1"), "zone", "east");
    let mut w2 = with_label(node("w2"), "zone", "west");
    w2.description.platform.os = "windows".into();
    let nodes = vec![m, w, w2];
    let cases: &[(&str, &[&str])] = &[
        ("node.id==w1", &["w1"]),
        ("node.id!=w1", &["m1", "w2"]),
        ("node.hostname==host-w2", &["w2"]),
        ("node.hostname!=host-w2", &["m1", "w1"]),
        ("node.role==manager", &["m1"]),
        ("node.role!=manager", &["w1", "w2"]),
        ("node.role==worker", &["w1", "w2"]),
        ("node.platform.os==linux", &["m1", "w1"]),
        ("node.platform.os!=linux", &["w2"]),
        ("node.platform.arch==arm64", &["m1"]),
        ("node.platform.arch!=arm64", &["w1", "w2"]),
        ("node.labels.zone==east", &["w1"]),
        // A missing label fails == and passes !=.
        ("node.labels.zone!=east", &["m1", "w2"]),
        ("node.labels.rack==r1", &[]),
        ("node.labels.rack!=r1", &["m1", "w1", "w2"]),
        ("engine.labels.disk==ssd", &["m1"]),
        ("engine.labels.disk!=ssd", &["w1", "w2"]),
        (" node.labels.zone == west ", &["w2"]),
    ];
    for (expr, want) in cases {
        let (s, ids) = cluster(nodes.clone(), vec![], "web", &placed(&[expr], &[], 0), 6);
        let plan = schedule(&s, &ids);
        let got: Vec<&str> = per_node(&plan).keys().copied().collect();
        assert_eq!(&got, want, "{expr}");
        if want.is_empty() {
            assert_eq!(
                plan.unplaced[0].1,
                format!(
                    "no suitable node (3 nodes: constraint {} not met)",
                    expr.trim()
                )
            );
        }
    }
    // All constraints must hold.
    let both = placed(&["node.role==worker", "node.platform.os==linux"], &[], 0);
    let (s, ids) = cluster(nodes, vec![], "web", &both, 2);
    assert_eq!(chosen(&schedule(&s, &ids)), ["w1", "w1"]);
}

#[test]
fn unplaced_reason_groups_nodes_by_first_failing_filter() {
    // Three nodes fail the constraint, one (matching) lacks memory, one fails both and counts
    // as memory (resources come before constraints), one is drained.
    let small = |id: &str| {
        let mut n = node(id);
        n.description.memory_bytes = GIB;
        n
    };
    let mut drained = with_label(node("f"), "zone", "east");
    drained.spec.availability = Availability::Drain;
    let nodes = vec![
        node("a"),
        node("b"),
        with_label(node("c"), "zone", "west"),
        with_label(small("d"), "zone", "east"),
        small("e"),
        drained,
    ];
    let mut sp = placed(&["node.labels.zone==east"], &[], 0);
    sp.resources.reservations.memory_bytes = 2 * GIB;
    let (s, ids) = cluster(nodes, vec![], "web", &sp, 1);
    let plan = schedule(&s, &ids);
    assert_eq!(
        plan.unplaced[0].1,
        "no suitable node (3 nodes: constraint node.labels.zone==east not met; \
         2 nodes: insufficient memory; 1 node: node is drained)"
    );
}

fn publishing(port: u16) -> TaskSpec {
    TaskSpec {
        host_ports: vec![swarm_types::endpoint::PortConfig {
            published: port,
            target: 80,
            mode: swarm_types::endpoint::PublishMode::Host,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn a_host_port_is_held_once_per_node() {
    // Another service holds 8080 on a; web needs 8080 for 3 tasks on 3 nodes.
    let load = vec![task("o0", "other", &publishing(8080), Some("a"))];
    let (s, ids) = cluster(
        vec![node("a"), node("b"), node("c")],
        load,
        "web",
        &publishing(8080),
        3,
    );
    let plan = schedule(&s, &ids);
    assert_eq!(per_node(&plan), BTreeMap::from([("b", 1), ("c", 1)]));
    assert_eq!(
        plan.unplaced,
        vec![(
            ids[2].clone(),
            "no suitable node (3 nodes: host port 8080/tcp in use)".to_string()
        )]
    );
    // Another port, or a stopped holder, does not stand in the way.
    let mut gone = task("o0", "other", &publishing(8080), Some("a"));
    gone.desired_state = TaskState::Shutdown;
    let (s, ids) = cluster(vec![node("a")], vec![gone], "web", &publishing(8080), 1);
    assert_eq!(chosen(&schedule(&s, &ids)), ["a"]);
    let load = vec![task("o0", "other", &publishing(9090), Some("a"))];
    let (s, ids) = cluster(vec![node("a")], load, "web", &publishing(8080), 1);
    assert_eq!(chosen(&schedule(&s, &ids)), ["a"]);
}

#[test]
fn max_replicas_per_node() {
    let load = vec![task("w0", "web", &spec(), Some("a"))];
    let (s, ids) = cluster(
        vec![node("a"), node("b")],
        load,
        "web",
        &placed(&[], &[], 2),
        4,
    );
    let plan = schedule(&s, &ids);
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 1), ("b", 2)]));
    assert_eq!(
        plan.unplaced,
        vec![(
            ids[3].clone(),
            "no suitable node (2 nodes: max replicas per node (2) reached)".to_string()
        )]
    );
    // Other services' tasks don't count.
    let load = vec![task("o0", "other", &spec(), Some("a"))];
    let (s, ids) = cluster(vec![node("a")], load, "web", &placed(&[], &[], 1), 1);
    assert_eq!(chosen(&schedule(&s, &ids)), ["a"]);
}

#[test]
fn spread_preference_balances_zones_of_unequal_size() {
    let nodes = vec![
        with_label(node("e1"), "zone", "east"),
        with_label(node("e2"), "zone", "east"),
        with_label(node("e3"), "zone", "east"),
        with_label(node("w1"), "zone", "west"),
    ];
    let sp = placed(&[], &["spread=node.labels.zone"], 0);
    let (s, ids) = cluster(nodes.clone(), vec![], "web", &sp, 8);
    let plan = schedule(&s, &ids);
    assert_eq!(
        per_node(&plan),
        BTreeMap::from([("e1", 2), ("e2", 1), ("e3", 1), ("w1", 4)])
    );
    // Without the preference, nodes are balanced instead.
    let (s, ids) = cluster(nodes.clone(), vec![], "web", &spec(), 8);
    assert!(per_node(&schedule(&s, &ids)).values().all(|&c| c == 2));

    // Existing tasks of the service count: west already has 3, east gets the next 3.
    let load = (0..3)
        .map(|i| task(&format!("w{i}"), "web", &sp, Some("w1")))
        .collect();
    let (s, ids) = cluster(nodes, load, "web", &sp, 3);
    assert_eq!(chosen(&schedule(&s, &ids)), ["e1", "e2", "e3"]);
}

#[test]
fn spread_nodes_without_the_label_form_their_own_group() {
    let nodes = vec![
        with_label(node("a"), "zone", "east"),
        with_label(node("b"), "zone", "east"),
        node("c"),
        node("d"),
        node("e"),
    ];
    let sp = placed(&[], &["spread=node.labels.zone"], 0);
    let (s, ids) = cluster(nodes, vec![], "web", &sp, 4);
    let plan = schedule(&s, &ids);
    // Unlabelled group first on ties, then alternate.
    assert_eq!(chosen(&plan), ["c", "a", "d", "b"]);
}

#[test]
fn nested_spread_preferences() {
    let n = |id: &str, zone: &str, rack: &str| {
        with_label(with_label(node(id), "zone", zone), "rack", rack)
    };
    let nodes = vec![
        n("a", "east", "r1"),
        n("b", "east", "r1"),
        n("c", "east", "r1"),
        n("d", "east", "r2"),
        n("e", "west", "r3"),
    ];
    let sp = placed(
        &[],
        &["spread=node.labels.zone", "spread=node.labels.rack"],
        0,
    );
    let (s, ids) = cluster(nodes, vec![], "web", &sp, 8);
    let plan = schedule(&s, &ids);
    // 4 per zone; in east 2 per rack.
    assert_eq!(
        per_node(&plan),
        BTreeMap::from([("a", 1), ("b", 1), ("d", 2), ("e", 4)])
    );
}

#[test]
fn spread_skips_zones_whose_nodes_are_full() {
    let mut w = with_label(node("w1"), "zone", "west");
    w.description.nano_cpus = CORE;
    let nodes = vec![w, with_label(node("e1"), "zone", "east")];
    let mut sp = placed(&[], &["spread=node.labels.zone"], 0);
    sp.resources.reservations.nano_cpus = CORE;
    let (s, ids) = cluster(nodes, vec![], "web", &sp, 6);
    let plan = schedule(&s, &ids);
    assert_eq!(chosen(&plan), ["e1", "w1", "e1", "e1", "e1"]);
    assert_eq!(
        plan.unplaced[0].1,
        "no suitable node (2 nodes: insufficient cpu)"
    );
}

#[test]
fn groups_of_one_service_share_counts_and_plan_is_deterministic() {
    let (mut s, mut ids) = cluster(
        vec![node("a"), node("b"), node("c")],
        vec![],
        "web",
        &spec(),
        2,
    );
    // Same service, updated spec (a second group), and another service in between.
    let mut v2 = spec();
    v2.force_update = 1;
    let other = add_pending(&mut s, "api", &spec(), 1);
    let more: Vec<TaskId> = (0..2)
        .map(|i| {
            let t = task(&format!("web-v2-{i}"), "web", &v2, None);
            let id = t.id.clone();
            s.tasks.insert(id.clone(), Box::new(t));
            id
        })
        .collect();
    ids.extend(other.clone());
    ids.extend(more);
    let plan = schedule(&s, &ids);
    // web: a, b, then the v2 group continues with c, a; api comes after.
    assert_eq!(chosen(&plan), ["a", "b", "c", "a", "b"]);
    assert_eq!(plan.assignments[4].0, other[0]);
    assert_eq!(schedule(&s, &ids), plan);
}

#[test]
fn duplicate_unknown_and_already_assigned_ids() {
    let load = vec![task("w0", "web", &spec(), Some("a"))];
    let (s, mut ids) = cluster(vec![node("a"), node("b")], load, "web", &spec(), 1);
    ids.push(ids[0].clone());
    ids.push(TaskId::new("ghost"));
    ids.push(TaskId::new("w0"));
    let plan = schedule(&s, &ids);
    // w0 stays load on a (and is not moved), so the new task goes to b.
    assert_eq!(plan.assignments, vec![(ids[0].clone(), NodeId::new("b"))]);
    assert_eq!(
        plan.unplaced,
        vec![
            (
                TaskId::new("ghost"),
                "task not found in the store".to_string()
            ),
            (
                TaskId::new("w0"),
                "task is already assigned to node a".to_string()
            ),
        ]
    );
    assert_eq!(schedule(&s, &[]), SchedulePlan::default());
}

// ----- property tests against a straightforward model of the filters -----

/// Constraint evaluation written independently of `Constraint::parse`.
fn model_constraint(expr: &str, n: &Node) -> bool {
    let (key, value, eq) = match expr.split_once("!=") {
        Some((k, v)) => (k.trim(), v.trim(), false),
        None => {
            let (k, v) = expr.split_once("==").unwrap();
            (k.trim(), v.trim(), true)
        }
    };
    let actual = if key == "node.id" {
        Some(n.id.to_string())
    } else if key == "node.hostname" {
        Some(n.description.hostname.clone())
    } else if key == "node.role" {
        Some(
            match n.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }
            .to_string(),
        )
    } else if key == "node.platform.os" {
        Some(n.description.platform.os.clone())
    } else if key == "node.platform.arch" {
        Some(n.description.platform.arch.clone())
    } else if let Some(l) = key.strip_prefix("node.labels.") {
        n.spec.labels.get(l).cloned()
    } else if let Some(l) = key.strip_prefix("engine.labels.") {
        n.description.engine_labels.get(l).cloned()
    } else {
        panic!("unexpected key {key}")
    };
    match actual {
        Some(a) => (a == value) == eq,
        None => !eq,
    }
}

/// Running state of the model: reserved cpu/memory, and tasks per (service, node).
#[derive(Default)]
struct Model {
    cpu: BTreeMap<String, i64>,
    mem: BTreeMap<String, i64>,
    per_service: BTreeMap<(String, String), u64>,
}

impl Model {
    fn add(&mut self, node: &str, service: &str, spec: &TaskSpec) {
        let r = &spec.resources.reservations;
        *self.cpu.entry(node.into()).or_default() += r.nano_cpus;
        *self.mem.entry(node.into()).or_default() += r.memory_bytes;
        *self
            .per_service
            .entry((service.into(), node.into()))
            .or_default() += 1;
    }

    fn feasible(&self, n: &Node, service: &str, spec: &TaskSpec) -> bool {
        let id = n.id.to_string();
        let r = &spec.resources.reservations;
        let cpu = self.cpu.get(&id).copied().unwrap_or(0);
        let mem = self.mem.get(&id).copied().unwrap_or(0);
        let count = self
            .per_service
            .get(&(service.to_string(), id.clone()))
            .copied()
            .unwrap_or(0);
        let max = spec.placement.max_replicas_per_node;
        n.status.state == NodeState::Ready
            && n.spec.availability == Availability::Active
            && (r.nano_cpus == 0 || cpu + r.nano_cpus <= n.description.nano_cpus)
            && (r.memory_bytes == 0 || mem + r.memory_bytes <= n.description.memory_bytes)
            && spec
                .placement
                .constraints
                .iter()
                .all(|c| model_constraint(c, n))
            && (max == 0 || count < max)
    }
}

const CONSTRAINTS: &[&str] = &[
    "node.labels.zone==a",
    "node.labels.zone!=b",
    "engine.labels.disk==ssd",
    "node.role==worker",
    "node.role!=manager",
    "node.platform.arch!=arm64",
    "node.hostname!=host-n1",
    "node.id==n2",
];

type NodeGen = (u8, u8, u8, u8, u8, bool, bool);
type ServiceGen = (Vec<u8>, u8, u8, u8, bool, usize);
type LoadGen = (u8, u8, u8, u8);

fn build(
    nodes: &[NodeGen],
    services: &[ServiceGen],
    load: &[LoadGen],
) -> (StoreState, Vec<TaskId>, BTreeMap<String, TaskSpec>) {
    let mut s = StoreState::default();
    for (i, &(state, avail, cpu, mem, zone, ssd, manager)) in nodes.iter().enumerate() {
        let mut n = node(&format!("n{i}"));
        n.description.hostname = format!("host-n{i}");
        n.status.state = match state % 8 {
            0 => NodeState::Down,
            1 => NodeState::Disconnected,
            _ => NodeState::Ready,
        };
        n.spec.availability = match avail % 6 {
            0 => Availability::Pause,
            1 => Availability::Drain,
            _ => Availability::Active,
        };
        n.description.nano_cpus = i64::from(cpu % 5) * CORE;
        n.description.memory_bytes = i64::from(mem % 5) * GIB;
        match zone % 3 {
            0 => {}
            1 => n = with_label(n, "zone", "a"),
            _ => n = with_label(n, "zone", "b"),
        }
        if ssd {
            n.description
                .engine_labels
                .insert("disk".into(), "ssd".into());
        }
        if manager {
            n.role = NodeRole::Manager;
            n.description.platform.arch = "arm64".into();
        }
        s.nodes.insert(n.id.clone(), n);
    }
    let mut specs = BTreeMap::new();
    let mut pending = Vec::new();
    for (i, (cons, cpu, mem, max, spread, count)) in services.iter().enumerate() {
        let name = format!("s{i}");
        let mut sp = placed(&[], &[], u64::from(max % 4));
        sp.placement.constraints = cons
            .iter()
            .map(|c| CONSTRAINTS[*c as usize % CONSTRAINTS.len()].to_string())
            .collect();
        if *spread {
            sp.placement.preferences = vec!["spread=node.labels.zone".into()];
        }
        sp.resources.reservations.nano_cpus = i64::from(cpu % 3) * CORE / 2;
        sp.resources.reservations.memory_bytes = i64::from(mem % 3) * GIB;
        pending.extend(add_pending(&mut s, &name, &sp, *count));
        specs.insert(name, sp);
    }
    for (i, &(svc, on, state, desired)) in load.iter().enumerate() {
        if nodes.is_empty() || services.is_empty() {
            break;
        }
        let name = format!("s{}", svc as usize % services.len());
        let mut t = task(
            &format!("l{i}"),
            &name,
            &specs[&name],
            Some(&format!("n{}", on as usize % nodes.len())),
        );
        t.status.state =
            [TaskState::Assigned, TaskState::Running, TaskState::Failed][state as usize % 3];
        t.desired_state = [TaskState::Running, TaskState::Shutdown][desired as usize % 2];
        s.tasks.insert(t.id.clone(), Box::new(t));
    }
    (s, pending, specs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Replaying the plan over the model: every assignment is feasible when it is made (filters,
    /// resources never over capacity, max-per-node never exceeded); every pending task is decided
    /// exactly once; an unplaced task has no feasible node even at the end of the plan; and the
    /// plan is a deterministic function of its input.
    #[test]
    fn plans_respect_every_filter(
        nodes in prop::collection::vec(any::<NodeGen>(), 0..8),
        services in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..3), any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>(), 0usize..12),
            1..4,
        ),
        load in prop::collection::vec(any::<LoadGen>(), 0..16),
    ) {
        let (s, pending, specs) = build(&nodes, &services, &load);
        let plan = schedule(&s, &pending);

        let mut model = Model::default();
        for t in s.tasks.values().filter(|t| counts_as_load(t)) {
            model.add(t.node_id.as_ref().unwrap().as_str(), t.service_id.as_str(), &t.spec);
        }
        for (tid, nid) in &plan.assignments {
            let t = &s.tasks[tid];
            let n = &s.nodes[nid];
            prop_assert!(
                model.feasible(n, t.service_id.as_str(), &t.spec),
                "task {} assigned to infeasible node {}", tid, nid
            );
            model.add(nid.as_str(), t.service_id.as_str(), &t.spec);
        }
        for n in s.nodes.values() {
            let id = n.id.to_string();
            let cpu = model.cpu.get(&id).copied().unwrap_or(0);
            let mem = model.mem.get(&id).copied().unwrap_or(0);
            // Load alone may already exceed capacity; the plan must not add to an overfull node.
            let planned_cpu: i64 = plan.assignments.iter().filter(|(_, nid)| nid == &n.id)
                .map(|(t, _)| s.tasks[t].spec.resources.reservations.nano_cpus).sum();
            let planned_mem: i64 = plan.assignments.iter().filter(|(_, nid)| nid == &n.id)
                .map(|(t, _)| s.tasks[t].spec.resources.reservations.memory_bytes).sum();
            prop_assert!(planned_cpu == 0 || cpu <= n.description.nano_cpus);
            prop_assert!(planned_mem == 0 || mem <= n.description.memory_bytes);
        }
        for ((svc, node), count) in &model.per_service {
            let max = specs[svc].placement.max_replicas_per_node;
            let planned = plan.assignments.iter()
                .filter(|(t, n)| s.tasks[t].service_id.as_str() == svc && n.as_str() == node)
                .count();
            prop_assert!(max == 0 || planned == 0 || *count <= max, "{} on {}: {}", svc, node, count);
        }

        let mut decided: Vec<&TaskId> = plan.assignments.iter().map(|(t, _)| t)
            .chain(plan.unplaced.iter().map(|(t, _)| t)).collect();
        decided.sort();
        let mut want: Vec<&TaskId> = pending.iter().collect();
        want.sort();
        prop_assert_eq!(decided, want);

        for (tid, reason) in &plan.unplaced {
            let t = &s.tasks[tid];
            prop_assert!(reason.starts_with("no suitable node ("), "{}", reason);
            for n in s.nodes.values() {
                prop_assert!(!model.feasible(n, t.service_id.as_str(), &t.spec),
                    "{} left unplaced ({}) but {} could take it", tid, reason, n.id);
            }
        }
        prop_assert_eq!(schedule(&s, &pending), plan);
    }
}

#[test]
fn a_node_that_rejected_a_task_for_its_own_reason_is_tried_last() {
    let rejected = |id: &str, on: &str, message: &str| {
        let mut t = task(id, "web", &spec(), Some(on));
        t.status.state = TaskState::Rejected;
        t.status.message = message.into();
        t
    };
    // Node a could not reach the registry: the replacement goes to b although a sorts first.
    let (s, ids) = cluster(
        vec![node("a"), node("b")],
        vec![rejected(
            "r1",
            "a",
            swarm_types::objects::NODE_LOCAL_REJECTION,
        )],
        "web",
        &spec(),
        1,
    );
    assert_eq!(chosen(&schedule(&s, &ids)), ["b"]);
    // A rejection any node would get (the registry has no such image) does not steer.
    let (s, ids) = cluster(
        vec![node("a"), node("b")],
        vec![rejected("r1", "a", "preparing failed")],
        "web",
        &spec(),
        1,
    );
    assert_eq!(chosen(&schedule(&s, &ids)), ["a"]);
    // Only the service's own rejections count, and an avoided node still takes tasks when
    // nothing else can: 3 tasks over a (avoided) and b with at most 2 per node.
    let mut other = rejected("r2", "b", swarm_types::objects::NODE_LOCAL_REJECTION);
    other.service_id = ServiceId::new("api");
    let (s, ids) = cluster(
        vec![node("a"), node("b")],
        vec![
            rejected("r1", "a", swarm_types::objects::NODE_LOCAL_REJECTION),
            other,
        ],
        "web",
        &placed(&[], &[], 2),
        3,
    );
    assert_eq!(chosen(&schedule(&s, &ids)), ["b", "b", "a"]);
}
