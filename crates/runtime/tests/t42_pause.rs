//! Pause and resume through the freezer cgroup (root only): a paused container makes no
//! progress and says `paused`, resumes where it was, and is removed even while paused.

mod common;

use std::time::Duration;

use common::Harness;
use swarm_runtime::ContainerStatus;

#[test]
fn a_paused_container_stops_making_progress_until_resumed() {
    let h = Harness::new();
    let rt = h.rt();
    let s = h.spec("ticker", "while true; do echo tick; sleep 0.02; done");
    rt.create(s).unwrap();
    let e = rt.pause("ticker").unwrap_err().to_string();
    assert!(e.contains("only a running container can be paused"), "{e}");
    rt.start("ticker").unwrap();
    let ticks = || h.log_text("ticker").matches("tick").count();
    common::wait_until("ticking", Duration::from_secs(10), || ticks() >= 3);

    rt.pause("ticker").unwrap();
    assert_eq!(
        rt.inspect("ticker").unwrap().status,
        ContainerStatus::Paused
    );
    let frozen_at = ticks();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ticks(), frozen_at, "no progress while paused");
    let e = rt.pause("ticker").unwrap_err().to_string();
    assert!(e.contains("is paused"), "{e}");

    rt.resume("ticker").unwrap();
    assert_eq!(
        rt.inspect("ticker").unwrap().status,
        ContainerStatus::Running
    );
    common::wait_until("ticking again", Duration::from_secs(10), || {
        ticks() >= frozen_at + 3
    });
    let e = rt.resume("ticker").unwrap_err().to_string();
    assert!(e.contains("only a paused container can be resumed"), "{e}");

    // Removed while paused: thawed, killed, gone.
    rt.pause("ticker").unwrap();
    rt.remove("ticker", true).unwrap();
    assert!(rt.inspect("ticker").is_err());
}
