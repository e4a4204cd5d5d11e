//! User namespaces (root only): a container whose spec carries id maps runs its workload, and
//! every `exec`, as the mapped host ids — unprivileged on the host — while the image's files,
//! mounted idmapped, belong to its root; what it writes lands on disk under the mapped ids.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::{wait_until, Harness};
use swarm_runtime::spec::{MountSpec, Propagation};
use swarm_runtime::userns::{IdMap, IdRange};
use swarm_runtime::ExecSpec;

const HOST: u32 = 300_000;

fn map() -> IdMap {
    let r = vec![IdRange {
        container: 0,
        host: HOST,
        size: 65_536,
    }];
    IdMap {
        uids: r.clone(),
        gids: r,
    }
}

/// `Uid:`/`Gid:` real ids of a host process.
fn host_ids(pid: i32) -> (u32, u32) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u32 {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

#[test]
fn remapped_root_is_an_unprivileged_host_uid_that_owns_the_image() {
    let h = Harness::new();
    let host_dir = tempfile::tempdir().unwrap();
    let secret = host_dir.path().join("secret");
    std::fs::write(&secret, "host-only\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let script = "cat /proc/self/uid_map; echo id=$(id -u):$(id -g); \
        stat -c owner=%u:%g /bin/busybox; stat -c root=%u:%g /; stat -c dev=%u:%g /dev; \
        touch /etc/new && echo WROTE-ETC; chown 1000:1000 /etc/new && echo CHOWNED; \
        cat /secret 2>/dev/null || echo SECRET-DENIED; stat -c data=%u:%g /data; \
        touch /data/v && echo WROTE-VOL; echo ports=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); \
        echo READY; sleep 30";
    let mut s = h.spec("uns1", script);
    s.user_namespace = Some(map());
    s.mounts.push(MountSpec::Bind {
        source: secret.clone(),
        destination: "/secret".into(),
        readonly: false,
        propagation: Propagation::Rprivate,
        copy_up: false,
    });
    // A volume as the agent makes one under a remap: an empty dir owned by the mapped root,
    // mounted at a path the image lacks (the mount point the runtime creates is the mapped
    // root's too, so populating the volume keeps that owner).
    let vol = host_dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(HOST), Some(HOST)).unwrap();
    s.mounts.push(MountSpec::Bind {
        source: vol.clone(),
        destination: "/data".into(),
        readonly: false,
        propagation: Propagation::Rprivate,
        copy_up: true,
    });
    h.rt().create(s).unwrap();
    h.rt().start("uns1").unwrap();
    wait_until("the script", Duration::from_secs(20), || {
        h.log_text("uns1").contains("READY")
    });
    let out = h.log_text("uns1");
    let map_line: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(map_line, ["0", "300000", "65536"], "{out}");
    for want in [
        "id=0:0",
        "owner=0:0",
        "root=0:0",
        "dev=0:0",
        "WROTE-ETC",
        "CHOWNED",
        "SECRET-DENIED",
        "data=0:0",
        "WROTE-VOL",
        // Its network namespace is the host user namespace's: every port is made bindable.
        "ports=0",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    // On the host, the workload (the init's child) is the mapped uid, not root.
    let init = h.rt().inspect("uns1").unwrap().pid;
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
    let workload: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(host_ids(workload), (HOST, HOST));
    // What it wrote is on disk under the mapped ids.
    let upper = h.root.join("containers/uns1/upper");
    let m = std::fs::metadata(upper.join("etc/new")).unwrap();
    assert_eq!((m.uid(), m.gid()), (HOST + 1000, HOST + 1000));
    let m = std::fs::metadata(&upper).unwrap();
    assert_eq!((m.uid(), m.gid()), (HOST, HOST));
    let m = std::fs::metadata(vol.join("v")).unwrap();
    assert_eq!((m.uid(), m.gid()), (HOST, HOST));
    // The image's own files are untouched (idmapped, not chowned).
    let layer_busybox = h.layers[0].join("bin/busybox");
    assert_eq!(std::fs::metadata(layer_busybox).unwrap().uid(), 0);
    // exec joins the same namespace.
    let o = h
        .rt()
        .exec(
            "uns1",
            ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat /proc/self/uid_map; id -u".into(),
                ],
                ..Default::default()
            },
        )
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.code, 0, "{text}");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words, ["0", "300000", "65536", "0"], "{text}");
    h.rt().remove("uns1", true).unwrap();
    assert!(!Path::new(&h.root.join("containers/uns1")).exists());
}

#[test]
fn bad_maps_and_privileged_remaps_are_refused_before_anything_runs() {
    let h = Harness::new();
    let mut s = h.spec("uns2", "true");
    s.user_namespace = Some(IdMap {
        uids: vec![],
        gids: map().gids,
    });
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("uid map: empty"), "{e}");
    let mut s = h.spec("uns3", "true");
    s.user_namespace = Some(map());
    s.options.privileged = true;
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("cannot run in a user namespace"), "{e}");
    let mut s = h.spec("uns4", "true");
    s.layers_remapped = true;
    let e = h.rt().create(s).unwrap_err().to_string();
    assert!(e.contains("layers_remapped needs a user_namespace"), "{e}");
    assert!(h.rt().list().unwrap().is_empty());
}

/// Unmounts on drop, even when the test fails.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = swarm_runtime::sys::umount2(&self.0, libc::MNT_DETACH);
    }
}

#[test]
fn idmapped_mount_support_is_probed_per_filesystem() {
    common::require_root_and_busybox();
    let t = tempfile::tempdir().unwrap();
    // The temp dir's filesystem (ext4 here) supports idmapped mounts.
    swarm_runtime::userns::check_idmapped_mounts(t.path(), &map()).unwrap();
    // An overlay mount does not: the probe says so instead of every container failing later.
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(t.path().join(d)).unwrap();
    }
    let merged = t.path().join("merged");
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        t.path().join("lower").display(),
        t.path().join("upper").display(),
        t.path().join("work").display()
    );
    swarm_runtime::sys::mount(
        Some(Path::new("overlay")),
        &merged,
        Some("overlay"),
        0,
        Some(&data),
    )
    .unwrap();
    let _m = Mounted(merged.clone());
    let e = swarm_runtime::userns::check_idmapped_mounts(&merged, &map()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
}

/// Where idmapped mounts do not work, a remapped container runs on chowned copies of its
/// layers: made once per layer and map, faithful (links, whiteouts, set-id bits, opaque
/// directories, file capabilities rewritten for the namespace's root), refused with a reason
/// for an owner the map does not cover, and collected with their layer.
#[test]
fn chowned_layer_copies_run_a_remapped_container_where_idmapped_mounts_cannot() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let h = Harness::new();
    let copies = h.store.remapped_layers(&h.layers, &map()).unwrap();
    assert_ne!(copies, h.layers);
    assert_eq!(
        std::fs::metadata(copies[0].join("bin/busybox"))
            .unwrap()
            .uid(),
        HOST
    );
    // Reused, not copied again.
    let inode = std::fs::metadata(copies[0].join("bin/busybox"))
        .unwrap()
        .ino();
    let again = h.store.remapped_layers(&h.layers, &map()).unwrap();
    assert_eq!(
        std::fs::metadata(again[0].join("bin/busybox"))
            .unwrap()
            .ino(),
        inode
    );

    let mut s = h.spec(
        "uns-copy",
        "cat /proc/self/uid_map; echo id=$(id -u); stat -c owner=%u:%g /bin/busybox; \
         touch /etc/new && echo WROTE-ETC",
    );
    s.rootfs = swarm_runtime::spec::RootfsSpec::Layers {
        lower: copies.clone(),
    };
    s.layers_remapped = true;
    s.user_namespace = Some(map());
    let id = s.id.clone();
    h.rt().create(s).unwrap();
    h.rt().start(&id).unwrap();
    let st = h.rt().wait(&id, Some(Duration::from_secs(20))).unwrap();
    let out = h.log_text(&id);
    assert_eq!(st.code, 0, "{out}");
    for want in ["0 300000 65536", "id=0", "owner=0:0", "WROTE-ETC"] {
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(want), "{want} missing from:\n{out}");
    }
    h.rt().remove(&id, true).unwrap();

    // A hand-made layer with everything a copy must keep.
    let t = tempfile::tempdir().unwrap();
    let l = t.path().join("handmade");
    std::fs::create_dir_all(l.join("opaque")).unwrap();
    swarm_runtime::sys::lsetxattr(&l.join("opaque"), "trusted.overlay.opaque", b"y").unwrap();
    std::fs::write(l.join("a"), "linked").unwrap();
    std::fs::hard_link(l.join("a"), l.join("b")).unwrap();
    std::fs::write(l.join("suid"), "x").unwrap();
    std::os::unix::fs::chown(l.join("suid"), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(l.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("a", l.join("link")).unwrap();
    let mk = |name: &str, mode: u32| {
        let p = std::ffi::CString::new(l.join(name).to_str().unwrap()).unwrap();
        nix::sys::stat::mknod(
            p.as_c_str(),
            nix::sys::stat::SFlag::from_bits_truncate(mode),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
    };
    mk("whiteout", libc::S_IFCHR);
    mk("fifo", libc::S_IFIFO);
    // cap_net_raw, effective, revision 2.
    let mut cap = 0x0200_0001u32.to_le_bytes().to_vec();
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&[0; 12]);
    std::fs::write(l.join("ping"), "x").unwrap();
    swarm_runtime::sys::lsetxattr(&l.join("ping"), "security.capability", &cap).unwrap();
    let c = h
        .store
        .remapped_layers(std::slice::from_ref(&l), &map())
        .unwrap()
        .remove(0);
    let md = |n: &str| std::fs::symlink_metadata(c.join(n)).unwrap();
    assert_eq!(md("a").ino(), md("b").ino(), "hard links stay links");
    assert_eq!(
        (md("suid").uid(), md("suid").mode() & 0o7777),
        (HOST + 1000, 0o4755)
    );
    assert!(md("link").file_type().is_symlink() && md("link").uid() == HOST);
    assert!(md("whiteout").file_type().is_char_device() && md("whiteout").rdev() == 0);
    assert!(md("fifo").file_type().is_fifo());
    assert_eq!(
        swarm_runtime::sys::lgetxattr(&c.join("opaque"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    let shifted = swarm_runtime::sys::lgetxattr(&c.join("ping"), "security.capability")
        .unwrap()
        .unwrap();
    assert_eq!(&shifted[0..4], &0x0300_0001u32.to_le_bytes());
    assert_eq!(&shifted[20..24], &HOST.to_le_bytes());
    // An owner the map does not cover.
    let bad = t.path().join("unmapped");
    std::fs::create_dir(&bad).unwrap();
    std::os::unix::fs::chown(&bad, Some(70_000), Some(0)).unwrap();
    let e = h
        .store
        .remapped_layers(std::slice::from_ref(&bad), &map())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("owned by uid 70000, which the user namespace does not map"),
        "{e}"
    );
    // GC: the hand-made layer is no layer of the store, so its copy goes; the image's stay.
    h.store.gc(&Default::default()).unwrap();
    assert!(!c.exists());
    assert!(copies[0].join("bin/busybox").exists());
}
