//! What a container may reach beyond the default confinement (root only): `--privileged`,
//! `--device` and seccomp profiles (`unconfined`, a Docker JSON profile), each against the
//! default it relaxes.

mod common;

use std::time::Duration;

use common::Harness;
use swarm_runtime::privilege::{DeviceMapping, SeccompMode};

fn run(h: &Harness, spec: swarm_runtime::ContainerSpec) -> (i32, String) {
    let id = spec.id.clone();
    h.rt().create(spec).unwrap();
    h.rt().start(&id).unwrap();
    let st = h.rt().wait(&id, Some(Duration::from_secs(30))).unwrap();
    (st.code, h.log_text(&id))
}

/// Creating a user namespace: refused by the default profile without CAP_SYS_ADMIN, allowed
/// without a filter.
const USERNS: &str = "unshare -U true && echo USERNS-OK || echo USERNS-REFUSED";

#[test]
fn seccomp_unconfined_lifts_the_default_profile() {
    let h = Harness::new();
    let (_, out) = run(&h, h.spec("sc-default", USERNS));
    assert!(out.contains("USERNS-REFUSED"), "{out}");
    let mut s = h.spec(
        "sc-unconfined",
        &format!("{USERNS}; grep Seccomp: /proc/self/status"),
    );
    s.options.seccomp = SeccompMode::Unconfined;
    let (_, out) = run(&h, s);
    assert!(out.contains("USERNS-OK"), "{out}");
    assert!(out.contains("Seccomp:\t0"), "no filter at all: {out}");
}

#[test]
fn a_docker_json_profile_decides_what_the_workload_may_call() {
    let h = Harness::new();
    // Allow everything but mkdir/mkdirat (EACCES), and chmod with the exact mode 0777.
    let profile = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]},
            {"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}
        ]
    }"#;
    let script = "mkdir /tmp/d 2>&1; touch /tmp/f; chmod 0777 /tmp/f 2>&1 && echo CHMOD777-OK; \
                  chmod 0755 /tmp/f && echo CHMOD755-OK; grep Seccomp: /proc/self/status";
    let mut s = h.spec("sc-profile", script);
    s.options.seccomp = SeccompMode::Profile(profile.into());
    let (_, out) = run(&h, s);
    assert!(
        out.contains("Permission denied"),
        "mkdir gets EACCES: {out}"
    );
    assert!(!out.contains("CHMOD777-OK"), "{out}");
    assert!(out.contains("CHMOD755-OK"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "a filter is installed: {out}");

    // A broken profile fails the create, saying why; nothing is left behind.
    let mut s = h.spec("sc-bad", "true");
    s.options.seccomp = SeccompMode::Profile(r#"{"defaultAction":"SCMP_ACT_SOMETIMES"}"#.into());
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("unknown action"), "{e}");
    assert!(h.rt().inspect("sc-bad").is_err(), "no container left");
}

#[test]
fn a_device_is_bound_in_and_only_device_nodes_are_accepted() {
    let h = Harness::new();
    let mut s = h.spec(
        "dev-zero",
        "head -c 4 /dev/xzero | od -An -tx1; ls /dev/loop-control 2>&1; true",
    );
    s.options.devices = vec![DeviceMapping {
        host: "/dev/zero".into(),
        container: "/dev/xzero".into(),
        permissions: "rwm".into(),
    }];
    let (code, out) = run(&h, s);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("00 00 00 00"), "{out}");
    assert!(out.contains("No such file"), "only the named device: {out}");

    let mut s = h.spec("dev-file", "true");
    s.options.devices = vec![DeviceMapping {
        host: "/etc/hostname".into(),
        container: "/dev/x".into(),
        permissions: "rw".into(),
    }];
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("not a device node"), "{e}");
}

#[test]
fn privileged_gets_every_capability_host_devices_and_no_masks() {
    let h = Harness::new();
    let script = "grep -E 'CapEff|Seccomp:' /proc/self/status; \
                  grep ' /sys ' /proc/mounts; \
                  test -c /dev/loop-control && echo HOST-DEVICES; \
                  grep -c ' /proc/kcore ' /proc/mounts; \
                  mknod /dev/mynull c 1 3 && echo hello > /dev/mynull && echo MKNOD-OK";
    let mut s = h.spec("priv", script);
    s.options.privileged = true;
    let (code, out) = run(&h, s);
    assert_eq!(code, 0, "{out}");
    let want = swarm_runtime::caps::bounding_set();
    assert!(out.contains(&format!("CapEff:\t{want:016x}")), "{out}");
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(out.contains("sysfs rw,"), "/sys writable: {out}");
    if std::path::Path::new("/dev/loop-control").exists() {
        assert!(out.contains("HOST-DEVICES"), "{out}");
    }
    assert!(out.contains("\n0\n"), "/proc/kcore not masked: {out}");
    assert!(out.contains("MKNOD-OK"), "{out}");

    // The same script unprivileged: masked, read-only, no host devices, no usable mknod.
    let (_, out) = run(&h, h.spec("unpriv", script));
    assert!(out.contains("sysfs ro,"), "{out}");
    assert!(!out.contains("HOST-DEVICES"), "{out}");
    assert!(!out.contains("MKNOD-OK"), "{out}");
}

/// runc's default: the init joins a new session keyring, so a container — even one without a
/// seccomp filter, which may call keyctl — does not possess its creator's session keys;
/// `no_new_keyring` (runc's `--no-new-keyring`) keeps them.
#[test]
fn each_container_gets_a_new_session_keyring_unless_asked_not_to() {
    let h = Harness::new();
    // A session keyring of this test thread only (children inherit it), viewable by its
    // possessors alone.
    let name = format!("swarm-t41-keys-{}", std::process::id());
    let id = swarm_runtime::sys::join_session_keyring(Some(&name)).unwrap();
    swarm_runtime::sys::set_key_permissions(id, 0x3f00_0000).unwrap();
    let seen = |cid: &str, keep: bool| {
        // No filter and nothing masked: the workload can read /proc/keys.
        let mut s = h.spec(cid, &format!("grep -c {name} /proc/keys || true"));
        s.options.seccomp = SeccompMode::Unconfined;
        s.options.masked_paths = Some(vec![]);
        s.options.no_new_keyring = keep;
        let (code, out) = run(&h, s);
        assert_eq!(code, 0, "{out}");
        out.trim().to_string()
    };
    assert_eq!(seen("keys-new", false), "0", "a new keyring by default");
    assert_eq!(
        seen("keys-kept", true),
        "1",
        "--no-new-keyring keeps the caller's"
    );
}
