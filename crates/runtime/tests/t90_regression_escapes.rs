//! Escape regressions: each is a way out of the container that must stay closed (root only).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Harness;
use swarm_runtime::spec::ProcessOverrides;
use swarm_runtime::ExecSpec;

fn output(h: &Harness, id: &str, script: &str) -> (i32, String) {
    h.rt().create(h.spec(id, script)).unwrap();
    h.rt().start(id).unwrap();
    let st = h.rt().wait(id, Some(Duration::from_secs(30))).unwrap();
    (st.code, h.log_text(id))
}

#[test]
fn proc_sys_and_sysrq_trigger_are_read_only() {
    let h = Harness::new();
    let (_, out) = output(
        &h,
        "procsys",
        "echo x > /proc/sysrq-trigger && echo WROTE-SYSRQ; \
         echo 1 > /proc/sys/kernel/ns_last_pid && echo WROTE-SYS; \
         cat /proc/kcore | head -c 1 | wc -c; echo done",
    );
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // stdout and stderr lines may interleave in the log: look for the lines, not their order.
    assert!(
        out.lines().any(|l| l.trim() == "0"),
        "/proc/kcore gave bytes: {out}"
    );
    assert!(out.lines().any(|l| l.trim() == "done"), "{out}");
}

#[test]
fn status_shows_nnp_seccomp_and_default_caps_only() {
    let h = Harness::new();
    let (code, out) = output(
        &h,
        "status",
        "grep -E '^(NoNewPrivs|Seccomp|Cap[A-Za-z]+):' /proc/self/status",
    );
    assert_eq!(code, 0);
    let get = |k: &str| {
        out.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{k}:"))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{k} missing in {out}"))
    };
    assert_eq!(get("NoNewPrivs"), "1");
    assert_eq!(get("Seccomp"), "2");
    let default = format!("{:016x}", swarm_runtime::caps::default_mask());
    for k in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(get(k), default, "{k}");
    }
    assert_eq!(get("CapInh"), "0000000000000000");
    assert_eq!(get("CapAmb"), "0000000000000000");
    // Non-root: nothing effective, bounding still the default set.
    let o = ProcessOverrides {
        cmd: Some(vec![
            "grep".into(),
            "-E".into(),
            "^Cap(Eff|Bnd)".into(),
            "/proc/self/status".into(),
        ]),
        user: Some("app".into()),
        ..Default::default()
    };
    h.rt().create(h.spec_with("status-app", o)).unwrap();
    h.rt().start("status-app").unwrap();
    h.rt()
        .wait("status-app", Some(Duration::from_secs(10)))
        .unwrap();
    let out = h.log_text("status-app");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains(&format!("CapBnd:\t{default}")), "{out}");
}

#[test]
fn seccomp_denies_dangerous_syscalls() {
    let h = Harness::new();
    // busybox `mount` and `unshare` would need them; the error must be EPERM, not success.
    let (_, out) = output(
        &h,
        "seccomp",
        "mkdir -p /m; busybox mount -t tmpfs none /m && echo MOUNTED; echo end",
    );
    assert!(!out.contains("MOUNTED"), "{out}");
}

#[test]
fn no_host_fd_is_visible() {
    let h = Harness::new();
    let (code, out) = output(&h, "fds", "ls /proc/self/fd");
    assert_eq!(code, 0);
    // 0-2 are stdio; 3 is the directory fd `ls` itself opened to read /proc/self/fd.
    let fds: BTreeSet<&str> = out.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"].into_iter().collect(), "{out}");
}

#[test]
fn proc_self_fd_workdir_is_refused() {
    let h = Harness::new();
    for n in ["3", "4", "7"] {
        let o = ProcessOverrides {
            cmd: Some(vec!["pwd".into()]),
            workdir: Some(format!("/proc/self/fd/{n}")),
            ..Default::default()
        };
        let mut spec = h.spec_with(
            "unused",
            ProcessOverrides {
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        );
        // Bypass the merge-time check to exercise the runtime's own validation.
        spec.process.cwd = o.workdir.clone().unwrap();
        let e = h.rt().create(spec).unwrap_err();
        assert!(e.to_string().contains("/proc"), "{e}");
        assert!(swarm_runtime::spec::resolve_process(&h.image, &o).is_err());
    }
    // The same through exec.
    h.rt().create(h.spec("wd", "sleep 30")).unwrap();
    h.rt().start("wd").unwrap();
    let out = h
        .rt()
        .exec(
            "wd",
            ExecSpec {
                args: vec!["pwd".into()],
                cwd: Some("/proc/self/fd/3".into()),
                timeout: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_ne!(out.code, 0);
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    h.rt().stop("wd", Duration::from_secs(1)).unwrap();
}

#[test]
fn crafted_layer_tarballs_leave_sentinel_untouched() {
    let h = Harness::new();
    let t = tempfile::tempdir().unwrap();
    let sentinel = t.path().join("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep"), "original").unwrap();
    let abs = format!("{}/pwned", sentinel.display());
    let rel_up =
        "../../../../../../../../../../../..".to_string() + &sentinel.display().to_string();
    type Entry = (String, tar::EntryType, Option<String>);
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        (
            "dotdot",
            vec![(format!("{rel_up}/pwned"), tar::EntryType::Regular, None)],
        ),
        (
            "absolute",
            vec![(abs.clone(), tar::EntryType::Regular, None)],
        ),
        (
            "symlink-then-file",
            vec![
                (
                    "evil".into(),
                    tar::EntryType::Symlink,
                    Some(sentinel.display().to_string()),
                ),
                ("evil/pwned".into(), tar::EntryType::Regular, None),
            ],
        ),
        (
            "relative-symlink-then-file",
            vec![
                ("evil".into(), tar::EntryType::Symlink, Some(rel_up.clone())),
                ("evil/pwned".into(), tar::EntryType::Regular, None),
            ],
        ),
        (
            "hardlink",
            vec![(
                "h".into(),
                tar::EntryType::Link,
                Some(format!("{rel_up}/keep")),
            )],
        ),
    ];
    for (name, entries) in cases {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in &entries {
            let mut hd = tar::Header::new_gnu();
            let gnu = hd.as_gnu_mut().unwrap();
            gnu.name[..path.len()].copy_from_slice(path.as_bytes());
            hd.set_entry_type(*kind);
            hd.set_mode(0o644);
            let data: &[u8] = if *kind == tar::EntryType::Regular {
                b"pwned"
            } else {
                b""
            };
            hd.set_size(data.len() as u64);
            if let Some(l) = link {
                hd.set_link_name_literal(l).unwrap();
            }
            hd.set_cksum();
            b.append(&hd, data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let tag = format!("evil-{name}");
        h.store
            .import_rootfs_tar(&tar[..], &tag, Default::default())
            .unwrap();
        let e = h.store.prepare(&tag).unwrap_err();
        let names: Vec<_> = std::fs::read_dir(&sentinel)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["keep"], "{name}: sentinel changed ({e})");
        assert_eq!(
            std::fs::read_to_string(sentinel.join("keep")).unwrap(),
            "original"
        );
        assert!(!e.to_string().is_empty());
    }
}
