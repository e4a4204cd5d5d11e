//! Tests of the store's apply: versions, names, atomic batches, task ops, the derived indexes.

use super::*;
use crate::ids::{NodeId, TaskId};
use crate::objects::TaskStatus;
use crate::spec::{ContainerSpec, ServiceMode, ServiceSpec, TaskSpec};
use crate::task::TaskState;
use proptest::prelude::*;

fn service(id: &str, name: &str, version: u64) -> Object {
    Object::Service(Box::new(Service {
        status: None,
        id: ServiceId::new(id),
        meta: crate::objects::Meta {
            version,
            ..Default::default()
        },
        spec: ServiceSpec {
            name: name.into(),
            labels: Default::default(),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "busybox".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas: 1 },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        },
        previous_spec: None,
        update_status: None,
        spec_history: Vec::new(),
        endpoint: Default::default(),
        spec_version: 1,
    }))
}

fn batch(ops: Vec<Op>) -> WriteBatch {
    WriteBatch { ops, now_ms: 1000 }
}

#[test]
fn create_sets_version_to_index() {
    let mut s = StoreState::default();
    let ch = s
        .apply(&batch(vec![Op::Create(service("a", "web", 0))]), 7)
        .unwrap();
    assert_eq!(ch[0].action, Action::Created);
    assert_eq!(s.services[&ServiceId::new("a")].meta.version, 7);
    assert_eq!(s.service_by_name("web").unwrap().id.as_str(), "a");
}

#[test]
fn stale_update_is_refused() {
    let mut s = StoreState::default();
    s.apply(&batch(vec![Op::Create(service("a", "web", 0))]), 3)
        .unwrap();
    s.apply(&batch(vec![Op::Update(service("a", "web", 3))]), 4)
        .unwrap();
    let err = s
        .apply(&batch(vec![Op::Update(service("a", "web", 3))]), 5)
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::VersionMismatch {
            expected: 3,
            actual: 4,
            ..
        }
    ));
}

#[test]
fn duplicate_name_refused_and_batch_is_atomic() {
    let mut s = StoreState::default();
    s.apply(&batch(vec![Op::Create(service("a", "web", 0))]), 1)
        .unwrap();
    let before = s.clone();
    let err = s
        .apply(
            &batch(vec![
                Op::Create(service("b", "db", 0)),
                Op::Create(service("c", "web", 0)),
            ]),
            2,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NameConflict { .. }));
    assert_eq!(s, before, "a failed batch must leave no trace");
    assert!(s.service_by_name("db").is_none());
}

#[test]
fn rename_frees_old_name_and_delete_checks_version() {
    let mut s = StoreState::default();
    s.apply(&batch(vec![Op::Create(service("a", "web", 0))]), 1)
        .unwrap();
    s.apply(&batch(vec![Op::Update(service("a", "www", 1))]), 2)
        .unwrap();
    assert!(s.service_by_name("web").is_none());
    s.apply(&batch(vec![Op::Create(service("b", "web", 0))]), 3)
        .unwrap();
    let del = |v| Op::Delete {
        kind: ObjectKind::Service,
        id: "a".into(),
        version: v,
    };
    assert!(s.apply(&batch(vec![del(Some(1))]), 4).is_err());
    s.apply(&batch(vec![del(Some(2))]), 5).unwrap();
    assert!(s.apply(&batch(vec![del(None)]), 6).is_err());
}

#[test]
fn snapshot_roundtrip_rebuilds_name_index() {
    let mut s = StoreState::default();
    s.apply(&batch(vec![Op::Create(service("a", "web", 0))]), 1)
        .unwrap();
    let json = serde_json::to_vec(&s).unwrap();
    let mut back: StoreState = serde_json::from_slice(&json).unwrap();
    back.rebuild_indexes();
    assert_eq!(back, s);
    assert!(back.service_by_name("web").is_some());
}

#[test]
fn the_services_in_an_update_are_indexed_through_every_change() {
    use crate::objects::{UpdateState, UpdateStatus};
    let with_update = |version, state: Option<UpdateState>| {
        let Object::Service(mut svc) = service("a", "web", version) else {
            unreachable!()
        };
        svc.update_status = state
            .map(|state| UpdateStatus {
                state,
                started_at: 1,
                completed_at: 0,
                message: String::new(),
            })
            .map(Box::new);
        Object::Service(svc)
    };
    let mut s = StoreState::default();
    let a = ServiceId::new("a");
    s.apply(&batch(vec![Op::Create(with_update(0, None))]), 1)
        .unwrap();
    assert!(s.updating_services().is_empty());
    s.apply(
        &batch(vec![Op::Update(with_update(
            1,
            Some(UpdateState::Updating),
        ))]),
        2,
    )
    .unwrap();
    assert!(s.updating_services().contains(&a));
    let json = serde_json::to_vec(&s).unwrap();
    let mut back: StoreState = serde_json::from_slice(&json).unwrap();
    back.rebuild_indexes();
    assert_eq!(
        back.updating_services(),
        s.updating_services(),
        "rebuilt from a snapshot"
    );
    s.apply(
        &batch(vec![Op::Update(with_update(
            2,
            Some(UpdateState::Completed),
        ))]),
        3,
    )
    .unwrap();
    assert!(s.updating_services().is_empty());
    s.apply(
        &batch(vec![Op::Update(with_update(
            3,
            Some(UpdateState::RollbackStarted),
        ))]),
        4,
    )
    .unwrap();
    assert!(s.updating_services().contains(&a));
    s.apply(
        &batch(vec![Op::Delete {
            kind: ObjectKind::Service,
            id: "a".into(),
            version: None,
        }]),
        5,
    )
    .unwrap();
    assert!(s.updating_services().is_empty(), "gone with the service");
}

proptest! {
    /// Whatever sequence of writes is applied, a failed batch changes nothing and names stay
    /// unique among services.
    #[test]
    fn names_unique_and_failures_leave_no_trace(ops in proptest::collection::vec((0u8..6, 0u8..4, 0u8..3, 0u64..4), 1..40)) {
        let mut s = StoreState::default();
        for (i, (id, name, what, ver)) in ops.into_iter().enumerate() {
            let id = format!("s{id}");
            let name = format!("n{name}");
            let op = match what {
                0 => Op::Create(service(&id, &name, 0)),
                1 => Op::Update(service(&id, &name, ver)),
                _ => Op::Delete { kind: ObjectKind::Service, id: id.clone(), version: None },
            };
            let before = s.clone();
            if s.apply(&batch(vec![op]), i as u64 + 1).is_err() {
                prop_assert_eq!(&s, &before);
            }
            let mut names: Vec<_> = s.services.values().map(|v| v.spec.name.clone()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            prop_assert_eq!(names.len(), n);
        }
    }
}

fn task(id: &str) -> Object {
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
        status: TaskStatus {
            state: TaskState::Pending,
            ..Default::default()
        },
        restarts: 0,
        networks: Vec::new(),
    })
}

#[test]
fn tasks_of_one_batch_share_their_spec_also_after_a_snapshot() {
    let Object::Task(template) = task("t0") else {
        unreachable!()
    };
    let items = (0..3)
        .map(|i| TaskItem {
            id: TaskId::new(format!("t{i}")),
            slot: i + 1,
            node_id: None,
            restarts: 0,
            status: template.status.clone(),
            networks: Vec::new(),
        })
        .collect();
    let mut s = StoreState::default();
    s.apply(
        &batch(vec![Op::CreateTasks(TaskBatch { template, items })]),
        1,
    )
    .unwrap();
    let shared = |s: &StoreState| {
        let specs: Vec<_> = s.tasks.values().map(|t| t.spec.clone()).collect();
        specs.len() == 3 && specs.iter().all(|x| std::sync::Arc::ptr_eq(x, &specs[0]))
    };
    assert!(shared(&s));
    let json = serde_json::to_vec(&s).unwrap();
    let mut back: StoreState = serde_json::from_slice(&json).unwrap();
    assert!(!shared(&back), "decoding gives every task its own copy");
    back.rebuild_indexes();
    assert!(shared(&back));
    assert_eq!(back, s);
}

#[test]
fn task_ops_only_move_forward() {
    let mut s = StoreState::default();
    s.apply(&batch(vec![Op::Create(task("t"))]), 1).unwrap();
    let id = TaskId::new("t");
    let st = |state| Op::TaskStatus {
        id: id.clone(),
        status: TaskStatus {
            state,
            ..Default::default()
        },
    };
    // Assign, then running; a late "starting" report is ignored, not an error.
    let ch = s
        .apply(
            &batch(vec![Op::AssignTask {
                id: id.clone(),
                node_id: NodeId::new("n"),
            }]),
            2,
        )
        .unwrap();
    assert_eq!(ch.len(), 1);
    assert!(s
        .apply(
            &batch(vec![Op::AssignTask {
                id: id.clone(),
                node_id: NodeId::new("m")
            }]),
            3
        )
        .unwrap()
        .is_empty());
    assert_eq!(s.tasks[&id].node_id, Some(NodeId::new("n")));
    s.apply(&batch(vec![st(TaskState::Running)]), 4).unwrap();
    assert!(s
        .apply(&batch(vec![st(TaskState::Starting)]), 5)
        .unwrap()
        .is_empty());
    assert_eq!(s.tasks[&id].status.state, TaskState::Running);
    assert_eq!(s.tasks[&id].meta.version, 4);
    s.apply(
        &batch(vec![Op::TaskDesired {
            id: id.clone(),
            desired: TaskState::Shutdown,
        }]),
        6,
    )
    .unwrap();
    assert!(s
        .apply(
            &batch(vec![Op::TaskDesired {
                id: id.clone(),
                desired: TaskState::Running
            }]),
            7
        )
        .unwrap()
        .is_empty());
    assert_eq!(s.tasks[&id].desired_state, TaskState::Shutdown);
    // Unknown tasks are ignored too (the task may have been reaped).
    assert!(s
        .apply(
            &batch(vec![Op::TaskDesired {
                id: TaskId::new("gone"),
                desired: TaskState::Shutdown
            }]),
            8
        )
        .unwrap()
        .is_empty());
}

#[test]
fn preparing_notes_update_the_message_and_keep_the_time_the_state_began() {
    let mut s = StoreState::default();
    s.apply(&batch(vec![Op::Create(task("t"))]), 1).unwrap();
    let id = TaskId::new("t");
    let st = |state, message: &str, timestamp| Op::TaskStatus {
        id: id.clone(),
        status: TaskStatus {
            state,
            message: message.into(),
            timestamp,
            ..Default::default()
        },
    };
    s.apply(&batch(vec![st(TaskState::Preparing, "preparing", 100)]), 2)
        .unwrap();
    let ch = s
        .apply(
            &batch(vec![st(
                TaskState::Preparing,
                "pulling image: 1 MB of 2 MB",
                200,
            )]),
            3,
        )
        .unwrap();
    assert_eq!(ch.len(), 1);
    let t = &s.tasks[&id];
    assert_eq!(t.status.message, "pulling image: 1 MB of 2 MB");
    assert_eq!(t.status.timestamp, 100, "preparing since the state began");
    // The same note again changes nothing; the next state takes its own time.
    assert!(s
        .apply(
            &batch(vec![st(
                TaskState::Preparing,
                "pulling image: 1 MB of 2 MB",
                300
            )]),
            4
        )
        .unwrap()
        .is_empty());
    s.apply(&batch(vec![st(TaskState::Ready, "prepared", 400)]), 5)
        .unwrap();
    assert_eq!(s.tasks[&id].status.timestamp, 400);
    // A late progress note after the task moved on is ignored.
    assert!(s
        .apply(
            &batch(vec![st(
                TaskState::Preparing,
                "pulling image: 2 MB of 2 MB",
                500
            )]),
            6
        )
        .unwrap()
        .is_empty());
}

#[test]
fn a_retry_recognises_its_own_applied_write_and_nothing_else() {
    let mut s = StoreState::default();
    let create = batch(vec![Op::Create(service("a", "web", 0))]);
    s.apply(&create, 3).unwrap();
    // The retry of the create is refused, but the store holds exactly what it wrote.
    assert!(s.apply(&create, 4).is_err());
    let held = s.holds_effect_of(&create).expect("own create recognised");
    assert_eq!(held[0].meta().version, 3);
    // An update based on version 3 applied; its retry (still based on 3) is out of sequence
    // but recognised.
    let mut changed = service("a", "web", 3);
    if let Object::Service(svc) = &mut changed {
        svc.spec.labels.insert("k".into(), "v".into());
    }
    let update = batch(vec![Op::Update(changed.clone())]);
    s.apply(&update, 5).unwrap();
    assert!(s.apply(&update, 6).is_err());
    assert!(s.holds_effect_of(&update).is_some());
    // Someone else's content under the same id is not ours.
    assert!(s.holds_effect_of(&create).is_none());
    // Nor is an absent object, or an op whose effect cannot be told apart.
    assert!(s
        .holds_effect_of(&batch(vec![Op::Create(service("b", "api", 0))]))
        .is_none());
    assert!(s
        .holds_effect_of(&batch(vec![Op::Delete {
            kind: ObjectKind::Service,
            id: "zz".into(),
            version: None
        }]))
        .is_none());
}

#[test]
fn tasks_are_indexed_by_node_through_every_change() {
    let on = |s: &StoreState, n: &str| -> Vec<String> {
        s.tasks_on(&NodeId::new(n))
            .map(|t| t.id.to_string())
            .collect()
    };
    let assign = |id: &str, n: &str| Op::AssignTask {
        id: TaskId::new(id),
        node_id: NodeId::new(n),
    };
    let mut s = StoreState::default();
    s.apply(
        &batch(vec![
            Op::Create(task("a")),
            Op::Create(task("b")),
            Op::Create(task("c")),
        ]),
        1,
    )
    .unwrap();
    assert!(on(&s, "n1").is_empty(), "unassigned tasks are on no node");
    s.apply(&batch(vec![assign("b", "n1"), assign("a", "n1")]), 2)
        .unwrap();
    s.apply(&batch(vec![assign("c", "n2")]), 3).unwrap();
    assert_eq!(on(&s, "n1"), ["a", "b"], "in id order");
    assert_eq!(on(&s, "n2"), ["c"]);
    // A whole-object write that moves a task re-indexes it.
    let mut moved = Task::clone(&s.tasks["b"]);
    moved.node_id = Some(NodeId::new("n2"));
    s.apply(&batch(vec![Op::Put(Object::Task(moved))]), 4)
        .unwrap();
    assert_eq!(
        (on(&s, "n1"), on(&s, "n2")),
        (vec!["a".into()], vec!["b".to_string(), "c".into()])
    );
    // A batch that fails is undone, its assignment with it.
    s.apply(&batch(vec![Op::Create(task("d"))]), 5).unwrap();
    assert!(s
        .apply(&batch(vec![assign("d", "n1"), Op::Create(task("a"))]), 6)
        .is_err());
    assert_eq!(on(&s, "n1"), ["a"]);
    // Deleted tasks leave the index.
    s.apply(
        &batch(vec![Op::Delete {
            kind: ObjectKind::Task,
            id: "a".into(),
            version: None,
        }]),
        7,
    )
    .unwrap();
    assert!(on(&s, "n1").is_empty());
    // Rebuilt after a snapshot: the same index.
    let json = serde_json::to_vec(&s).unwrap();
    let mut back: StoreState = serde_json::from_slice(&json).unwrap();
    back.rebuild_indexes();
    assert_eq!(back, s);
    assert_eq!(on(&back, "n2"), ["b", "c"]);
}

/// The per-service counts `service ls` reads, recounted from every task.
fn recounted(s: &StoreState) -> BTreeMap<ServiceId, ServiceStatus> {
    let mut out: BTreeMap<ServiceId, ServiceStatus> = BTreeMap::new();
    for t in s.tasks.values() {
        if s.services.contains_key(&t.service_id) {
            out.entry(t.service_id.clone()).or_default().count(t);
        }
    }
    for (id, svc) in &s.services {
        let st = out.entry(id.clone()).or_default();
        if let crate::spec::ServiceMode::Replicated { replicas } = svc.spec.mode {
            st.desired_tasks = replicas;
        }
    }
    out
}

#[test]
fn service_counts_follow_every_task_change_and_survive_a_snapshot() {
    let mut s = StoreState::default();
    let svc = Service::new(
        ServiceId::new("s1"),
        crate::spec::ServiceSpec::replicated("web", "busybox", 3),
    );
    let of = |id: &str| {
        let mut t = task(id);
        if let Object::Task(t2) = &mut t {
            t2.service_id = ServiceId::new("s1");
        }
        t
    };
    let status = |id: &str, state: TaskState| Op::TaskStatus {
        id: TaskId::new(id),
        status: TaskStatus {
            state,
            ..Default::default()
        },
    };
    let check = |s: &StoreState, running: u64| {
        assert_eq!(s.service_statuses(), recounted(s));
        let st = s.service_status(&ServiceId::new("s1")).unwrap();
        assert_eq!((st.running_tasks, st.desired_tasks), (running, 3));
    };
    s.apply(&batch(vec![Op::Create(Object::Service(Box::new(svc)))]), 1)
        .unwrap();
    s.apply(&batch(vec![Op::Create(of("a")), Op::Create(of("b"))]), 2)
        .unwrap();
    check(&s, 0);
    s.apply(&batch(vec![status("a", TaskState::Running)]), 3)
        .unwrap();
    check(&s, 1);
    s.apply(&batch(vec![status("b", TaskState::Running)]), 4)
        .unwrap();
    check(&s, 2);
    // A batch that fails is undone, its status change with it.
    assert!(s
        .apply(
            &batch(vec![status("a", TaskState::Failed), Op::Create(of("b"))]),
            5
        )
        .is_err());
    check(&s, 2);
    s.apply(
        &batch(vec![Op::TaskDesired {
            id: TaskId::new("a"),
            desired: TaskState::Shutdown,
        }]),
        6,
    )
    .unwrap();
    check(&s, 1);
    let json = serde_json::to_vec(&s).unwrap();
    let mut back: StoreState = serde_json::from_slice(&json).unwrap();
    back.rebuild_indexes();
    check(&back, 1);
    s.apply(
        &batch(vec![Op::Delete {
            kind: ObjectKind::Task,
            id: "b".into(),
            version: None,
        }]),
        7,
    )
    .unwrap();
    check(&s, 0);
}
