//! Lifecycle of real busybox containers through the library API (root only).

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, Harness};
use swarm_runtime::spec::{ProcessOverrides, Resources};
use swarm_runtime::{ContainerStatus, ExecSpec};

fn run(h: &Harness, spec: swarm_runtime::ContainerSpec) -> swarm_runtime::ExitStatus {
    let id = spec.id.clone();
    h.rt().create(spec).unwrap();
    h.rt().start(&id).unwrap();
    h.rt().wait(&id, Some(Duration::from_secs(30))).unwrap()
}

#[test]
fn exit_codes_are_reported() {
    let h = Harness::new();
    tracing::info!("phase: exit code");
    assert_eq!(run(&h, h.spec("code7", "exit 7")).code, 7);
    assert_eq!(run(&h, h.spec("code0", "true")).code, 0);
    tracing::info!("phase: killed by signal");
    let st = run(&h, h.spec("sig", "kill -USR1 $$; sleep 5"));
    assert_eq!(
        (st.code, st.signal),
        (128 + libc::SIGUSR1, Some(libc::SIGUSR1))
    );
    tracing::info!("phase: missing executable fails at create");
    let o = ProcessOverrides {
        cmd: Some(vec!["/no/such/binary".into()]),
        ..Default::default()
    };
    let e = h.rt().create(h.spec_with("nobin", o)).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    assert!(h.rt().list().unwrap().iter().all(|c| c.id != "nobin"));
}

#[test]
fn env_user_and_workdir_apply() {
    let h = Harness::new();
    let o = ProcessOverrides {
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo FOO=$FOO; id -u; id -g; id -G; pwd; hostname".into(),
        ]),
        env: vec!["FOO=bar".into()],
        workdir: Some("/srv/work".into()),
        user: Some("app".into()),
        ..Default::default()
    };
    let mut spec = h.spec_with("envuser", o);
    spec.hostname = Some("myhost".into());
    assert_eq!(run(&h, spec).code, 0);
    let out = h.log_text("envuser");
    assert_eq!(
        out, "FOO=bar\n1000\n1000\n1000 10\n/srv/work\nmyhost\n",
        "{out}"
    );
}

#[test]
fn memory_limit_oom_kill_is_seen() {
    let h = Harness::new();
    let mut spec = h.spec("oom", "a=xxxxxxxxxxxxxxxx; while true; do a=\"$a$a\"; done");
    spec.resources = Resources {
        memory_bytes: Some(32 << 20),
        ..Default::default()
    };
    let st = run(&h, spec);
    assert!(st.oom_killed, "expected an OOM kill, got {st:?}");
    assert_eq!(st.code, 137);
}

#[test]
fn pids_limit_is_enforced() {
    let h = Harness::new();
    let mut spec = h.spec(
        "pids",
        "for i in $(seq 1 40); do sleep 30 & done; echo spawned; sleep 30",
    );
    spec.resources = Resources {
        pids_max: Some(12),
        ..Default::default()
    };
    h.rt().create(spec).unwrap();
    h.rt().start("pids").unwrap();
    wait_until("fork failures in the log", Duration::from_secs(20), || {
        h.log_text("pids").contains("fork")
    });
    let st = h.rt().stats("pids").unwrap();
    assert!(st.pids <= 12, "pids {} above limit", st.pids);
    h.rt().stop("pids", Duration::from_secs(1)).unwrap();
}

#[test]
fn stop_honours_grace_period() {
    let h = Harness::new();
    tracing::info!("phase: workload exits on SIGTERM");
    h.rt()
        .create(h.spec(
            "polite",
            "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.05; done",
        ))
        .unwrap();
    h.rt().start("polite").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let st = h.rt().stop("polite", Duration::from_secs(10)).unwrap();
    assert_eq!(st.code, 0);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(h.log_text("polite").contains("got-term"));
    tracing::info!("phase: workload ignores SIGTERM, killed after grace");
    h.rt()
        .create(h.spec("stubborn", "trap '' TERM; while true; do sleep 0.05; done"))
        .unwrap();
    h.rt().start("stubborn").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let st = h
        .rt()
        .stop("stubborn", Duration::from_millis(1500))
        .unwrap();
    let took = t.elapsed();
    assert_eq!(st.code, 137, "{st:?}");
    assert_eq!(
        (st.signal, st.error),
        (Some(libc::SIGKILL), None),
        "the workload was killed, not its init"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "killed before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
}

#[test]
fn exec_runs_inside_the_container() {
    let h = Harness::new();
    let mut spec = h.spec("execd", "echo ready > /tmp/marker; sleep 60");
    spec.hostname = Some("exec-host".into());
    h.rt().create(spec).unwrap();
    h.rt().start("execd").unwrap();
    // The workload writes the marker right after start; wait for it rather than race it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probe = h
            .rt()
            .exec(
                "execd",
                ExecSpec {
                    args: vec!["sh".into(), "-c".into(), "test -e /tmp/marker".into()],
                    timeout: Some(Duration::from_secs(5)),
                    ..Default::default()
                },
            )
            .unwrap();
        if probe.code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the workload never wrote its marker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = h
        .rt()
        .exec(
            "execd",
            ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat /tmp/marker; hostname; echo err >&2; exit 5".into(),
                ],
                timeout: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(out.code, 5);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\nexec-host\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    tracing::info!("phase: exec timeout");
    let out = h
        .rt()
        .exec(
            "execd",
            ExecSpec {
                args: vec!["sleep".into(), "30".into()],
                timeout: Some(Duration::from_millis(300)),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(out.timed_out, "{out:?}");
    h.rt().stop("execd", Duration::from_secs(1)).unwrap();
}

#[test]
fn logs_are_captured_with_streams_and_follow() {
    let h = Harness::new();
    h.rt()
        .create(h.spec("logs", "echo out1; echo err1 >&2; sleep 0.3; echo out2"))
        .unwrap();
    h.rt().start("logs").unwrap();
    let follower = h.rt().follow_logs("logs", None).unwrap();
    let entries: Vec<_> = follower.collect();
    let lines: Vec<_> = entries.iter().map(|e| (e.stream, e.log.as_str())).collect();
    use swarm_runtime::logs::Stream::*;
    assert!(lines.contains(&(Stdout, "out1\n")));
    assert!(lines.contains(&(Stderr, "err1\n")));
    assert_eq!(lines.last(), Some(&(Stdout, "out2\n")));
    assert!(swarm_runtime::timefmt::parse_rfc3339(&entries[0].time).is_some());
    assert_eq!(h.rt().logs("logs", Some(1)).unwrap()[0].log, "out2\n");
}

#[test]
fn restarted_supervisor_readopts_running_container() {
    let mut h = Harness::new();
    h.rt()
        .create(h.spec("adopt", "echo before; sleep 1.5; echo after; exit 4"))
        .unwrap();
    h.rt().start("adopt").unwrap();
    wait_until("first line", Duration::from_secs(10), || {
        h.log_text("adopt").contains("before")
    });
    tracing::info!("phase: supervising Runtime dropped and recreated");
    h.restart_runtime();
    let list = h.rt().list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, ContainerStatus::Running);
    let st = h.rt().wait("adopt", Some(Duration::from_secs(20))).unwrap();
    assert_eq!(st.code, 4);
    assert_eq!(h.log_text("adopt"), "before\nafter\n");
    h.restart_runtime();
    assert_eq!(h.rt().inspect("adopt").unwrap().exit.unwrap().code, 4);
    h.rt().remove("adopt", false).unwrap();
    assert!(h.rt().list().unwrap().is_empty());
}
