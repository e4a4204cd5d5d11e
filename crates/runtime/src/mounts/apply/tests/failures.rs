//! Where the mount executor stops: a target resolving out of the root, a confined path
//! leading out through a symlink, and every failing step, each with the [`MountError`] that
//! names it and nothing run after it. Recorded on the double; no kernel call is made.

use super::*;

#[test]
fn a_target_resolving_out_of_the_root_stops_the_plan_with_its_path() {
    let mut r = Recorder::new()
        .dir("/run")
        .link("/data", "../../../etc")
        .fail("open(/data)", libc::EXDEV);
    let ops = [
        tmpfs("/run", None),
        bind(
            "/srv/data",
            "/data",
            TargetKind::Dir,
            false,
            NOSUID | NODEV,
            None,
            false,
        ),
        tmpfs("/tmp", None),
    ];
    let e = r.run(&ops, None).unwrap_err();
    assert!(
        matches!(&e, MountError::Target { target, source }
            if target == Path::new("/data") && source.raw_os_error() == Some(libc::EXDEV)),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "cannot prepare mount target /data inside the rootfs: \
         Invalid cross-device link (os error 18)"
    );
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            "open(/run) = 4",
            "mount(tmpfs, <4:/run>, tmpfs, nosuid|nodev, -)",
            "open(/data) = EXDEV",
            "open(/, dir) = 5",
            "open(/data) = EXDEV",
            // The symlink is there: nothing is made over it, and nothing mounted.
            "mkdir(/data, 755) = EEXIST",
            "open(/data) = EXDEV",
        ]
    );
}

#[test]
fn a_confined_target_leading_out_of_the_root_is_refused_before_its_mount() {
    let mut r = Recorder::new()
        .dir("/var")
        .dir("/run")
        .link("/var/run", "/run")
        .link("/evil", "../../../etc");
    let ops = [
        MountOp::Confine {
            path: "/var/run/x.sock".into(),
        },
        MountOp::Confine {
            path: "/evil/passwd".into(),
        },
        tmpfs("/evil/passwd", None),
    ];
    let e = r.run(&ops, None).unwrap_err();
    assert!(
        matches!(&e, MountError::Escape { target, .. } if target == Path::new("/evil/passwd")),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "mount target /evil/passwd is refused: the symlink /evil -> ../../../etc leads out \
         of the container's root filesystem"
    );
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            "open(/, dir) = 4",
            "readlink(/var) = EINVAL",
            "open(/var, dir) = 5",
            "readlink(/var/run) = /run",
            "open(/, dir) = 6",
            "readlink(/run) = EINVAL",
            "open(/run, dir) = 7",
            "readlink(/run/x.sock) = ENOENT",
            "open(/, dir) = 8",
            "readlink(/evil) = ../../../etc",
        ]
    );
}

#[test]
fn each_failing_step_names_itself_and_stops_the_plan() {
    let ops = [
        MountOp::Fs {
            fstype: "proc",
            source: "proc".into(),
            target: "/proc".into(),
            flags: NOSUID | NODEV | NOEXEC,
            data: None,
        },
        bind(
            "/srv/v",
            "/data",
            TargetKind::Dir,
            true,
            NOSUID | NODEV,
            Some(Propagation::Rslave),
            true,
        ),
        MountOp::Symlink {
            target: "/proc/self/fd".into(),
            link: "/dev/fd".into(),
        },
        MountOp::Mask {
            path: "/proc/acpi".into(),
        },
        MountOp::Mask {
            path: "/proc/kcore".into(),
        },
        MountOp::ReadOnly {
            path: "/proc/sys".into(),
        },
        tmpfs("/last", None),
    ];
    let ctx = |what: &str, at: &str| format!("mount {what} on {at}: Operation not permitted");
    let target = |at: &str| format!("cannot prepare mount target {at} inside the rootfs");
    let cases = [
        ("open_root(", target("/rootfs")),
        ("mount(proc,", ctx("proc", "/proc")),
        (
            "copy_up(",
            "cannot copy the image's content at /data into /srv/v".into(),
        ),
        ("mount(/srv/v,", ctx("bind", "/data")),
        (
            "bind|remount|rdonly|nosuid|nodev, -)",
            ctx("bind remount", "/data"),
        ),
        ("rec|slave", ctx("bind propagation", "/data")),
        ("symlink(", target("/dev/fd")),
        ("size=0)", ctx("mask tmpfs", "/proc/acpi")),
        ("mount(/dev/null,", ctx("mask", "/proc/kcore")),
        ("mount(<", ctx("readonly bind", "/proc/sys")),
        (
            "|rdonly|nosuid|nodev|noexec, -)",
            ctx("readonly remount", "/proc/sys"),
        ),
        ("mkdir(/last", target("/last")),
    ];
    for (pattern, want) in cases {
        let mut r = Recorder::new()
            .dir("/proc")
            .dir("/data")
            .dir("/dev")
            .dir("/proc/acpi")
            .file("/proc/kcore")
            .dir("/proc/sys")
            .fail(pattern, libc::EPERM);
        let e = r.run(&ops, None).unwrap_err();
        assert!(e.to_string().starts_with(&want), "{pattern}: {e}");
        let last = r.calls.last().unwrap();
        assert!(
            last.contains(pattern) && last.ends_with(" = EPERM"),
            "{pattern}: stopped at {last}"
        );
        let fails = r.calls.iter().filter(|c| c.ends_with(" = EPERM")).count();
        assert_eq!(fails, 1, "{pattern}: {:?}", r.calls);
    }
    // Without a failure the same plan runs to its end.
    let mut r = Recorder::new()
        .dir("/proc")
        .dir("/data")
        .dir("/dev")
        .dir("/proc/acpi")
        .file("/proc/kcore")
        .dir("/proc/sys");
    r.run(&ops, None).unwrap();
    assert_eq!(
        r.calls.last().unwrap(),
        "mount(tmpfs, <14:/last>, tmpfs, nosuid|nodev, -)"
    );
}
