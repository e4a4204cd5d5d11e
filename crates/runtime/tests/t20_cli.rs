//! The runc-compatible CLI over an OCI bundle (root only).

mod common;

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swarm-runtime"))
}

#[test]
fn run_state_kill_delete_over_a_bundle() {
    common::require_root_and_busybox();
    let t = tempfile::tempdir().unwrap();
    let bundle = t.path().join("bundle");
    common::busybox_rootfs(&bundle.join("rootfs"));
    let cfg = |args: &str| {
        format!(
            r#"{{"ociVersion":"1.0.2","process":{{"terminal":false,"user":{{"uid":0,"gid":0}},"args":{args},"env":["PATH=/bin"],"cwd":"/"}},"root":{{"path":"rootfs","readonly":true}},"hostname":"cli","linux":{{"namespaces":[{{"type":"pid"}},{{"type":"network"}},{{"type":"mount"}}]}}}}"#
        )
    };
    let root = t.path().join("state");
    let root_s = root.to_str().unwrap();
    let parent = format!("swarm-rt-cli-{}", std::process::id());
    let b = bundle.to_str().unwrap();
    std::fs::write(bundle.join("config.json"), cfg(r#"["sh","-c","exit 42"]"#)).unwrap();
    let st = bin()
        .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
        .args(["--root", root_s, "run", "--bundle", b, "c1"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(42), "run propagates the exit code");

    std::fs::write(bundle.join("config.json"), cfg(r#"["sleep","30"]"#)).unwrap();
    let ok = |args: &[&str]| {
        let o = bin()
            .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
            .args(["--root", root_s])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    // create hands its stdio to the container (as runc does): do not capture it here.
    let st = bin()
        .env("SWARM_RUNTIME_CGROUP_PARENT", &parent)
        .args(["--root", root_s, "create", "--bundle", b, "c2"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let state: serde_json::Value = serde_json::from_str(&ok(&["state", "c2"])).unwrap();
    assert_eq!(state["status"], "created");
    assert!(state["pid"].as_i64().unwrap() > 0);
    ok(&["start", "c2"]);
    let state: serde_json::Value = serde_json::from_str(&ok(&["state", "c2"])).unwrap();
    assert_eq!(state["status"], "running");
    assert!(ok(&["list"]).contains("c2"));
    ok(&["kill", "c2", "KILL"]);
    common::wait_until("stopped", std::time::Duration::from_secs(10), || {
        let s: serde_json::Value = serde_json::from_str(&ok(&["state", "c2"])).unwrap();
        s["status"] == "stopped"
    });
    ok(&["delete", "c2"]);
    assert!(!ok(&["list"]).contains("c2"));
    if let Ok(h) = swarm_runtime::cgroup::detect() {
        let _ = swarm_runtime::cgroup::Cgroup::new(h, "", &parent).remove();
    }
}
