//! What one pass of the leader's control loop costs as the store grows: a store with one
//! replicated service of N running tasks on 1,000 nodes, then the pure pass the loop runs
//! (`reconcile_and_place`) over every service, and over none (what a tick with no service
//! waiting on time leaves: the scan for tasks of removed services and the reaper). No Raft,
//! no IO: the decision alone, which holds the store's read lock while it runs.
//!
//! `pass_bench [--tasks 1000,10000,100000] [--runs 7]`

use clap::Parser;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use swarm_engine::orchestrator::{reconcile_and_place, Config};
use swarm_types::objects::{Meta, Node, NodeState, NodeStatus, Object, Service};
use swarm_types::spec::{NodeRole, ServiceSpec};
use swarm_types::store::{Op, StoreState, WriteBatch};
use swarm_types::task::TaskState;
use swarm_types::{NodeId, ServiceId};

#[derive(Parser)]
struct Args {
    /// Tasks in the store (one service), one row each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    tasks: Vec<u64>,
    /// Passes timed per size (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

fn apply(state: &mut StoreState, index: &mut u64, ops: Vec<Op>) {
    *index += 1;
    state
        .apply(&WriteBatch { ops, now_ms: 1 }, *index)
        .expect("bench ops apply");
}

/// A store with `n` running tasks of one service spread over 1,000 ready nodes.
fn store(n: u64) -> StoreState {
    let mut state = StoreState::default();
    let mut index = 0;
    let nodes = (0..1000)
        .map(|i| {
            Op::Put(Object::Node(Node {
                id: NodeId::new(format!("node-{i:04}")),
                meta: Meta::default(),
                status: NodeStatus {
                    state: NodeState::Ready,
                    ..Default::default()
                },
                role: NodeRole::Worker,
                ..Default::default()
            }))
        })
        .collect();
    apply(&mut state, &mut index, nodes);
    let svc = Service::new(
        ServiceId::new("bench"),
        ServiceSpec::replicated("bench", "busybox", n),
    );
    apply(
        &mut state,
        &mut index,
        vec![Op::Put(Object::Service(Box::new(svc)))],
    );
    // In chunks of the control loop's batch size, as the leader writes them: each chunk's
    // tasks share one spec allocation.
    let mut ops = reconcile_and_place(&state, &Config::default(), None).into_iter();
    loop {
        let chunk: Vec<Op> = ops.by_ref().take(500).collect();
        if chunk.is_empty() {
            break;
        }
        apply(&mut state, &mut index, swarm_types::store::compact(chunk));
    }
    let running = state
        .tasks
        .values()
        .map(|t| Op::TaskStatus {
            id: t.id.clone(),
            status: swarm_types::objects::TaskStatus {
                state: TaskState::Running,
                timestamp: 2,
                ..Default::default()
            },
        })
        .collect();
    apply(&mut state, &mut index, running);
    state
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn main() {
    let args = Args::parse();
    println!(
        "| tasks | full pass (median ms) | per 1,000 tasks | pass over no service (ms) | ops |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let none: HashSet<ServiceId> = HashSet::new();
    for &n in &args.tasks {
        let state = store(n);
        let running = state
            .tasks
            .values()
            .filter(|t| t.status.state == TaskState::Running)
            .count();
        assert_eq!(running as u64, n, "every task runs before timing");
        let cfg = Config {
            now_ms: 10,
            ..Default::default()
        };
        let mut ops = 0;
        let full: Vec<Duration> = (0..args.runs)
            .map(|_| {
                let t = Instant::now();
                ops = reconcile_and_place(&state, &cfg, None).len();
                t.elapsed()
            })
            .collect();
        let empty: Vec<Duration> = (0..args.runs)
            .map(|_| {
                let t = Instant::now();
                reconcile_and_place(&state, &cfg, Some(&none));
                t.elapsed()
            })
            .collect();
        let f = median(full);
        println!(
            "| {n} | {f:.1} | {:.2} | {:.1} | {ops} |",
            f / (n as f64 / 1000.0),
            median(empty)
        );
    }
}
