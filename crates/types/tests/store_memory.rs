//! What the store holds per task: heap bytes counted by a wrapping allocator while a burst of
//! tasks is applied as the orchestrator writes them (one `CreateTasks` batch per 1,000), then
//! what their status reports add. Counted bytes, not RSS: deterministic, so a bound on them is
//! a test, not a benchmark. The manager's per-task memory target (≤ 1.5 KiB per task beyond a
//! base) has to start here: the store is the one structure that grows with the tasks.
#![allow(unsafe_code)] // the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use swarm_types::ids::{NodeId, ServiceId, TaskId};
use swarm_types::objects::{Meta, Service, Task, TaskStatus};
use swarm_types::spec::ServiceSpec;
use swarm_types::store::{compact, Op, StoreState, WriteBatch};
use swarm_types::task::TaskState;
use swarm_types::Object;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only
// observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

const TASKS: usize = 10_000;

/// The counter is process-wide: the tests measure one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A service as an operator writes it: image, command, a few env vars and labels.
fn service() -> Service {
    let mut spec = ServiceSpec::replicated("web", "registry.example:5000/team/web:1.4.2", 10_000);
    spec.task.container.args = vec!["sleep".into(), "1d".into()];
    spec.task.container.env = vec!["MODE=production".into(), "LOG_LEVEL=info".into()];
    spec.task
        .container
        .labels
        .insert("team".into(), "payments".into());
    Service {
        id: ServiceId::generate(),
        meta: Meta {
            version: 7,
            ..Default::default()
        },
        spec,
        status: None,
        previous_spec: None,
        update_status: None,
        spec_history: Vec::new(),
        endpoint: Default::default(),
        spec_version: 1,
    }
}

/// The orchestrator's tasks for `svc`, placed on 1,000 nodes, compacted as the leader writes
/// them (one op per batch of 1,000).
fn creates(svc: &Service) -> Vec<WriteBatch> {
    let nodes: Vec<NodeId> = (0..1000).map(|_| NodeId::generate()).collect();
    let tasks: Vec<Op> = (0..TASKS)
        .map(|i| {
            Op::Create(Object::Task(Task {
                id: TaskId::generate(),
                meta: Default::default(),
                service_id: svc.id.clone(),
                slot: i as u64 + 1,
                node_id: Some(nodes[i % nodes.len()].clone()),
                service_name: svc.spec.name.clone(),
                spec_version: svc.meta.version,
                spec: svc.spec.task.clone().into(),
                desired_state: TaskState::Running,
                status: TaskStatus {
                    state: TaskState::Assigned,
                    timestamp: 1,
                    message: "scheduled".into(),
                    ..Default::default()
                },
                restarts: 0,
                networks: Vec::new(),
            }))
        })
        .collect();
    tasks
        .chunks(1000)
        .map(|c| WriteBatch {
            ops: compact(c.to_vec()),
            now_ms: 1,
        })
        .collect()
}

#[test]
fn a_running_task_costs_the_store_under_448_bytes() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut store = StoreState::default();
    let svc = service();
    store
        .apply(
            &WriteBatch {
                ops: vec![Op::Create(Object::Service(Box::new(svc.clone())))],
                now_ms: 1,
            },
            1,
        )
        .unwrap();
    let writes = creates(&svc);
    let ids: Vec<TaskId> = writes
        .iter()
        .flat_map(|w| w.ops.iter())
        .flat_map(|op| match op {
            Op::CreateTasks(b) => b.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
            Op::Create(Object::Task(t)) => vec![t.id.clone()],
            _ => vec![],
        })
        .collect();
    assert_eq!(ids.len(), TASKS);
    let reports: Vec<WriteBatch> = ids
        .chunks(500)
        .map(|c| WriteBatch {
            ops: c
                .iter()
                .map(|id| Op::TaskStatus {
                    id: id.clone(),
                    status: TaskStatus {
                        state: TaskState::Running,
                        timestamp: 2,
                        message: "started".into(),
                        container_id: format!("swarm-{}", id.as_str()),
                        ..Default::default()
                    },
                })
                .collect(),
            now_ms: 2,
        })
        .collect();

    let before = LIVE.load(Ordering::Relaxed);
    for (i, w) in writes.iter().enumerate() {
        let changes = store.apply(w, 10 + i as u64).unwrap();
        drop(changes);
    }
    let created = LIVE.load(Ordering::Relaxed) - before;
    for (i, w) in reports.iter().enumerate() {
        let changes = store.apply(w, 100 + i as u64).unwrap();
        drop(changes);
    }
    let running = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(store.tasks.len(), TASKS);
    let per_created = created as f64 / TASKS as f64;
    let per_running = running as f64 / TASKS as f64;
    println!(
        "store heap per task: {per_created:.0} bytes created, {per_running:.0} bytes running \
         (Task inline {} bytes)",
        std::mem::size_of::<Task>()
    );
    // 385 bytes (2026-12-05, tenth session): a boxed 280-byte `Task`, its share of a B-tree
    // node of boxes and index entries, its strings. 505 while the map held `Task`s inline in
    // nodes of eleven about two thirds full. A tripwire against growth.
    assert!(
        per_running < 448.0,
        "a running task costs the store {per_running:.0} bytes (created: {per_created:.0})"
    );
}

#[test]
fn a_service_costs_the_store_under_two_kib() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const SERVICES: usize = 2_000;
    let mut store = StoreState::default();
    let ops: Vec<Op> = (0..SERVICES)
        .map(|i| {
            let mut s = service();
            s.id = ServiceId::generate();
            s.spec.name = format!("svc-{i}");
            Op::Create(Object::Service(Box::new(s)))
        })
        .collect();
    let writes: Vec<WriteBatch> = ops
        .chunks(100)
        .map(|c| WriteBatch {
            ops: c.to_vec(),
            now_ms: 1,
        })
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    for (i, w) in writes.iter().enumerate() {
        drop(store.apply(w, 1 + i as u64).unwrap());
    }
    let per = (LIVE.load(Ordering::Relaxed) - before) as f64 / SERVICES as f64;
    println!(
        "store heap per service: {per:.0} bytes (Service inline {} bytes)",
        std::mem::size_of::<Service>()
    );
    assert_eq!(store.services.len(), SERVICES);
    // 1.4 KB (2026-12-04, sixth session; 2.7 KB while the map held 1,264-byte `Service`s
    // inline in B-tree nodes of eleven): a boxed `Service` of 568 bytes (the sections most
    // services leave unset are `Sparse` or boxed options), its strings, and the one-label
    // map's B-tree leaf (~540 bytes). A tripwire against growth; the target is 1.5 KiB of RSS.
    assert!(per < 2048.0, "a service costs the store {per:.0} bytes");
}

/// Objects travel in bulk (a batch of status reports, the Raft log's entry cache, the change
/// feed, the event history): each is the size of its largest variant, so a large one is
/// boxed. Not a heap count, a layout check: no allocator needed.
#[test]
fn an_object_is_the_size_of_a_task_not_of_a_service() {
    use std::mem::size_of;
    let task = size_of::<Task>();
    for (what, size) in [
        ("Object", size_of::<Object>()),
        ("Op", size_of::<Op>()),
        ("Change", size_of::<swarm_types::store::Change>()),
    ] {
        println!(
            "{what}: {size} bytes inline (Task {task}, Service {})",
            size_of::<Service>()
        );
        assert!(
            size <= task + 64,
            "{what} is {size} bytes inline, a Task {task}: box the variant that grew"
        );
    }
}

/// The event history keeps 10,000 events on every manager: as `Event`s (owned strings and a
/// `BTreeMap` of attributes) that was 889 bytes a task event, 8.4 MB of a leader's heap once a
/// burst had filled it (heap profile, 2026-12-05); kept compact, 374 (2026-12-05).
#[test]
fn a_kept_event_costs_under_half_a_kib() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut store = StoreState::default();
    let svc = service();
    store
        .apply(
            &WriteBatch {
                ops: vec![Op::Create(Object::Service(Box::new(svc.clone())))],
                now_ms: 1,
            },
            1,
        )
        .unwrap();
    let changes: Vec<_> = creates(&svc)
        .iter()
        .enumerate()
        .flat_map(|(i, w)| store.apply(w, 10 + i as u64).unwrap())
        .collect();
    assert_eq!(changes.len(), TASKS);
    let mut history = swarm_types::events::History::new(TASKS);
    let before = LIVE.load(Ordering::Relaxed);
    for c in &changes {
        let e = history.record(c).expect("a task change has an event");
        // What a reader gets back is the whole event.
        assert_eq!(e.kind, "task");
        assert_eq!(e.attributes.get("service").map(String::as_str), Some("web"));
    }
    let per = (LIVE.load(Ordering::Relaxed) - before) as f64 / TASKS as f64;
    println!("event history heap per event: {per:.0} bytes");
    let replay = history.after(swarm_types::events::Cursor::default(), 0);
    assert_eq!(replay.events.len(), TASKS);
    assert_eq!(
        replay.events[0],
        swarm_types::events::event_of(&changes[0], replay.events[0].cursor).unwrap()
    );
    assert!(per < 512.0, "a kept event costs {per:.0} bytes");
}
