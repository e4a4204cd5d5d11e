//! `service logs` end to end on three network-namespace hosts (all managers) with real
//! containers: lines written by tasks on every host come back through the managers with
//! Docker's prefix (one task per host); `--tail` and `--no-task-ids` shape them; a host that
//! is down is named on stderr while the others' lines still come; `-f` keeps streaming through a
//! leader kill and picks up a task that starts later; an unknown service is a clear error.
//! `events` sees service and node changes and resumes across a restart of its manager
//! without missing or repeating an event.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use swarm_integration::{hosts_cluster_with, init_tracing, running, LONG};
use swarm_testkit::{bin, wait_until};
use tracing::info;

/// `(task prefix, node)` of each `web.1.<id>@node    | text` line.
fn sources(out: &str) -> BTreeSet<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (prefix, _) = l.split_once("    | ")?;
            let (task, node) = prefix.rsplit_once('@')?;
            Some((task.to_string(), node.to_string()))
        })
        .collect()
}

/// A follower's output file read so far.
fn read_file(p: &std::path::Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

#[test]
fn service_logs_come_from_every_host_and_follow_survives_a_leader_kill() {
    init_tracing();
    let (_hosts, mut c) = hosts_cluster_with(3, 3, &[]);
    let script =
        "i=0; while true; do echo \"tick $i\"; echo \"oops $i\" >&2; i=$((i+1)); sleep 0.2; done";
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "talk",
            "--replicas",
            "3",
            "--detach",
            "busybox:latest",
            "sh",
            "-c",
            script,
        ],
    )
    .unwrap();
    wait_until("3 talk tasks running, one per host", LONG, || {
        let r = running(&c, 0, "talk");
        let hosts: BTreeSet<_> = r.iter().map(|t| t.1.clone()).collect();
        (r.len() == 3 && hosts.len() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: filters, templates and --pretty through the real binaries");
    let names = c
        .ctl(
            0,
            &[
                "service",
                "ls",
                "--filter",
                "name=ta",
                "--format",
                "{{.Name}} {{.Mode}}",
            ],
        )
        .unwrap();
    assert_eq!(names.trim(), "talk replicated");
    assert!(c
        .ctl(0, &["service", "ls", "--filter", "name=zz", "-q"])
        .unwrap()
        .trim()
        .is_empty());
    let ps = c
        .ctl(
            0,
            &[
                "service",
                "ps",
                "talk",
                "--filter",
                "desired-state=running",
                "-q",
            ],
        )
        .unwrap();
    assert_eq!(ps.lines().count(), 3, "{ps}");
    let managers = c
        .ctl(0, &["node", "ls", "--filter", "role=manager", "-q"])
        .unwrap();
    assert_eq!(managers.lines().count(), 3, "{managers}");
    let e = c
        .ctl(0, &["node", "ls", "--filter", "colour=blue"])
        .unwrap_err();
    assert!(e.to_string().contains("filters on id, name, role"), "{e}");
    let pretty = c
        .ctl(0, &["service", "inspect", "--pretty", "talk"])
        .unwrap();
    assert!(
        pretty.contains("Service Mode: Replicated") && pretty.contains(" Replicas:"),
        "{pretty}"
    );
    let pretty = c.ctl(0, &["node", "inspect", "--pretty", "self"]).unwrap();
    assert!(
        pretty.contains("Manager Status:") && pretty.contains("Engine Version:"),
        "{pretty}"
    );

    info!("phase: one-shot logs from both hosts, through any manager");
    let leader = c.leader(0).expect("a leader");
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let (out, err) = wait_until("lines of both tasks", LONG, || {
        let o = c.ctl_raw(follower, &["service", "logs", "talk"]).ok()?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.success() && sources(&out).len() == 3 && sources(&err).len() == 3)
            .then_some((out, err))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let names: BTreeSet<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    for (task, node) in sources(&out) {
        assert!(task.starts_with("talk."), "task prefix {task}");
        assert!(names.contains(&node), "node {node} is one of {names:?}");
    }
    // stdout lines on stdout, stderr lines on stderr.
    assert!(out.contains("| tick 0") && !out.contains("| oops"), "{out}");
    assert!(err.contains("| oops 0"), "{err}");

    // The tail counts the lines of both streams (the last one is often a stderr line).
    let o = c
        .ctl_raw(
            follower,
            &["service", "logs", "--tail", "1", "--no-task-ids", "talk"],
        )
        .unwrap();
    assert!(o.status.success());
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.lines().count(), 3, "one line per task:\n{out}");
    for (task, _) in sources(&out) {
        assert!(
            ["talk.1", "talk.2", "talk.3"].contains(&task.as_str()),
            "no task id with --no-task-ids: {task}"
        );
    }

    info!("phase: container logs on the node that runs the task, without the managers");
    let t = swarm_integration::tasks(&c, 0, "talk")
        .into_iter()
        .find(|t| t["DesiredState"] == "Running")
        .unwrap();
    let node = c
        .nodes
        .iter()
        .position(|n| n.name == t["Node"].as_str().unwrap())
        .unwrap();
    let id = t["ID"].as_str().unwrap();
    // The task writes two lines every 0.2 s: soon there are more than four.
    let both = wait_until("four lines of the container", LONG, || {
        let o = c
            .ctl_raw(node, &["container", "logs", "--tail", "4", id])
            .ok()?;
        let both = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success() && both.lines().count() == 4).then_some(both)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert!(
        both.lines()
            .all(|l| l.starts_with("tick ") || l.starts_with("oops ")),
        "{both}"
    );
    let e = c.ctl(node, &["container", "logs", "zzzz"]).unwrap_err();
    assert!(e.to_string().contains("no container zzzz"), "{e}");

    let e = c.ctl(follower, &["service", "logs", "nope"]).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");

    info!("phase: -f through a follower keeps streaming while the leader is killed");
    let file = c.next_state_dir().with_extension("follow.out");
    let mut follow = Command::new(bin("swarmctl"))
        .arg("-H")
        .arg(c.nodes[follower].host())
        .args(["service", "logs", "-f", "--tail", "0", "talk"])
        .stdout(std::fs::File::create(&file).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("follow streams both tasks", LONG, || {
        (sources(&read_file(&file)).len() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    c.kill(leader);
    let mark = read_file(&file).len();
    let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    wait_until("a new leader", LONG, || {
        alive
            .iter()
            .find_map(|i| c.leader(*i).filter(|l| *l != leader))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    // Lines keep coming from the task on a host that is still up.
    let survivors: BTreeSet<String> = alive.iter().map(|i| c.nodes[*i].name.clone()).collect();
    wait_until("lines after the leader kill", LONG, || {
        let after = read_file(&file)[mark..].to_string();
        sources(&after)
            .iter()
            .any(|(_, n)| survivors.contains(n))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: a host that is down is named on stderr; the others' lines still come");
    let down = c.nodes[leader].name.clone();
    wait_until("a warning naming the killed host", LONG, || {
        let o = c.ctl_raw(alive[0], &["service", "logs", "talk"]).ok()?;
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success()
            && err.contains(&format!("node {down} is down or not connected"))
            && sources(&out).iter().any(|(_, n)| survivors.contains(n)))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: a task that starts later is picked up");
    let before = sources(&read_file(&file));
    c.ctl(alive[0], &["service", "scale", "talk=5", "--detach"])
        .unwrap();
    wait_until("a new task's lines in the follow stream", LONG, || {
        let now = sources(&read_file(&file));
        now.iter()
            .any(|s| {
                !before.contains(s) && (s.0.starts_with("talk.4") || s.0.starts_with("talk.5"))
            })
            .then_some(())
    })
    .unwrap_or_else(|e| {
        let _ = follow.kill();
        let mut err = String::new();
        let _ = follow.stderr.take().unwrap().read_to_string(&mut err);
        panic!("{e}\nfollow stderr: {err}\n{}", c.dump())
    });
    // No line is printed twice across the reconnect.
    let all = read_file(&file);
    let mut seen = BTreeSet::new();
    for l in all.lines() {
        assert!(seen.insert(l.to_string()), "line printed twice: {l}");
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let _ = std::fs::remove_file(&file);
}

/// An event as `events --format json` prints it: (type, action, name, state, cursor).
type Seen = (String, String, String, String, (u64, u64));

/// Events seen by a `swarmctl events --format json` child.
fn events_in(file: &std::path::Path) -> Vec<Seen> {
    read_file(file)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["Type"].as_str().unwrap_or("").to_string(),
                v["Action"].as_str().unwrap_or("").to_string(),
                v["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                v["Actor"]["Attributes"]["state"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                (
                    v["index"].as_u64().unwrap_or(0),
                    v["seq"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

#[test]
fn events_resume_across_a_manager_restart_without_missing_or_repeating() {
    init_tracing();
    let mut c = swarm_integration::managers(3, &[]);
    let file = c.next_state_dir().with_extension("events.out");
    let spawn_events = |c: &swarm_testkit::Cluster| {
        Command::new(bin("swarmctl"))
            .arg("-H")
            .arg(c.nodes[1].host())
            .args([
                "events",
                "--format",
                "json",
                "--filter",
                "type=service",
                "--filter",
                "type=node",
            ])
            .stdout(std::fs::File::create(&file).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut ev = spawn_events(&c);
    let has = |kind: &str, action: &str, name: &str| {
        events_in(&file)
            .iter()
            .any(|e| e.0 == kind && e.1 == action && e.2 == name)
    };
    // The reader is attached once it reports the first service it sees.
    wait_until("events stream a service create", LONG, || {
        let _ = c.ctl(0, &["service", "rm", "ev0"]);
        c.ctl(
            0,
            &[
                "service",
                "create",
                "--name",
                "ev0",
                "--detach",
                "busybox:latest",
            ],
        )
        .ok()?;
        has("service", "create", "ev0").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: an update and a remove are events");
    c.ctl(
        0,
        &["service", "update", "--env-add", "A=1", "--detach", "ev0"],
    )
    .unwrap();
    c.ctl(0, &["service", "rm", "ev0"]).unwrap();
    wait_until("update and remove events", LONG, || {
        (has("service", "update", "ev0") && has("service", "remove", "ev0")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: the manager the reader uses restarts; what happened meanwhile still comes");
    c.stop(1);
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "ev1",
            "--detach",
            "busybox:latest",
        ],
    )
    .unwrap();
    c.restart(1).unwrap();
    wait_until("the event written while the manager was down", LONG, || {
        has("service", "create", "ev1").then_some(())
    })
    .unwrap_or_else(|e| {
        let _ = ev.kill();
        let mut err = String::new();
        let _ = ev.stderr.take().unwrap().read_to_string(&mut err);
        panic!("{e}\nevents stderr: {err}\n{}", c.dump())
    });

    info!("phase: a node going down is an event");
    let gone = c.nodes[2].name.clone();
    c.kill(2);
    wait_until("node down event", LONG, || {
        events_in(&file)
            .iter()
            .any(|e| e.0 == "node" && e.2 == gone && e.3 == "down")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    // No event was printed twice across the reconnect.
    let all = events_in(&file);
    let cursors: BTreeSet<(u64, u64)> = all.iter().map(|e| e.4).collect();
    assert_eq!(cursors.len(), all.len(), "an event came twice: {all:?}");
    let _ = ev.kill();
    let _ = ev.wait();

    info!("phase: --since replays the history, --until ends the stream");
    let out = c
        .ctl(
            0,
            &[
                "events", "--since", "10m", "--until", "0s", "--filter", "name=ev1",
            ],
        )
        .unwrap();
    assert!(
        out.lines()
            .any(|l| l.contains(" service create ") && l.contains("name=ev1")),
        "{out}"
    );
    let e = c
        .ctl(0, &["events", "--filter", "type=volume", "--until", "0s"])
        .unwrap_err();
    assert!(e.to_string().contains("unknown event type"), "{e}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn container_logs_rotate_by_size_and_stay_readable() {
    init_tracing();
    let c = swarm_integration::managers(1, &[]);
    swarm_integration::import(&c, 0, "busybox:latest", "v1");

    info!("phase: log options Docker's json-file does not take are refused");
    for (args, want) in [
        (vec!["--log-driver", "syslog"], "is not available"),
        (vec!["--log-opt", "max-file=2"], "needs max-size"),
        (vec!["--log-opt", "compress=true"], "unknown option"),
        (vec!["--log-opt", "max-size=12"], "at least 1k"),
    ] {
        let mut a = vec!["service", "create", "--name", "bad", "--detach"];
        a.extend(args);
        a.extend(["busybox:latest", "true"]);
        let e = c.ctl(0, &a).unwrap_err();
        assert!(e.to_string().contains(want), "{a:?}: {e}");
    }

    info!("phase: a chatty task keeps at most two files of about 2 KiB");
    let script = "i=0; while true; do echo \"line $i\"; i=$((i+1)); done";
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "chatty",
            "--detach",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=2",
            "busybox:latest",
            "sh",
            "-c",
            script,
        ],
    )
    .unwrap();
    let t = wait_until("the chatty task runs", LONG, || {
        swarm_integration::tasks(&c, 0, "chatty")
            .into_iter()
            .find(|t| {
                t["CurrentState"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Running"))
            })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let id = swarm_integration::tasks(&c, 0, "chatty")
        .into_iter()
        .find(|x| x["ID"] == t["ID"])
        .unwrap();
    let short = id["ID"].as_str().unwrap().to_string();
    let dir = std::fs::read_dir(c.state_dir(0).join("containers/containers"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&short))
        })
        .expect("the task's container dir");
    let log = dir.join("container.log");
    wait_until("a rotated file", LONG, || {
        dir.join("container.log.1").exists().then_some(())
    })
    .unwrap();
    // Let it write many times the limit.
    std::thread::sleep(std::time::Duration::from_secs(2));
    for p in [log.clone(), dir.join("container.log.1")] {
        let n = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(n <= 2048, "{} is {n} bytes", p.display());
    }
    assert!(
        !dir.join("container.log.2").exists(),
        "max-file=2 keeps two files"
    );

    // The node's own reader sees the same lines (through its agent, no manager).
    let cl = c
        .ctl(
            0,
            &[
                "container",
                "logs",
                "--tail",
                "2",
                dir.file_name().unwrap().to_str().unwrap(),
            ],
        )
        .unwrap();
    assert_eq!(cl.lines().count(), 2, "{cl}");
    info!("phase: service logs reads across the rotated files, newest last");
    let o = c
        .ctl_raw(0, &["service", "logs", "--raw", "--tail", "5", "chatty"])
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && !out.is_empty(),
        "{out}\nstderr: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        c.dump()
    );
    let n: Vec<u64> = out
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert_eq!(n.len(), 5, "{out}");
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
    assert!(n[0] > 100, "the newest lines: {n:?}");
    let all = c.ctl(0, &["service", "logs", "--raw", "chatty"]).unwrap();
    let all: Vec<u64> = all
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "the kept lines are contiguous across the two files"
    );
    assert!(all[0] > 0, "the oldest lines were rotated away");
}
