//! Scheduler throughput: `schedule` over an in-process store (no IO, one thread).
//!
//! Scenario 1: 1,000 ready nodes (varied labels and capacity), 100,000 pending tasks across 100
//! services (plain, constrained, reserving, spread by zone, max-per-node). Scenario 2: the
//! scenario-1 plan applied as running load, then 10,000 new pending tasks across the same services.
//! Each scenario runs `--runs` times (default 3); the median is reported.
//!
//! Run with `deploy/bench/scheduler/run.sh` (release build). Options: `--nodes N --tasks N
//! --services N --runs N`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use swarm_engine::scheduler::{schedule, SchedulePlan};
use swarm_types::objects::{NodeDescription, NodeState, NodeStatus, Platform, TaskStatus};
use swarm_types::spec::{NodeRole, NodeSpec, TaskSpec};
use swarm_types::store::StoreState;
use swarm_types::task::TaskState;
use swarm_types::{Node, NodeId, ServiceId, Task, TaskId};

const CORE: i64 = 1_000_000_000;
const GIB: i64 = 1 << 30;

struct Args {
    nodes: usize,
    tasks: usize,
    services: usize,
    runs: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        nodes: 1_000,
        tasks: 100_000,
        services: 100,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--nodes" => &mut a.nodes,
            "--tasks" => &mut a.tasks,
            "--services" => &mut a.services,
            "--runs" => &mut a.runs,
            // `cargo bench` passes `--bench`; ignore anything else too.
            _ => continue,
        };
        *slot = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
    }
    a.services = a.services.max(1);
    a.runs = a.runs.max(1);
    a
}

/// A 25-character lower-case base36 id that looks random, like generated ones (so map lookups
/// and comparisons cost what they cost in production), but is a deterministic function of
/// (`kind`, `i`).
fn id(kind: &str, i: usize) -> String {
    let mut x = kind
        .bytes()
        .fold(i as u64, |h, b| h.rotate_left(8) ^ u64::from(b))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    (0..25)
        .map(|_| {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(z % 36) as usize])
        })
        .collect()
}

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let mut labels = BTreeMap::new();
            // Zones of unequal size: a 40%, b 30%, c 20%, d 10%.
            let zone = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "d"][i % 10];
            labels.insert("zone".to_string(), zone.to_string());
            labels.insert("rack".to_string(), format!("r{}", i % 25));
            if i % 5 == 0 {
                labels.insert("gpu".to_string(), "true".to_string());
            }
            let mut engine_labels = BTreeMap::new();
            if i % 3 == 0 {
                engine_labels.insert("disk".to_string(), "ssd".to_string());
            }
            Node {
                id: NodeId::new(id("node", i)),
                meta: Default::default(),
                spec: NodeSpec {
                    role: NodeRole::Worker,
                    availability: Default::default(),
                    labels,
                },
                description: NodeDescription {
                    hostname: format!("host-{i}"),
                    platform: Platform {
                        os: "linux".into(),
                        arch: if i % 8 == 0 { "arm64" } else { "amd64" }.into(),
                    },
                    nano_cpus: [8, 16, 32, 64][i % 4] * CORE,
                    memory_bytes: [16, 32, 64, 256][(i / 4) % 4] * GIB,
                    engine_labels,
                    version: "bench".into(),
                },
                status: NodeStatus {
                    state: NodeState::Ready,
                    ..Default::default()
                },
                manager_status: None,
                role: if i < 3 {
                    NodeRole::Manager
                } else {
                    NodeRole::Worker
                },
            }
        })
        .collect()
}

/// The spec of service `s`: a mix of what real services ask for.
fn service_spec(s: usize) -> TaskSpec {
    let mut spec = TaskSpec::default();
    let p = &mut spec.placement;
    match s % 10 {
        0 => p.constraints = vec!["node.labels.zone==a".into()],
        1 => {
            p.constraints = vec![
                "node.role!=manager".into(),
                "node.platform.arch==amd64".into(),
            ]
        }
        2 | 3 => {
            spec.resources.reservations.nano_cpus = CORE / 10;
            spec.resources.reservations.memory_bytes = 128 << 20;
        }
        4 => p.preferences = vec!["spread=node.labels.zone".into()],
        5 => {
            p.constraints = vec!["engine.labels.disk==ssd".into()];
            p.max_replicas_per_node = 2;
        }
        6 => {
            p.constraints = vec!["node.labels.gpu!=true".into()];
            p.preferences = vec![
                "spread=node.labels.zone".into(),
                "spread=node.labels.rack".into(),
            ];
            spec.resources.reservations.memory_bytes = 256 << 20;
        }
        _ => {}
    }
    spec
}

fn pending_task(id: String, service: usize, spec: &TaskSpec) -> Task {
    Task {
        id: TaskId::new(id),
        meta: Default::default(),
        service_id: ServiceId::new(self::id("svc", service)),
        slot: 0,
        node_id: None,
        service_name: format!("svc-{service}"),
        spec_version: 1,
        spec: spec.clone().into(),
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Pending,
            ..Default::default()
        },
        restarts: 0,
        networks: Vec::new(),
    }
}

/// Adds `count` pending tasks spread evenly over the services; returns their ids in order.
fn add_pending(state: &mut StoreState, args: &Args, count: usize, tag: &str) -> Vec<TaskId> {
    let specs: Vec<TaskSpec> = (0..args.services).map(service_spec).collect();
    (0..count)
        .map(|i| {
            // Service-major order, as the orchestrator creates them.
            let service = i * args.services / count.max(1);
            let t = pending_task(id(tag, i), service, &specs[service]);
            let tid = t.id.clone();
            state.tasks.insert(tid.clone(), Box::new(t));
            tid
        })
        .collect()
}

struct Outcome {
    times: Vec<Duration>,
    plan: SchedulePlan,
}

fn run(state: &StoreState, pending: &[TaskId], runs: usize) -> Outcome {
    let mut times = Vec::new();
    let mut plan = SchedulePlan::default();
    for _ in 0..runs {
        let start = Instant::now();
        plan = std::hint::black_box(schedule(state, pending));
        times.push(start.elapsed());
    }
    Outcome { times, plan }
}

fn report(name: &str, nodes: usize, load: usize, pending: usize, o: &Outcome) {
    let mut sorted = o.times.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let placed = o.plan.assignments.len();
    let rate = placed as f64 / median.as_secs_f64();
    let runs: Vec<String> = o
        .times
        .iter()
        .map(|t| format!("{:.1}", t.as_secs_f64() * 1e3))
        .collect();
    println!(
        "| {name} | {nodes} | {load} | {pending} | {placed} | {} | {:.1} ms ({}) | {:.0} |",
        o.plan.unplaced.len(),
        median.as_secs_f64() * 1e3,
        runs.join(", "),
        rate
    );
}

fn main() {
    let args = parse_args();
    let mut state = StoreState::default();
    for n in nodes(args.nodes) {
        state.nodes.insert(n.id.clone(), n);
    }

    println!("| scenario | nodes | tasks already placed | pending | placed | unplaced | schedule() median (runs, ms) | placements/s |");
    println!("|---|---:|---:|---:|---:|---:|---|---:|");

    let pending = add_pending(&mut state, &args, args.tasks, "task");
    let first = run(&state, &pending, args.runs);
    report("1: empty cluster", args.nodes, 0, pending.len(), &first);
    if let Some((_, reason)) = first.plan.unplaced.first() {
        eprintln!("example unplaced reason: {reason}");
    }

    // Apply the plan as running load; drop what could not be placed.
    for (tid, nid) in &first.plan.assignments {
        let t = state.tasks.get_mut(tid).expect("planned task exists");
        t.node_id = Some(nid.clone());
        t.status.state = TaskState::Running;
    }
    for (tid, _) in &first.plan.unplaced {
        state.tasks.remove(tid);
    }
    let load = first.plan.assignments.len();
    let new = args.tasks / 10;
    let pending = add_pending(&mut state, &args, new, "next");
    let second = run(&state, &pending, args.runs);
    report(
        "2: loaded cluster",
        args.nodes,
        load,
        pending.len(),
        &second,
    );
}
