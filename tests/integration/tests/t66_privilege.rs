//! What a service may reach beyond the default confinement, end to end over real binaries
//! (one manager on loopback running real busybox containers):
//!
//! - `--device` binds a host device in; `--security-opt seccomp=FILE` (Docker's JSON format)
//!   decides what the workload may call; both are shown by `service inspect --pretty`;
//! - `service update --privileged --security-opt seccomp=unconfined` gives every capability,
//!   the host's devices, a writable /sys and no filter;
//! - a device that does not exist on the node rejects the task; a broken profile file or
//!   contradictory flags are refused before anything is written.

use std::path::PathBuf;
use swarm_integration::{import, init_tracing, managers, tasks, LONG};
use swarm_testkit::wait_until;
use tracing::info;

/// A host directory for the test, removed when it ends (even on failure).
struct HostDir(PathBuf);

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (No single quotes: `service update --args` splits it like a shell.)
const SCRIPT: &str = "mkdir /tmp/d 2>&1; head -c 2 /dev/xzero | od -An -tx1; \
    unshare -U true && echo USERNS-OK || echo USERNS-REFUSED; \
    test -c /dev/loop-control && echo HOST-DEVICES; grep \" /sys \" /proc/mounts; \
    grep -E \"CapEff|Seccomp:\" /proc/self/status; echo DONE";

#[test]
fn devices_seccomp_profiles_and_privileged_do_what_they_say() {
    init_tracing();
    let c = managers(1, &[]);
    import(&c, 0, "busybox:latest", "v1");
    let host = HostDir(std::env::temp_dir().join(format!("swarm-t66-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&host.0);
    std::fs::create_dir_all(&host.0).unwrap();
    let out = host.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let profile = host.0.join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "EACCES"}
  ]
}"#,
    )
    .unwrap();
    let report = |file: &str| {
        wait_until(&format!("the report {file}"), LONG, || {
            std::fs::read_to_string(out.join(file))
                .ok()
                .filter(|s| s.contains("DONE"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "sec")))
    };

    info!("phase: a device and a Docker seccomp profile");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "sec",
            "--device",
            "/dev/zero:/dev/xzero",
            "--security-opt",
            &format!("seccomp={}", profile.display()),
            "--mount",
            &format!("type=bind,source={},target=/out", out.display()),
            "busybox",
            "sh",
            "-c",
            &format!("({SCRIPT}) > /out/r1 2>&1; exec sleep 100000"),
        ],
    )
    .unwrap();
    let r = report("r1");
    info!("report:\n{r}");
    assert!(
        r.contains("Permission denied"),
        "mkdir refused by the profile:\n{r}"
    );
    assert!(r.contains("00 00"), "the device reads:\n{r}");
    assert!(
        r.contains("USERNS-OK"),
        "the profile allows what it does not name:\n{r}"
    );
    assert!(!r.contains("HOST-DEVICES"), "{r}");
    assert!(r.contains("sysfs ro,"), "{r}");
    assert!(r.contains("Seccomp:\t2"), "{r}");
    let pretty = || {
        let p = c
            .ctl(0, &["service", "inspect", "--pretty", "sec"])
            .unwrap();
        p.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let p = pretty();
    assert!(p.contains("Device: /dev/zero:/dev/xzero:rwm"), "{p}");
    assert!(p.contains("Seccomp: custom profile"), "{p}");

    info!("phase: privileged and unconfined");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "--privileged",
            "--security-opt",
            "seccomp=unconfined",
            "--args",
            &format!("sh -c '({SCRIPT}) > /out/r2 2>&1; exec sleep 100000'"),
            "sec",
        ],
    )
    .unwrap();
    let r = report("r2");
    info!("report:\n{r}");
    assert!(!r.contains("Permission denied"), "{r}");
    assert!(r.contains("USERNS-OK") && r.contains("00 00"), "{r}");
    if std::path::Path::new("/dev/loop-control").exists() {
        assert!(r.contains("HOST-DEVICES"), "{r}");
    }
    assert!(r.contains("sysfs rw,") && r.contains("Seccomp:\t0"), "{r}");
    // Every capability the daemon holds (this test's bounding set: a sandbox may withhold some).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert!(r.contains(&format!("CapEff:\t{all:016x}")), "{r}");
    let p = pretty();
    assert!(
        p.contains("Privileged: true") && p.contains("Seccomp: unconfined"),
        "{p}"
    );

    info!("phase: a device the node does not have rejects the task");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "nodev",
            "--device",
            "/dev/no-such-device",
            "busybox",
            "sleep",
            "100000",
        ],
    )
    .unwrap();
    let err = wait_until("the task is rejected", LONG, || {
        tasks(&c, 0, "nodev")
            .into_iter()
            .filter_map(|t| t["Error"].as_str().map(str::to_string))
            .find(|e| !e.is_empty())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", tasks(&c, 0, "nodev")));
    assert!(err.contains("/dev/no-such-device"), "{err}");

    info!("phase: bad input is refused before anything is written");
    let broken = host.0.join("broken.json");
    std::fs::write(&broken, r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#).unwrap();
    let broken_opt = format!("seccomp={}", broken.display());
    for (args, want) in [
        (vec!["--security-opt", broken_opt.as_str()], "seccomp agent"),
        (vec!["--security-opt", "apparmor=x"], "AppArmor"),
        (vec!["--privileged", "--cap-drop", "NET_RAW"], "--cap-drop"),
        (vec!["--device", "/dev/zero:/dev/z:r"], "r and w"),
    ] {
        let mut a = vec!["service", "create", "--name", "refused"];
        a.extend(args.iter().copied());
        a.push("busybox");
        let o = c.ctl_raw(0, &a).unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let ls = c.ctl(0, &["service", "ls", "-q"]).unwrap();
    assert_eq!(ls.lines().count(), 2, "only sec and nodev: {ls}");
}
