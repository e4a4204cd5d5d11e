//! Tests of the orchestrator: replicated, global and job reconciliation, restarts, updates.

use super::*;
use proptest::prelude::*;
use std::time::Duration;
use swarm_types::objects::UpdateState;
use swarm_types::objects::{Meta, Node, NodeStatus};
use swarm_types::spec::{
    ContainerSpec, FailureAction, NodeRole, RestartPolicy, ServiceSpec, TaskSpec, UpdateOrder,
};
use swarm_types::store::WriteBatch;

struct World {
    state: StoreState,
    index: u64,
    now: u64,
    /// What a leader running passes all along saw: each task running since it said so,
    /// or since now when its timestamp lies ahead of the leader's clock.
    seen: std::collections::HashMap<swarm_types::TaskId, u64>,
    /// How far ahead of the leader the agents' clocks are when they report running.
    agents_ahead_ms: u64,
}

impl World {
    fn new() -> Self {
        World {
            state: StoreState::default(),
            index: 0,
            now: 1_000_000,
            seen: Default::default(),
            agents_ahead_ms: 0,
        }
    }
    fn apply(&mut self, ops: Vec<Op>) {
        self.index += 1;
        self.state
            .apply(
                &WriteBatch {
                    ops,
                    now_ms: self.now,
                },
                self.index,
            )
            .expect("orchestrator ops apply");
    }
    fn node(&mut self, id: &str, state: NodeState) {
        let n = Node {
            id: NodeId::new(id),
            meta: Meta::default(),
            status: NodeStatus {
                state,
                ..Default::default()
            },
            role: NodeRole::Worker,
            ..Default::default()
        };
        self.apply(vec![Op::Put(Object::Node(n))]);
    }
    fn set_node(&mut self, id: &str, f: impl FnOnce(&mut Node)) {
        let mut n = self.state.nodes[id].clone();
        f(&mut n);
        self.apply(vec![Op::Put(Object::Node(n))]);
    }
    fn service(&mut self, name: &str, mode: ServiceMode) -> ServiceId {
        let s = Service {
            status: None,
            id: ServiceId::new(name),
            meta: Meta::default(),
            spec: ServiceSpec {
                name: name.into(),
                labels: Default::default(),
                task: TaskSpec {
                    container: ContainerSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    },
                    restart_policy: RestartPolicy {
                        delay: Duration::ZERO,
                        ..Default::default()
                    }
                    .into(),
                    ..Default::default()
                },
                mode,
                update_config: Default::default(),
                rollback_config: Default::default(),
                endpoint: Default::default(),
            },
            previous_spec: None,
            update_status: None,
            spec_history: Vec::new(),
            endpoint: Default::default(),
            spec_version: 1,
        };
        self.apply(vec![Op::Put(Object::Service(Box::new(s)))]);
        ServiceId::new(name)
    }
    /// Changes the spec as if the service had been created with it (no rolling update).
    fn set_spec(&mut self, id: &ServiceId, f: impl FnOnce(&mut ServiceSpec)) {
        let mut s = self.state.services[id].clone();
        f(&mut s.spec);
        self.apply(vec![Op::Put(Object::Service(s))]);
    }
    fn update_service(&mut self, id: &ServiceId, f: impl FnOnce(&mut ServiceSpec)) {
        let mut s = self.state.services[id].clone();
        let mut spec = s.spec.clone();
        f(&mut spec);
        s.replace_spec(spec, self.now, false);
        self.apply(vec![Op::Put(Object::Service(s))]);
    }
    fn reconcile(&mut self) -> usize {
        for t in self.state.tasks.values() {
            if t.status.state == TaskState::Running {
                self.seen
                    .entry(t.id.clone())
                    .or_insert(t.status.timestamp.min(self.now));
            }
        }
        let ops = reconcile(&self.state, &self.config());
        let n = ops.len();
        if n > 0 {
            self.apply(ops);
        }
        n
    }
    /// The pass configuration of this world: its clock, a 1 s grace, 2 dead tasks kept.
    fn config(&self) -> Config {
        Config {
            now_ms: self.now,
            node_down_grace_ms: 1000,
            task_history_limit: 2,
            running_since: std::sync::Arc::new(self.seen.clone()),
        }
    }
    /// The services a pass over the current state notes as waiting on time alone.
    fn timed(&self) -> HashSet<ServiceId> {
        let mut timed = HashSet::new();
        reconcile_and_place_noting(&self.state, &self.config(), None, &mut timed);
        timed
    }
    /// Places pending tasks round-robin and marks everything assigned as running.
    fn run_all(&mut self) {
        let nodes: Vec<NodeId> = self
            .state
            .nodes
            .values()
            .filter(|n| {
                n.status.state == NodeState::Ready && n.spec.availability == Availability::Active
            })
            .map(|n| n.id.clone())
            .collect();
        let mut ops = Vec::new();
        for (i, t) in self.state.tasks.values().enumerate() {
            if t.status.state == TaskState::Pending && !nodes.is_empty() {
                ops.push(Op::AssignTask {
                    id: t.id.clone(),
                    node_id: nodes[i % nodes.len()].clone(),
                });
            }
        }
        self.apply(ops);
        let ops = self
            .state
            .tasks
            .values()
            .map(|t| &**t)
            .filter(|t| {
                t.status.state == TaskState::Assigned && t.desired_state == TaskState::Running
            })
            .map(|t| match self.agents_ahead_ms {
                0 => status(t, TaskState::Running),
                ahead => Op::TaskStatus {
                    id: t.id.clone(),
                    status: TaskStatus {
                        state: TaskState::Running,
                        timestamp: self.now + ahead,
                        ..Default::default()
                    },
                },
            })
            .collect();
        self.apply(ops);
        // The agent stops what should no longer run.
        let ops = self
            .state
            .tasks
            .values()
            .map(|t| &**t)
            .filter(|t| t.desired_state >= TaskState::Shutdown && !t.status.state.is_terminal())
            .map(|t| status(t, TaskState::Shutdown))
            .collect();
        self.apply(ops);
    }
    fn live(&self, svc: &ServiceId) -> Vec<&Task> {
        self.state
            .tasks
            .values()
            .map(|t| &**t)
            .filter(|t| t.service_id == *svc && is_live(t))
            .collect()
    }
    fn running(&self, svc: &ServiceId) -> usize {
        self.live(svc)
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .count()
    }
}

fn status(t: &Task, state: TaskState) -> Op {
    Op::TaskStatus {
        id: t.id.clone(),
        status: TaskStatus {
            state,
            timestamp: 1_000_000,
            ..Default::default()
        },
    }
}

fn three_nodes() -> World {
    let mut w = World::new();
    for n in ["a", "b", "c"] {
        w.node(n, NodeState::Ready);
    }
    w
}

#[test]
fn scale_up_creates_slots_and_second_pass_is_idle() {
    let mut w = three_nodes();
    let s = w.service("web", ServiceMode::Replicated { replicas: 3 });
    assert!(w.reconcile() > 0);
    let mut slots: Vec<u64> = w.live(&s).iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![1, 2, 3]);
    assert!(w
        .live(&s)
        .iter()
        .all(|t| t.status.state == TaskState::Pending));
    assert_eq!(w.reconcile(), 0, "idempotent");
    w.run_all();
    assert_eq!(w.running(&s), 3);
    assert_eq!(w.reconcile(), 0);
}

#[test]
fn scale_down_takes_from_the_busiest_node() {
    let mut w = three_nodes();
    let s = w.service("web", ServiceMode::Replicated { replicas: 4 });
    w.reconcile();
    w.run_all();
    let busiest = {
        let mut count: HashMap<NodeId, usize> = HashMap::new();
        for t in w.live(&s) {
            *count.entry(t.node_id.clone().unwrap()).or_default() += 1;
        }
        count.into_iter().max_by_key(|(_, c)| *c).unwrap().0
    };
    w.update_service(&s, |sp| sp.mode = ServiceMode::Replicated { replicas: 3 });
    w.reconcile();
    assert_eq!(w.live(&s).len(), 3);
    let removed: Vec<&Task> = w
        .state
        .tasks
        .values()
        .map(|t| &**t)
        .filter(|t| t.desired_state == TaskState::Remove)
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].node_id.as_ref(), Some(&busiest));
    w.update_service(&s, |sp| sp.mode = ServiceMode::Replicated { replicas: 0 });
    w.reconcile();
    assert!(w.live(&s).is_empty());
}

#[test]
fn failed_task_is_restarted_in_its_slot_per_policy() {
    let mut w = three_nodes();
    let s = w.service("web", ServiceMode::Replicated { replicas: 1 });
    w.reconcile();
    w.run_all();
    let t = w.live(&s)[0].clone();
    w.apply(vec![status(&t, TaskState::Failed)]);
    w.reconcile();
    let live = w.live(&s);
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].id, t.id);
    assert_eq!(live[0].slot, t.slot);
    assert_eq!(live[0].restarts, 1);
    assert_eq!(w.state.tasks[&t.id].desired_state, TaskState::Shutdown);
}

/// A replicated service "web" whose tasks restart on failure after 5 s.
fn on_failure_after_5s(w: &mut World, replicas: u64, max_attempts: u64) -> ServiceId {
    let s = w.service("web", ServiceMode::Replicated { replicas });
    w.set_spec(&s, |sp| {
        sp.task.restart_policy = RestartPolicy {
            condition: RestartCondition::OnFailure,
            delay: Duration::from_secs(5),
            max_attempts,
            window: Duration::ZERO,
        }
        .into()
    });
    s
}

#[test]
fn restart_delay_condition_and_max_attempts() {
    let mut w = three_nodes();
    let s = on_failure_after_5s(&mut w, 1, 1);
    w.reconcile();
    w.run_all();
    let t = w.live(&s)[0].clone();
    w.apply(vec![status(&t, TaskState::Failed)]);
    assert_eq!(w.reconcile(), 0, "not before the delay");
    w.now += 5_000;
    w.reconcile();
    w.run_all();
    let t2 = w.live(&s)[0].clone();
    assert_eq!(t2.restarts, 1);
    w.apply(vec![status(&t2, TaskState::Failed)]);
    w.now += 10_000;
    assert_eq!(w.reconcile(), 0, "max attempts reached");
    // on-failure does not restart a task that completed.
    let s2 = w.service("once", ServiceMode::Replicated { replicas: 1 });
    w.set_spec(&s2, |sp| {
        sp.task.restart_policy.condition = RestartCondition::OnFailure
    });
    w.reconcile();
    w.run_all();
    let t = w.live(&s2)[0].clone();
    w.apply(vec![status(&t, TaskState::Complete)]);
    assert_eq!(w.reconcile(), 0);
}

#[test]
fn restart_delay_backs_off_exponentially_with_a_cap() {
    assert_eq!(restart_delay(5_000, 0), 5_000);
    assert_eq!(restart_delay(5_000, 1), 10_000);
    assert_eq!(restart_delay(5_000, 3), 40_000);
    assert_eq!(restart_delay(5_000, 10), 60_000, "capped at a minute");
    assert_eq!(
        restart_delay(120_000, 4),
        120_000,
        "a longer configured delay is kept"
    );
    assert_eq!(restart_delay(0, 9), 0);
}

#[test]
fn tasks_on_down_or_drained_nodes_are_replaced() {
    let mut w = three_nodes();
    let s = w.service("web", ServiceMode::Replicated { replicas: 3 });
    w.reconcile();
    w.run_all();
    let on_a: Vec<TaskId> = w
        .live(&s)
        .iter()
        .filter(|t| t.node_id == Some(NodeId::new("a")))
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(on_a.len(), 1);
    w.set_node("a", |n| n.status.state = NodeState::Down);
    assert_eq!(w.reconcile(), 0, "within the grace period");
    w.now += 1_000;
    w.reconcile();
    assert_eq!(w.state.tasks[&on_a[0]].status.state, TaskState::Orphaned);
    assert_eq!(w.live(&s).len(), 3);
    w.run_all();
    assert!(w
        .live(&s)
        .iter()
        .all(|t| t.node_id != Some(NodeId::new("a"))));
    w.set_node("b", |n| n.spec.availability = Availability::Drain);
    w.reconcile();
    w.run_all();
    assert_eq!(w.running(&s), 3);
    assert!(w
        .live(&s)
        .iter()
        .all(|t| t.node_id == Some(NodeId::new("c"))));
}

#[test]
fn global_service_one_task_per_eligible_node() {
    let mut w = three_nodes();
    let s = w.service("agent", ServiceMode::Global);
    w.reconcile();
    assert_eq!(w.live(&s).len(), 3);
    assert_eq!(w.reconcile(), 0);
    w.node("d", NodeState::Ready);
    w.reconcile();
    let mut nodes: Vec<String> = w
        .live(&s)
        .iter()
        .map(|t| t.node_id.clone().unwrap().to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["a", "b", "c", "d"]);
    w.set_node("b", |n| n.spec.availability = Availability::Drain);
    w.reconcile();
    assert_eq!(w.live(&s).len(), 3);
    w.update_service(&s, |sp| {
        sp.task.placement.constraints = vec!["node.labels.gpu==yes".into()]
    });
    w.set_node("c", |n| {
        n.spec.labels.insert("gpu".into(), "yes".into());
    });
    w.reconcile();
    let live = w.live(&s);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].node_id, Some(NodeId::new("c")));
}

#[test]
fn spec_change_replaces_tasks_and_removal_reaps_them() {
    let mut w = three_nodes();
    let s = w.service("web", ServiceMode::Replicated { replicas: 2 });
    w.reconcile();
    w.run_all();
    w.update_service(&s, |sp| sp.task.container.image = "busybox:2".into());
    drive(&mut w, &s, 10);
    assert!(w
        .live(&s)
        .iter()
        .all(|t| t.spec.container.image == "busybox:2"));
    // Removing the service: tasks are marked for removal, then deleted once stopped.
    w.apply(vec![Op::Delete {
        kind: ObjectKind::Service,
        id: s.to_string(),
        version: None,
    }]);
    w.reconcile();
    let remove: Vec<Task> = w
        .state
        .tasks
        .values()
        .map(|t| &**t)
        .filter(|t| t.desired_state == TaskState::Remove && !t.status.state.is_terminal())
        .cloned()
        .collect();
    assert_eq!(remove.len(), 2, "running tasks wait for their agent");
    w.apply(
        remove
            .iter()
            .map(|t| status(t, TaskState::Shutdown))
            .collect(),
    );
    w.reconcile();
    assert!(
        w.state.tasks.is_empty(),
        "{:?}",
        w.state.tasks.keys().collect::<Vec<_>>()
    );
}

#[test]
fn history_is_bounded_per_slot() {
    let mut w = three_nodes();
    let s = w.service("web", ServiceMode::Replicated { replicas: 1 });
    for _ in 0..6 {
        w.reconcile();
        w.run_all();
        let t = w.live(&s)[0].clone();
        w.apply(vec![status(&t, TaskState::Failed)]);
        w.now += 1;
    }
    w.reconcile();
    w.reconcile();
    let slot1 = w.state.tasks.values().filter(|t| t.slot == 1).count();
    assert!(slot1 <= 3, "one live + two history, got {slot1}");
}

#[test]
fn replicated_job_runs_to_completion() {
    let mut w = three_nodes();
    let s = w.service(
        "job",
        ServiceMode::ReplicatedJob {
            max_concurrent: 2,
            total_completions: 3,
        },
    );
    let mut completed = 0;
    for _ in 0..10 {
        w.reconcile();
        w.run_all();
        let running: Vec<Task> = w
            .live(&s)
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .map(|t| (*t).clone())
            .collect();
        assert!(running.len() <= 2, "max concurrent");
        for t in running {
            w.apply(vec![status(&t, TaskState::Complete)]);
            completed += 1;
        }
    }
    assert_eq!(completed, 3);
}

fn image_counts(w: &World, s: &ServiceId) -> (usize, usize) {
    let running: Vec<&Task> = w
        .live(s)
        .into_iter()
        .filter(|t| t.status.state == TaskState::Running)
        .collect();
    let all_running = w
        .state
        .tasks
        .values()
        .map(|t| &**t)
        .filter(|t| t.service_id == *s && t.status.state == TaskState::Running)
        .count();
    (running.len(), all_running)
}

/// Runs passes (agent simulated by `run_all`) until the update status settles; returns the
/// minimum and maximum numbers of running tasks seen at any step.
fn drive(w: &mut World, s: &ServiceId, steps: usize) -> (usize, usize) {
    let (mut min, mut max) = (usize::MAX, 0);
    for _ in 0..steps {
        w.reconcile();
        let (_, running) = image_counts(w, s);
        min = min.min(running);
        max = max.max(running);
        w.run_all();
        let (_, running) = image_counts(w, s);
        min = min.min(running);
        max = max.max(running);
        w.now += 1_000;
    }
    (min, max)
}

fn six_running(w: &mut World) -> ServiceId {
    let s = w.service("web", ServiceMode::Replicated { replicas: 6 });
    w.reconcile();
    w.run_all();
    assert_eq!(w.running(&s), 6);
    s
}

#[test]
fn stop_first_update_keeps_enough_running_and_updates_each_slot_once() {
    let mut w = three_nodes();
    let s = six_running(&mut w);
    w.update_service(&s, |sp| {
        sp.task.container.image = "busybox:2".into();
        sp.update_config.parallelism = 2;
    });
    assert_eq!(
        w.state.services[&s].update_status.as_ref().unwrap().state,
        UpdateState::Updating
    );
    let (min, max) = drive(&mut w, &s, 20);
    assert!(
        min >= 4,
        "never fewer than replicas - parallelism running: {min}"
    );
    assert!(max <= 6, "stop-first never runs more than replicas: {max}");
    assert!(w
        .live(&s)
        .iter()
        .all(|t| t.spec.container.image == "busybox:2"));
    assert_eq!(w.running(&s), 6);
    let st = w.state.services[&s].update_status.clone().unwrap();
    assert_eq!(st.state, UpdateState::Completed, "{st:?}");
    let v2_per_slot: HashMap<u64, usize> = w
        .state
        .tasks
        .values()
        .map(|t| &**t)
        .filter(|t| t.spec.container.image == "busybox:2")
        .fold(HashMap::new(), |mut m, t| {
            *m.entry(t.slot).or_default() += 1;
            m
        });
    assert!(
        v2_per_slot.values().all(|c| *c == 1),
        "no slot updated twice: {v2_per_slot:?}"
    );
}

#[test]
fn an_update_completes_on_the_leader_s_time_even_when_agents_clocks_are_ahead() {
    // RELIABILITY.md finding 6: replacements reported running by nodes whose clocks were
    // 90 s ahead held the update "updating", every task running, until the leader's clock
    // reached those timestamps.
    let mut w = three_nodes();
    let s = six_running(&mut w);
    w.agents_ahead_ms = 90_000;
    w.update_service(&s, |sp| {
        sp.task.container.image = "busybox:2".into();
        sp.update_config.parallelism = 2;
    });
    // Three batches, each then the 5 s monitor: well under 90 s of the leader's time.
    drive(&mut w, &s, 25);
    assert_eq!(w.running(&s), 6);
    let st = w.state.services[&s].update_status.clone().unwrap();
    assert_eq!(st.state, UpdateState::Completed, "{st:?}");
}

#[test]
fn start_first_update_never_exceeds_replicas_plus_parallelism() {
    let mut w = three_nodes();
    let s = six_running(&mut w);
    w.update_service(&s, |sp| {
        sp.task.container.image = "busybox:2".into();
        sp.update_config.parallelism = 2;
        sp.update_config.order = UpdateOrder::StartFirst;
    });
    let (min, max) = drive(&mut w, &s, 20);
    assert!(min >= 6, "start-first keeps all replicas running: {min}");
    assert!(max <= 8, "at most replicas + parallelism: {max}");
    assert!(w
        .live(&s)
        .iter()
        .all(|t| t.spec.container.image == "busybox:2"));
    assert_eq!(w.running(&s), 6);
}

#[test]
fn failing_update_pauses_or_rolls_back() {
    for action in [FailureAction::Pause, FailureAction::Rollback] {
        let mut w = three_nodes();
        let s = six_running(&mut w);
        w.update_service(&s, |sp| {
            sp.task.container.image = "broken:2".into();
            sp.update_config.parallelism = 2;
            sp.update_config.failure_action = action;
        });
        for _ in 0..30 {
            w.reconcile();
            w.run_all();
            // The agent: new tasks of the broken image exit 1 as soon as they run.
            let broken: Vec<Task> = w
                .state
                .tasks
                .values()
                .map(|t| &**t)
                .filter(|t| {
                    t.spec.container.image == "broken:2" && t.status.state == TaskState::Running
                })
                .cloned()
                .collect();
            w.apply(
                broken
                    .iter()
                    .map(|t| status(t, TaskState::Failed))
                    .collect(),
            );
            w.now += 1_000;
        }
        let svc = &w.state.services[&s];
        let st = svc.update_status.clone().unwrap();
        match action {
            FailureAction::Pause => {
                assert_eq!(st.state, UpdateState::Paused, "{st:?}");
                assert!(st.message.contains("failed"), "{}", st.message);
                assert_eq!(svc.spec.task.container.image, "broken:2");
            }
            _ => {
                assert_eq!(st.state, UpdateState::RollbackCompleted, "{st:?}");
                assert_eq!(svc.spec.task.container.image, "busybox");
                assert_eq!(w.running(&s), 6);
                assert!(w
                    .live(&s)
                    .iter()
                    .all(|t| t.spec.container.image == "busybox"));
            }
        }
    }
}

proptest! {
    /// Random scales, failures, node losses and drains: after each pass the live tasks never
    /// exceed the replica count, and after a quiet pass they match it exactly.
    #[test]
    fn never_more_live_tasks_than_replicas(steps in proptest::collection::vec((0u8..5, 0u64..6, 0usize..8), 1..30)) {
        let mut w = three_nodes();
        let s = w.service("web", ServiceMode::Replicated { replicas: 2 });
        let mut replicas = 2;
        for (what, n, pick) in steps {
            match what {
                0 => {
                    replicas = n;
                    w.update_service(&s, |sp| sp.mode = ServiceMode::Replicated { replicas: n });
                }
                1 => {
                    let live: Vec<Task> = w.live(&s).into_iter().cloned().collect();
                    if let Some(t) = live.get(pick % live.len().max(1)) {
                        w.apply(vec![status(t, TaskState::Failed)]);
                    }
                }
                2 => {
                    let id = ["a", "b", "c"][pick % 3];
                    let down = w.state.nodes[id].status.state == NodeState::Down;
                    w.set_node(id, |node| node.status.state = if down { NodeState::Ready } else { NodeState::Down });
                    w.now += 2_000;
                }
                3 => {
                    let id = ["a", "b", "c"][pick % 3];
                    w.set_node(id, |node| node.spec.availability = if node.spec.availability == Availability::Drain { Availability::Active } else { Availability::Drain });
                }
                _ => w.run_all(),
            }
            w.reconcile();
            prop_assert!(w.live(&s).len() as u64 <= replicas, "{} live > {}", w.live(&s).len(), replicas);
            let slots: HashSet<u64> = w.live(&s).iter().map(|t| t.slot).collect();
            prop_assert_eq!(slots.len(), w.live(&s).len(), "one live task per slot");
        }
        w.now += 10_000;
        w.reconcile();
        prop_assert_eq!(w.live(&s).len() as u64, replicas);
    }
}

#[test]
fn global_update_rolls_one_node_at_a_time() {
    let mut w = three_nodes();
    let s = w.service("agent", ServiceMode::Global);
    w.reconcile();
    w.run_all();
    assert_eq!(w.running(&s), 3);
    w.update_service(&s, |sp| sp.task.container.image = "busybox:2".into());
    let mut min_running = usize::MAX;
    for _ in 0..20 {
        w.reconcile();
        let (_, running) = image_counts(&w, &s);
        min_running = min_running.min(running);
        w.run_all();
        w.now += 1_000;
    }
    assert!(
        min_running >= 2,
        "parallelism 1 keeps two of three nodes running: {min_running}"
    );
    assert!(w
        .live(&s)
        .iter()
        .all(|t| t.spec.container.image == "busybox:2"));
    assert_eq!(w.running(&s), 3);
    assert_eq!(
        w.state.services[&s].update_status.as_ref().unwrap().state,
        UpdateState::Completed
    );
}

#[test]
fn service_status_counts_running_and_desired_tasks() {
    let mut w = three_nodes();
    let web = w.service("web", ServiceMode::Replicated { replicas: 4 });
    let agent = w.service("agent", ServiceMode::Global);
    w.reconcile();
    let st = w.state.service_statuses();
    assert_eq!((st[&web].running_tasks, st[&web].desired_tasks), (0, 4));
    assert_eq!((st[&agent].running_tasks, st[&agent].desired_tasks), (0, 3));
    w.run_all();
    let st = w.state.service_statuses();
    assert_eq!((st[&web].running_tasks, st[&web].desired_tasks), (4, 4));
    assert_eq!((st[&agent].running_tasks, st[&agent].desired_tasks), (3, 3));
    // Draining a node takes its global task out of both counts.
    w.set_node("b", |n| n.spec.availability = Availability::Drain);
    w.reconcile();
    let st = w.state.service_statuses();
    assert_eq!((st[&agent].running_tasks, st[&agent].desired_tasks), (2, 2));
}

#[test]
fn new_tasks_are_created_already_placed_when_nothing_is_released() {
    let mut w = three_nodes();
    let s = w.service("web", ServiceMode::Replicated { replicas: 6 });
    let cfg = Config {
        now_ms: w.now,
        node_down_grace_ms: 1000,
        task_history_limit: 2,
        running_since: Default::default(),
    };
    let ops = reconcile_and_place(&w.state, &cfg, None);
    assert_eq!(ops.len(), 6);
    w.apply(ops);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for t in w.live(&s) {
        assert_eq!(t.status.state, TaskState::Assigned, "{t:?}");
        assert_eq!(t.status.message, "scheduled");
        *per_node
            .entry(t.node_id.clone().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );

    // A task no node can take is created pending, with the reason.
    let gpu = w.service("gpu", ServiceMode::Replicated { replicas: 1 });
    w.set_spec(&gpu, |sp| {
        sp.task.placement.constraints = vec!["node.labels.gpu==yes".into()]
    });
    let ops = reconcile_and_place(&w.state, &cfg, None);
    w.apply(ops);
    let t = w.live(&gpu)[0];
    assert_eq!(t.status.state, TaskState::Pending);
    assert!(t.node_id.is_none());
    assert!(
        t.status.err.contains("node.labels.gpu==yes"),
        "{}",
        t.status.err
    );

    // A pass that also stops tasks leaves its new tasks to the scheduler.
    w.update_service(&s, |sp| sp.task.container.image = "web:2".into());
    let ops = reconcile_and_place(&w.state, &cfg, None);
    assert!(ops.iter().any(|op| matches!(op, Op::TaskDesired { .. })));
    for op in &ops {
        if let Op::Create(Object::Task(t)) = op {
            assert!(t.node_id.is_none() && t.status.state == TaskState::Pending);
        }
    }
}

mod compact {
    //! Compaction of the orchestrator's task creations (`swarm_types::store::compact`)
    //! applies exactly like the creations it stands for.
    use crate::orchestrator::{reconcile, Config};
    use swarm_types::spec::ServiceSpec;
    use swarm_types::store::{compact, Op, StoreError, StoreState, WriteBatch};
    use swarm_types::{Object, Service, ServiceId};

    fn service(id: &str, name: &str) -> Object {
        Object::Service(Box::new(Service::new(
            ServiceId::new(id),
            ServiceSpec::replicated(name, "busybox", 7),
        )))
    }

    fn with_services() -> StoreState {
        let mut st = StoreState::default();
        let ops = vec![service("a", "web"), service("b", "db")];
        st.apply(
            &WriteBatch {
                ops: ops.into_iter().map(Op::Create).collect(),
                now_ms: 1,
            },
            1,
        )
        .unwrap();
        st
    }

    #[test]
    fn compacted_creations_apply_exactly_like_the_originals() {
        let st = with_services();
        let cfg = Config {
            now_ms: 5,
            node_down_grace_ms: 1,
            task_history_limit: 1,
            running_since: Default::default(),
        };
        let ops = reconcile(&st, &cfg);
        assert_eq!(ops.len(), 14);
        let small = compact(ops.clone());
        // One batch per service, each standing for its seven tasks.
        assert_eq!(small.len(), 2, "{small:?}");
        assert_eq!(small.iter().map(Op::weight).sum::<usize>(), 14);
        let (mut a, mut b) = (st.clone(), st.clone());
        let ca = a.apply(&WriteBatch { ops, now_ms: 9 }, 2).unwrap();
        let cb = b
            .apply(
                &WriteBatch {
                    ops: small,
                    now_ms: 9,
                },
                2,
            )
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(ca, cb);
    }

    #[test]
    fn a_taken_id_fails_the_whole_batch() {
        let mut st = with_services();
        let cfg = Config {
            now_ms: 5,
            node_down_grace_ms: 1,
            task_history_limit: 1,
            running_since: Default::default(),
        };
        let ops = reconcile(&st, &cfg);
        // Create the fourth task alone first: the batch then collides in its middle.
        st.apply(
            &WriteBatch {
                ops: vec![ops[3].clone()],
                now_ms: 9,
            },
            2,
        )
        .unwrap();
        let before = st.clone();
        let err = st
            .apply(
                &WriteBatch {
                    ops: compact(ops),
                    now_ms: 9,
                },
                3,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Exists { .. }), "{err}");
        assert_eq!(st, before, "nothing of the failed batch stays");
    }
}

/// The control loop's tick looks again only at services a pass noted as waiting on time: a
/// restart delay, a down node's grace, an update's pacing. A settled service is not noted,
/// and each noted one is acted on once its time comes.
#[test]
fn only_services_waiting_on_time_are_noted_for_the_tick() {
    let mut w = three_nodes();
    let s = on_failure_after_5s(&mut w, 3, 0);
    w.reconcile();
    w.run_all();
    assert_eq!(w.reconcile(), 0);
    assert!(w.timed().is_empty(), "a settled service waits on nothing");

    // A dead task under its restart delay.
    let t = w.live(&s)[0].clone();
    w.apply(vec![status(&t, TaskState::Failed)]);
    assert_eq!(w.reconcile(), 0, "not before the delay");
    assert!(w.timed().contains(&s));
    w.now += 5_000;
    assert!(w.reconcile() > 0, "replaced once the delay passed");
    w.run_all();
    assert_eq!(w.reconcile(), 0);
    assert!(w.timed().is_empty());

    // A live task on a node that went down, within the grace period.
    let on = w.live(&s)[0].node_id.clone().expect("placed");
    w.set_node(on.as_str(), |n| n.status.state = NodeState::Down);
    assert_eq!(w.reconcile(), 0, "within the grace period");
    assert!(w.timed().contains(&s));
    w.now += 1_000;
    assert!(w.reconcile() > 0, "replaced once the grace passed");
    w.run_all();
    w.reconcile();
    w.run_all();
    assert!(w.timed().is_empty(), "{:?}", w.timed());

    // A rolling update in progress (its pacing and monitor).
    w.update_service(&s, |sp| sp.task.container.image = "busybox:2".into());
    w.reconcile();
    assert!(w.timed().contains(&s));
}
