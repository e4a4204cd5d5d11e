//! How a container ended is decided by what its init recorded, never by a clock (root only):
//! the init writes `exit.json` before it exits, so once its pidfd is readable the record is on
//! disk; an init that died without recording says so explicitly.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::Harness;
use swarm_runtime::state::EXIT_STATUS_LOST;
use swarm_runtime::{sys, ContainerStatus};

/// Blocks until the pidfd is readable (the process exited), failing after 30 s.
fn wait_pidfd(fd: &std::os::fd::OwnedFd) {
    assert!(
        sys::poll_readable(fd.as_raw_fd(), 30_000).unwrap(),
        "the init did not exit within 30 s"
    );
}

#[test]
fn exit_record_is_on_disk_the_moment_the_init_is_gone() {
    let h = Harness::new();
    tracing::info!("phase: 12 containers exit at once, with output still in the pipes");
    let ids: Vec<String> = (0..12).map(|i| format!("quick{i}")).collect();
    let mut fds = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let script = format!("seq 1 2000; echo done >&2; exit {}", i + 1);
        h.rt().create(h.spec(id, &script)).unwrap();
        let fd = h.rt().init_pidfd(id).unwrap().expect("created init runs");
        fds.push(fd);
    }
    for id in &ids {
        h.rt().start(id).unwrap();
    }
    for (i, (id, fd)) in ids.iter().zip(&fds).enumerate() {
        wait_pidfd(fd);
        // Straight from disk, no retry: the init wrote it before it exited.
        let path = h.root.join("containers").join(id).join("exit.json");
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} right after the init exited", path.display())),
        )
        .unwrap();
        assert_eq!(rec["code"], i as i64 + 1, "{id}: {rec}");
        let st = h.rt().exit_status(id).unwrap();
        assert_eq!((st.code, st.error), (i as i32 + 1, None));
        assert!(
            h.rt().init_pidfd(id).unwrap().is_none(),
            "{id} still has an init"
        );
    }
}

#[test]
fn init_killed_from_outside_reports_exit_status_lost() {
    let h = Harness::new();
    h.rt().create(h.spec("victim", "sleep 60")).unwrap();
    h.rt().start("victim").unwrap();
    let info = h.rt().inspect("victim").unwrap();
    assert_eq!(info.status, ContainerStatus::Running);
    let fd = h.rt().init_pidfd("victim").unwrap().expect("running init");
    tracing::info!("phase: SIGKILL the container's init itself, as an operator might");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(info.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_pidfd(&fd);
    let st = h.rt().exit_status("victim").unwrap();
    assert_eq!(st.code, 255, "{st:?}");
    assert_eq!(st.signal, None, "no signal is invented: {st:?}");
    assert_eq!(st.error.as_deref(), Some(EXIT_STATUS_LOST));
    tracing::info!("phase: the answer is recorded once and stays the same");
    let again = h.rt().wait("victim", Some(Duration::from_secs(1))).unwrap();
    assert_eq!(again, st);
    assert_eq!(h.rt().inspect("victim").unwrap().exit, Some(st));
}

#[test]
fn killing_a_container_records_its_exit_not_a_lost_one() {
    let h = Harness::new();
    tracing::info!("phase: SIGKILL of a running container reaches its processes, not the init");
    h.rt()
        .create(h.spec("stubborn", "trap '' TERM; sleep 60 & wait; sleep 60"))
        .unwrap();
    h.rt().start("stubborn").unwrap();
    h.rt().signal("stubborn", libc::SIGKILL).unwrap();
    let st = h
        .rt()
        .wait("stubborn", Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(
        (st.code, st.signal, st.error.as_deref()),
        (137, Some(libc::SIGKILL), None)
    );
    tracing::info!("phase: SIGTERM right after start reaches the workload (not lost)");
    h.rt().create(h.spec("prompt", "sleep 60")).unwrap();
    h.rt().start("prompt").unwrap();
    h.rt().signal("prompt", libc::SIGTERM).unwrap();
    let st = h
        .rt()
        .wait("prompt", Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(
        (st.code, st.signal, st.error.as_deref()),
        (128 + libc::SIGTERM, Some(libc::SIGTERM), None)
    );
    tracing::info!("phase: a created, never started container killed → SIGKILL recorded");
    h.rt().create(h.spec("unstarted", "true")).unwrap();
    h.rt().signal("unstarted", libc::SIGTERM).unwrap();
    let st = h.rt().exit_status("unstarted").unwrap();
    assert_eq!(
        (st.code, st.signal, st.error.as_deref()),
        (137, Some(libc::SIGKILL), None)
    );
    assert_eq!(
        h.rt().inspect("unstarted").unwrap().status,
        ContainerStatus::Stopped
    );
}
