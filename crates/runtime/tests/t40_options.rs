//! Mounts and process knobs of a container (root only): symlink escapes of mount targets are
//! refused, bind sources must exist, empty volume directories are populated from the image,
//! and capabilities, ulimits, sysctls, groups, oom score, tty and /etc files reach the workload.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{busybox_rootfs, Harness};
use swarm_runtime::options::{EtcFiles, Rlimit};
use swarm_runtime::spec::{MountSpec, Propagation, RootfsSpec};

fn run(h: &Harness, spec: swarm_runtime::ContainerSpec) -> (i32, String) {
    let id = spec.id.clone();
    h.rt().create(spec).unwrap();
    h.rt().start(&id).unwrap();
    let st = h.rt().wait(&id, Some(Duration::from_secs(30))).unwrap();
    (st.code, h.log_text(&id))
}

#[test]
fn a_mount_target_leaving_the_rootfs_through_a_symlink_is_refused() {
    let h = Harness::new();
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host-target");
    std::fs::create_dir(&host).unwrap();
    let rootfs = tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    // Followed on the host, ../../../.. from the rootfs reaches `/`, then the host dir.
    let climb = format!(
        "{}{}",
        "../".repeat(32),
        host.display().to_string().trim_start_matches('/')
    );
    std::os::unix::fs::symlink(&climb, rootfs.join("evil")).unwrap();
    std::os::unix::fs::symlink("/srv", rootfs.join("inside")).unwrap();
    std::fs::create_dir(rootfs.join("srv")).unwrap();
    let dir_spec = |id: &str, script: &str| {
        let mut s = h.spec(id, script);
        s.rootfs = RootfsSpec::Directory {
            path: rootfs.clone(),
            readonly: false,
        };
        s
    };

    let mut s = dir_spec("escape", "true");
    s.mounts.push(MountSpec::Tmpfs {
        destination: "/evil/x".into(),
        size_bytes: None,
        mode: None,
    });
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("/evil/x is refused"), "{e}");
    assert!(
        e.contains("leads out of the container's root filesystem"),
        "{e}"
    );
    assert!(!host.join("x").exists(), "nothing created on the host");

    let src = tmp.path().join("bindsrc");
    std::fs::create_dir(&src).unwrap();
    let mut s = dir_spec("escape-bind", "true");
    s.mounts.push(MountSpec::Bind {
        source: src.clone(),
        destination: "/evil".into(),
        readonly: false,
        propagation: Propagation::Rprivate,
        copy_up: false,
    });
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("/evil is refused"), "{e}");

    // An absolute symlink is a container path: the mount lands inside, at /srv/t.
    let mut s = dir_spec("inside", "grep -c ' /srv/t tmpfs' /proc/mounts");
    s.mounts.push(MountSpec::Tmpfs {
        destination: "/inside/t".into(),
        size_bytes: None,
        mode: None,
    });
    let (code, out) = run(&h, s);
    assert_eq!((code, out.trim()), (0, "1"), "{out}");
}

#[test]
fn a_missing_bind_source_is_an_error_not_a_new_directory() {
    let h = Harness::new();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let mut s = h.spec("missing", "true");
    s.mounts.push(MountSpec::Bind {
        source: missing.clone(),
        destination: "/data".into(),
        readonly: false,
        propagation: Propagation::Rprivate,
        copy_up: false,
    });
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("does not exist on this host"), "{e}");
    assert!(!missing.exists());
}

#[test]
fn an_empty_volume_dir_is_populated_from_the_image_once() {
    let h = Harness::new();
    let tmp = tempfile::tempdir().unwrap();
    let vol = tmp.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let bind = |copy_up| MountSpec::Bind {
        source: vol.clone(),
        destination: "/etc".into(),
        readonly: false,
        propagation: Propagation::Rprivate,
        copy_up,
    };
    let mut s = h.spec("pop1", "echo changed > /etc/passwd; ls /etc");
    s.mounts.push(bind(true));
    let (code, out) = run(&h, s);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("group"), "{out}");
    assert_eq!(
        std::fs::read_to_string(vol.join("passwd")).unwrap(),
        "changed\n"
    );
    // Not empty any more: the next container sees the volume as it was left.
    let mut s = h.spec("pop2", "cat /etc/passwd");
    s.mounts.push(bind(true));
    let (_, out) = run(&h, s);
    assert_eq!(out.trim(), "changed");
    // No copy into another empty dir without copy_up.
    let vol2 = tmp.path().join("vol2");
    std::fs::create_dir(&vol2).unwrap();
    let mut s = h.spec("nocopy", "ls /etc | wc -l");
    s.mounts.push(MountSpec::Bind {
        source: vol2.clone(),
        destination: "/etc".into(),
        readonly: false,
        propagation: Propagation::Rprivate,
        copy_up: false,
    });
    let (_, out) = run(&h, s);
    assert_eq!(out.trim(), "0");
    assert_eq!(std::fs::read_dir(&vol2).unwrap().count(), 0);
}

#[test]
fn process_knobs_reach_the_workload() {
    let h = Harness::new();
    let mut s = h.spec(
        "knobs",
        "ulimit -n; ulimit -Hn; grep CapEff /proc/self/status; cat /proc/sys/kernel/shmmni; \
         id -G; cat /proc/self/oom_score_adj; cat /etc/hostname; grep -c knobs-host /etc/hosts; \
         cat /etc/resolv.conf; touch /x 2>/dev/null || echo READ-ONLY; chown 1:1 /w && echo CHOWNED",
    );
    s.hostname = Some("knobs-host".into());
    let o = &mut s.options;
    o.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 1234,
        hard: 2345,
    }];
    o.cap_drop = vec!["ALL".into()];
    o.cap_add = vec!["CHOWN".into()];
    o.sysctls = BTreeMap::from([("kernel.shmmni".to_string(), "1000".to_string())]);
    o.additional_groups = vec!["wheel".into(), "4242".into()];
    o.oom_score_adj = Some(500);
    o.etc_files = Some(EtcFiles {
        hosts: "127.0.0.1 localhost\n127.0.1.1 knobs-host\n".into(),
        hostname: "knobs-host\n".into(),
        resolv_conf: "nameserver 192.0.2.53\n".into(),
    });
    s.readonly_rootfs = true;
    s.mounts.push(MountSpec::Tmpfs {
        destination: "/w".into(),
        size_bytes: Some(1 << 20),
        mode: None,
    });
    let (code, out) = run(&h, s);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "1234", "{out}");
    assert_eq!(lines[1], "2345", "{out}");
    assert_eq!(lines[2], "CapEff:\t0000000000000001", "{out}");
    assert_eq!(lines[3], "1000", "{out}");
    let groups: Vec<&str> = lines[4].split_whitespace().collect();
    assert!(groups.contains(&"10") && groups.contains(&"4242"), "{out}");
    assert_eq!(lines[5], "500", "{out}");
    assert_eq!(lines[6], "knobs-host", "{out}");
    assert_eq!(lines[7], "1", "{out}");
    assert_eq!(lines[8], "nameserver 192.0.2.53", "{out}");
    assert!(out.contains("READ-ONLY"), "read-only rootfs: {out}");
    assert!(out.contains("CHOWNED"), "CAP_CHOWN kept: {out}");
    // The host's own value is untouched.
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    assert_ne!(host.trim(), "1000");

    // A host-wide sysctl is refused before anything runs.
    let mut s = h.spec("badsysctl", "true");
    s.options.sysctls = BTreeMap::from([("kernel.panic".to_string(), "1".to_string())]);
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("not namespaced"), "{e}");
}

#[test]
fn cap_drop_all_takes_chown_away() {
    let h = Harness::new();
    let mut s = h.spec(
        "nocaps",
        "chown 1:1 /tmp && echo CHOWNED; grep CapBnd /proc/self/status",
    );
    s.options.cap_drop = vec!["ALL".into()];
    let (_, out) = run(&h, s);
    assert!(!out.contains("CHOWNED"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
}

#[test]
fn cap_add_all_gives_every_capability_this_kernel_knows() {
    let h = Harness::new();
    let mut s = h.spec("allcaps", "grep CapEff /proc/self/status");
    s.options.cap_add = vec!["ALL".into()];
    s.options.cap_drop = vec!["CHOWN".into()];
    let (code, out) = run(&h, s);
    assert_eq!(code, 0, "{out}");
    let want = swarm_runtime::caps::bounding_set() & !1;
    assert!(out.contains(&format!("CapEff:\t{want:016x}")), "{out}");
}

#[test]
fn tty_gives_the_workload_a_terminal() {
    let h = Harness::new();
    let mut s = h.spec("tty", "tty; [ -t 0 ] && [ -t 1 ] && echo IS-A-TTY");
    s.options.tty = true;
    let (code, out) = run(&h, s);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("IS-A-TTY"), "{out}");
    let (_, out) = run(&h, h.spec("notty", "[ -t 1 ] && echo IS-A-TTY; echo done"));
    assert!(!out.contains("IS-A-TTY"), "{out}");
}
