//! The mount executor, recorded without root: for [`apply_with`] on the [`Recorder`] double,
//! which targets are created (kind, mode, owner) before their mount, the flags of every mount
//! and remount, masking and read-only paths, symlinks and copy-up ([`failures`]: where the
//! plan stops). Only the executor is under test here, never the kernel.

use super::recorder::*;
use super::*;

fn bind(
    source: &str,
    target: &str,
    kind: TargetKind,
    readonly: bool,
    flags: libc::c_ulong,
    propagation: Option<Propagation>,
    copy_up: bool,
) -> MountOp {
    MountOp::Bind {
        source: source.into(),
        target: target.into(),
        kind,
        readonly,
        flags,
        propagation,
        copy_up,
    }
}

fn tmpfs(target: &str, data: Option<&str>) -> MountOp {
    MountOp::Fs {
        fstype: "tmpfs",
        source: "tmpfs".into(),
        target: target.into(),
        flags: NOSUID | NODEV,
        data: data.map(String::from),
    }
}

#[test]
fn a_typical_plan_is_applied_in_order() {
    let s = crate::mounts::tests::spec();
    // An image with /proc, /dev and /sys, and what the proc and sysfs mounts show.
    let mut r = Recorder::new()
        .dir("/proc")
        .dir("/dev")
        .dir("/sys")
        .dir("/etc");
    for d in ["acpi", "scsi", "bus", "fs", "irq", "sys"] {
        r = r.dir(&format!("/proc/{d}"));
    }
    for f in [
        "kcore",
        "keys",
        "timer_list",
        "sched_debug",
        "sysrq-trigger",
    ] {
        r = r.file(&format!("/proc/{f}"));
    }
    r = r.dir("/sys/firmware");
    r.run(&plan(&s), None).unwrap();
    assert_eq!(r.calls[0], "open_root(/rootfs) = 3");
    let mut want: Vec<String> = vec![
        "mount(proc, </proc>, proc, nosuid|nodev|noexec, -)".into(),
        "mount(tmpfs, </dev>, tmpfs, nosuid|nodev|strictatime, mode=755,size=65536k)".into(),
    ];
    for d in DEVICES {
        want.push(format!("create(/dev/{d}, 644)"));
        want.push(format!("mount(/dev/{d}, </dev/{d}>, -, bind|rec, -)"));
        want.push(format!(
            "mount(-, </dev/{d}>, -, bind|remount|nosuid|noexec, -)"
        ));
    }
    let mask_dir =
        |p: &str| format!("mount(tmpfs, <{p}>, tmpfs, rdonly|nosuid|nodev|noexec, size=0)");
    let mask_file = |p: &str| format!("mount(/dev/null, <{p}>, -, bind, -)");
    want.extend(
        [
            "mkdir(/dev/pts, 755)",
            "mount(devpts, </dev/pts>, devpts, nosuid|noexec, \
             newinstance,ptmxmode=0666,mode=0620,gid=5)",
            "mkdir(/dev/shm, 755)",
            "mount(shm, </dev/shm>, tmpfs, nosuid|nodev|noexec, mode=1777,size=65536k)",
            "mkdir(/dev/mqueue, 755)",
            "mount(mqueue, </dev/mqueue>, mqueue, nosuid|nodev|noexec, -)",
            "mount(sysfs, </sys>, sysfs, rdonly|nosuid|nodev|noexec, -)",
            "symlink(/dev/fd -> /proc/self/fd)",
            "symlink(/dev/stdin -> /proc/self/fd/0)",
            "symlink(/dev/stdout -> /proc/self/fd/1)",
            "symlink(/dev/stderr -> /proc/self/fd/2)",
            "symlink(/dev/ptmx -> pts/ptmx)",
            "readlink(/run) = ENOENT",
            "mkdir(/run, 755)",
            "mount(tmpfs, </run>, tmpfs, nosuid|nodev, mode=1777,size=1048576)",
        ]
        .map(String::from),
    );
    want.extend([
        mask_dir("/proc/acpi"),
        mask_file("/proc/kcore"),
        mask_file("/proc/keys"),
        mask_file("/proc/timer_list"),
        mask_file("/proc/sched_debug"),
        mask_dir("/proc/scsi"),
        mask_dir("/sys/firmware"),
    ]);
    for p in READONLY_PATHS {
        want.push(format!("mount(<{p}>, <{p}>, -, bind|rec, -)"));
        want.push(format!(
            "mount(-, <{p}>, -, bind|remount|rdonly|nosuid|nodev|noexec, -)"
        ));
    }
    assert_eq!(r.effects(), want);
}

#[test]
fn a_missing_target_is_created_with_its_kind_before_the_mount() {
    let mut r = Recorder::new().dir("/etc");
    let ops = [
        bind(
            "/srv/app.conf",
            "/etc/app/app.conf",
            TargetKind::File,
            false,
            NOSUID | NODEV,
            None,
            false,
        ),
        tmpfs("/var/cache", Some("mode=755")),
        tmpfs("/etc", None),
    ];
    r.run(&ops, None).unwrap();
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            "open(/etc/app/app.conf) = ENOENT",
            "open(/, dir) = 4",
            "open(/etc) = 5",
            "open(/etc, dir) = 6",
            "open(/etc/app) = ENOENT",
            "mkdir(/etc/app, 755)",
            "open(/etc/app, dir) = 7",
            "open(/etc/app/app.conf) = ENOENT",
            "create(/etc/app/app.conf, 644)",
            "open(/etc/app/app.conf) = 8",
            "mount(/srv/app.conf, <8:/etc/app/app.conf>, -, bind|rec, -)",
            "open(/etc/app/app.conf) = 9",
            "mount(-, <9:/etc/app/app.conf>, -, bind|remount|nosuid|nodev, -)",
            "open(/var/cache) = ENOENT",
            "open(/, dir) = 10",
            "open(/var) = ENOENT",
            "mkdir(/var, 755)",
            "open(/var, dir) = 11",
            "open(/var/cache) = ENOENT",
            "mkdir(/var/cache, 755)",
            "open(/var/cache) = 12",
            "mount(tmpfs, <12:/var/cache>, tmpfs, nosuid|nodev, mode=755)",
            // Already there: nothing is made.
            "open(/etc) = 13",
            "mount(tmpfs, <13:/etc>, tmpfs, nosuid|nodev, -)",
        ]
    );
}

#[test]
fn a_bind_is_remounted_with_its_flags_then_given_its_propagation() {
    let mut r = Recorder::new().dir("/data");
    let ops = [
        bind(
            "/srv/vol",
            "/data",
            TargetKind::Dir,
            true,
            NOSUID | NODEV,
            Some(Propagation::Rslave),
            false,
        ),
        bind(
            "/srv/ro",
            "/opt",
            TargetKind::Dir,
            false,
            NOSUID | NOEXEC,
            Some(Propagation::Private),
            false,
        ),
        bind(
            "/dev/fuse",
            "/dev/fuse",
            TargetKind::File,
            false,
            NOSUID | NOEXEC,
            None,
            false,
        ),
    ];
    r.run(&ops, None).unwrap();
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            // Each step re-opens the target, which then shows the new mount.
            "open(/data) = 4",
            "mount(/srv/vol, <4:/data>, -, bind|rec, -)",
            "open(/data) = 5",
            "mount(-, <5:/data>, -, bind|remount|rdonly|nosuid|nodev, -)",
            "open(/data) = 6",
            "mount(-, <6:/data>, -, rec|slave, -)",
            "open(/opt) = ENOENT",
            "open(/, dir) = 7",
            "open(/opt) = ENOENT",
            "mkdir(/opt, 755)",
            "open(/opt) = 8",
            "mount(/srv/ro, <8:/opt>, -, bind|rec, -)",
            "open(/opt) = 9",
            "mount(-, <9:/opt>, -, bind|remount|nosuid|noexec, -)",
            "open(/opt) = 10",
            "mount(-, <10:/opt>, -, private, -)",
            // The parent is missing: a directory on the way, the file last.
            "open(/dev/fuse) = ENOENT",
            "open(/, dir) = 11",
            "open(/dev) = ENOENT",
            "mkdir(/dev, 755)",
            "open(/dev, dir) = 12",
            "open(/dev/fuse) = ENOENT",
            "create(/dev/fuse, 644)",
            "open(/dev/fuse) = 13",
            "mount(/dev/fuse, <13:/dev/fuse>, -, bind|rec, -)",
            "open(/dev/fuse) = 14",
            "mount(-, <14:/dev/fuse>, -, bind|remount|nosuid|noexec, -)",
        ]
    );
}

#[test]
fn copy_up_populates_a_volume_before_its_bind_and_only_for_directories() {
    let vol = bind(
        "/srv/vol",
        "/var/lib/db",
        TargetKind::Dir,
        false,
        NOSUID | NODEV,
        None,
        true,
    );
    let file = bind(
        "/srv/c",
        "/etc/conf",
        TargetKind::File,
        false,
        NOSUID | NODEV,
        None,
        true,
    );
    let image = || Recorder::new().dir("/var/lib/db").file("/etc/conf");
    let mut r = image();
    r.run(&[vol.clone(), file], None).unwrap();
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            "open(/var/lib/db) = 4",
            "copy_up(<4:/var/lib/db> -> /srv/vol)",
            "mount(/srv/vol, <4:/var/lib/db>, -, bind|rec, -)",
            "open(/var/lib/db) = 5",
            "mount(-, <5:/var/lib/db>, -, bind|remount|nosuid|nodev, -)",
            "open(/etc/conf) = 6",
            "mount(/srv/c, <6:/etc/conf>, -, bind|rec, -)",
            "open(/etc/conf) = 7",
            "mount(-, <7:/etc/conf>, -, bind|remount|nosuid|nodev, -)",
        ]
    );
    let mut r = image().fail("copy_up(", libc::EACCES);
    let e = r.run(&[vol], None).unwrap_err();
    assert!(matches!(e, MountError::CopyUp { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "cannot copy the image's content at /var/lib/db into /srv/vol: \
         Permission denied (os error 13)"
    );
    assert_eq!(
        r.calls.last().unwrap(),
        "copy_up(<4:/var/lib/db> -> /srv/vol) = EACCES"
    );
}

#[test]
fn masking_covers_a_dir_with_tmpfs_a_file_with_dev_null_and_skips_what_is_missing() {
    let mut r = Recorder::new()
        .dir("/proc/acpi")
        .file("/proc/kcore")
        .file("/proc/keys")
        .fail("stat(<6:/proc/keys>)", libc::EACCES);
    let ops = ["acpi", "kcore", "asound", "keys", "sched_debug"].map(|p| MountOp::Mask {
        path: format!("/proc/{p}").into(),
    });
    let err = r.run(&ops, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot prepare mount target /proc/keys inside the rootfs: Permission denied (os error 13)"
    );
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            "open(/proc/acpi) = 4",
            "stat(<4:/proc/acpi>) = dir",
            "mount(tmpfs, <4:/proc/acpi>, tmpfs, rdonly|nosuid|nodev|noexec, size=0)",
            "open(/proc/kcore) = 5",
            "stat(<5:/proc/kcore>) = file",
            "mount(/dev/null, <5:/proc/kcore>, -, bind, -)",
            // Missing: nothing to hide, nothing created.
            "open(/proc/asound) = ENOENT",
            // Present but not reachable: an error (it would stay visible), the plan stops.
            "open(/proc/keys) = 6",
            "stat(<6:/proc/keys>) = EACCES",
        ]
    );
    // An open that fails other than "missing" stops the plan too.
    let r = Recorder::new().file("/proc/sched_debug");
    unreachable_path_stops(r, "/proc/sched_debug", libc::ELOOP, |path| MountOp::Mask {
        path,
    });
}

/// `path` exists but its open fails with `errno`: the plan stops with a target error rather
/// than leave the path visible or writable.
fn unreachable_path_stops(r: Recorder, path: &str, errno: i32, op: fn(PathBuf) -> MountOp) {
    let mut r = r.fail(&format!("open({path})"), errno);
    assert!(matches!(
        r.run(&[op(path.into())], None),
        Err(MountError::Target { .. })
    ));
}

#[test]
fn read_only_paths_are_bound_onto_themselves_then_remounted() {
    let mut r = Recorder::new().dir("/proc/sys").file("/proc/sysrq-trigger");
    let ops = ["/proc/sys", "/proc/sysrq-trigger", "/proc/bus"]
        .map(|p| MountOp::ReadOnly { path: p.into() });
    r.run(&ops, None).unwrap();
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            "open(/proc/sys) = 4",
            "mount(<4:/proc/sys>, <4:/proc/sys>, -, bind|rec, -)",
            "open(/proc/sys) = 5",
            "mount(-, <5:/proc/sys>, -, bind|remount|rdonly|nosuid|nodev|noexec, -)",
            "open(/proc/sysrq-trigger) = 6",
            "mount(<6:/proc/sysrq-trigger>, <6:/proc/sysrq-trigger>, -, bind|rec, -)",
            "open(/proc/sysrq-trigger) = 7",
            "mount(-, <7:/proc/sysrq-trigger>, -, bind|remount|rdonly|nosuid|nodev|noexec, -)",
            // Missing: skipped, nothing created.
            "open(/proc/bus) = ENOENT",
        ]
    );
    // Present but not reachable: an error, not a silently writable path.
    let r = Recorder::new().dir("/proc/sys");
    unreachable_path_stops(r, "/proc/sys", libc::EACCES, |path| MountOp::ReadOnly {
        path,
    });
}

#[test]
fn a_symlink_is_made_in_its_parent_and_an_existing_entry_is_kept() {
    let link = |t: &str, l: &str| MountOp::Symlink {
        target: t.into(),
        link: l.into(),
    };
    let mut r = Recorder::new()
        .dir("/dev")
        .file("/dev/stdin")
        .fail("symlink(/dev/ptmx", libc::EPERM);
    let ops = [
        link("/proc/self/fd", "/dev/fd"),
        link("/proc/self/fd/0", "/dev/stdin"),
        link("pts/ptmx", "/dev/ptmx"),
        link("/proc/self/fd/1", "/dev/stdout"),
    ];
    let e = r.run(&ops, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot prepare mount target /dev/ptmx inside the rootfs: \
         Operation not permitted (os error 1)"
    );
    assert_eq!(
        r.calls,
        [
            "open_root(/rootfs) = 3",
            "open(/dev, dir) = 4",
            "symlink(/dev/fd -> /proc/self/fd)",
            "open(/dev, dir) = 5",
            "symlink(/dev/stdin -> /proc/self/fd/0) = EEXIST",
            "open(/dev, dir) = 6",
            "symlink(/dev/ptmx -> pts/ptmx) = EPERM",
        ]
    );
    // A missing parent is not created for a symlink.
    let mut r = Recorder::new();
    let e = r.run(&[link("x", "/nope/link")], None).unwrap_err();
    assert!(
        matches!(&e, MountError::Target { target, .. } if target == Path::new("/nope/link")),
        "{e:?}"
    );
    assert_eq!(
        r.calls,
        ["open_root(/rootfs) = 3", "open(/nope, dir) = ENOENT"]
    );
}

#[test]
fn only_what_the_executor_creates_is_given_to_the_owner() {
    let ops = [
        tmpfs("/data/a/b", None),
        bind(
            "/srv/f",
            "/data/a/f",
            TargetKind::File,
            false,
            NOSUID | NODEV,
            None,
            false,
        ),
        tmpfs("/data", None),
    ];
    let mut r = Recorder::new().dir("/data");
    r.run(&ops, Some((100000, 100001))).unwrap();
    assert_eq!(
        r.calls[..14],
        [
            "open_root(/rootfs) = 3",
            "open(/data/a/b) = ENOENT",
            "open(/, dir) = 4",
            "open(/data) = 5",
            "open(/data, dir) = 6",
            "open(/data/a) = ENOENT",
            "mkdir(/data/a, 755)",
            "chown(/data/a, 100000:100001)",
            "open(/data/a, dir) = 7",
            "open(/data/a/b) = ENOENT",
            "mkdir(/data/a/b, 755)",
            "chown(/data/a/b, 100000:100001)",
            "open(/data/a/b) = 8",
            "mount(tmpfs, <8:/data/a/b>, tmpfs, nosuid|nodev, -)",
        ]
    );
    let made: Vec<_> = r
        .effects()
        .into_iter()
        .filter(|c| !c.starts_with("mount("))
        .collect();
    assert_eq!(
        made,
        [
            "mkdir(/data/a, 755)",
            "chown(/data/a, 100000:100001)",
            "mkdir(/data/a/b, 755)",
            "chown(/data/a/b, 100000:100001)",
            "create(/data/a/f, 644)",
            "chown(/data/a/f, 100000:100001)",
        ]
    );
    // No owner: nothing chowned.
    let mut r = Recorder::new().dir("/data");
    r.run(&ops, None).unwrap();
    assert!(
        !r.calls.iter().any(|c| c.starts_with("chown(")),
        "{:?}",
        r.calls
    );
    // Made meanwhile by someone else (EEXIST): kept, not chowned.
    let mut r = Recorder::new()
        .dir("/x")
        .fail_n("open(/x)", libc::ENOENT, 2);
    r.run(&[tmpfs("/x", None)], Some((1, 1))).unwrap();
    assert_eq!(
        r.calls[1..],
        [
            "open(/x) = ENOENT",
            "open(/, dir) = 4",
            "open(/x) = ENOENT",
            "mkdir(/x, 755) = EEXIST",
            "open(/x) = 5",
            "mount(tmpfs, <5:/x>, tmpfs, nosuid|nodev, -)",
        ]
    );
    // A failed chown stops before the mount, naming the op's target.
    let mut r = Recorder::new().fail("chown(/data", libc::EPERM);
    let e = r.run(&ops, Some((1, 1))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot prepare mount target /data/a/b inside the rootfs: \
         Operation not permitted (os error 1)"
    );
    assert_eq!(r.calls.last().unwrap(), "chown(/data, 1:1) = EPERM");
}

mod failures;
