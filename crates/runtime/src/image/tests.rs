//! Unit tests of the image store and of safe layer extraction (run as root for ownership and
//! whiteout device nodes; they use only temp dirs).

use super::*;
use crate::sys;
use std::io::Cursor;

fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        // Write the raw name so that hostile paths are not rewritten by the tar crate.
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn sentinel() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("sentinel");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep"), b"original").unwrap();
    (t, root, outside)
}

fn assert_untouched(outside: &Path) {
    let names: Vec<_> = fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("keep")],
        "sentinel dir changed"
    );
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"original");
}

#[test]
fn escape_parent_dir_entry_is_refused() {
    let (_t, root, outside) = sentinel();
    let tar = tar_with(&[("../sentinel/pwned", tar::EntryType::Regular, b"x", None)]);
    let e = unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap_err();
    assert!(matches!(e, UnpackError::ParentComponent { .. }), "{e}");
    assert_untouched(&outside);
}

#[test]
fn escape_absolute_entry_is_refused() {
    let (_t, root, outside) = sentinel();
    let abs = format!("{}/pwned", outside.display());
    let tar = tar_with(&[(&abs, tar::EntryType::Regular, b"x", None)]);
    let e = unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap_err();
    assert!(matches!(e, UnpackError::AbsolutePath { .. }), "{e}");
    assert_untouched(&outside);
}

#[test]
fn escape_symlink_then_file_is_refused() {
    for target in ["../sentinel", "/"] {
        let (_t, root, outside) = sentinel();
        let abs_target = outside.display().to_string();
        let target = if target == "/" {
            abs_target.as_str()
        } else {
            target
        };
        let tar = tar_with(&[
            ("evil", tar::EntryType::Symlink, b"", Some(target)),
            ("evil/pwned", tar::EntryType::Regular, b"x", None),
        ]);
        let e = unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap_err();
        assert!(matches!(e, UnpackError::SymlinkEscape { .. }), "{e}");
        assert_untouched(&outside);
    }
}

#[test]
fn symlink_at_final_component_is_replaced_not_followed() {
    let (_t, root, outside) = sentinel();
    let tar = tar_with(&[
        (
            "keep",
            tar::EntryType::Symlink,
            b"",
            Some("../sentinel/keep"),
        ),
        ("keep", tar::EntryType::Regular, b"inside", None),
    ]);
    unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap();
    assert_eq!(fs::read(root.join("keep")).unwrap(), b"inside");
    assert_untouched(&outside);
}

#[test]
fn escape_hardlink_is_refused() {
    let (_t, root, outside) = sentinel();
    for link in ["../sentinel/keep", "/etc/passwd"] {
        let tar = tar_with(&[("h", tar::EntryType::Link, b"", Some(link))]);
        let e = unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap_err();
        assert!(matches!(e, UnpackError::HardlinkEscape { .. }), "{e}");
    }
    // Through a symlinked directory.
    let tar = tar_with(&[
        ("d", tar::EntryType::Symlink, b"", Some("../sentinel")),
        ("h", tar::EntryType::Link, b"", Some("d/keep")),
    ]);
    let e = unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap_err();
    assert!(matches!(e, UnpackError::HardlinkEscape { .. }), "{e}");
    assert_untouched(&outside);
}

#[test]
fn device_nodes_need_privilege() {
    let (_t, root, _o) = sentinel();
    let tar = tar_with(&[("dev/sda", tar::EntryType::Block, b"", None)]);
    let e = unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap_err();
    assert!(matches!(e, UnpackError::DeviceNode { .. }), "{e}");
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let (_t, root, _o) = sentinel();
    let tar = tar_with(&[
        ("etc/", tar::EntryType::Directory, b"", None),
        ("etc/.wh.passwd", tar::EntryType::Regular, b"", None),
        ("opt/", tar::EntryType::Directory, b"", None),
        ("opt/.wh..wh..opq", tar::EntryType::Regular, b"", None),
        (
            "etc/hosts",
            tar::EntryType::Regular,
            b"127.0.0.1 localhost\n",
            None,
        ),
        ("etc/hosts2", tar::EntryType::Link, b"", Some("etc/hosts")),
    ]);
    let st = unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap();
    assert_eq!(st.whiteouts, 2);
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    let mut buf = [0u8; 4];
    let c = sys::cstr(&root.join("opt")).unwrap();
    let n = std::ffi::CString::new("trusted.overlay.opaque").unwrap();
    // SAFETY: valid strings and buffer.
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(r, 1);
    assert_eq!(buf[0], b'y');
    let a = fs::metadata(root.join("etc/hosts")).unwrap();
    let b = fs::metadata(root.join("etc/hosts2")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

fn rootfs_tar() -> Vec<u8> {
    tar_with(&[
        ("bin/", tar::EntryType::Directory, b"", None),
        (
            "bin/hello",
            tar::EntryType::Regular,
            b"#!/bin/sh\necho hi\n",
            None,
        ),
        ("etc/", tar::EntryType::Directory, b"", None),
        (
            "etc/passwd",
            tar::EntryType::Regular,
            b"root:x:0:0:root:/root:/bin/sh\n",
            None,
        ),
    ])
}

#[test]
fn import_prepare_and_share_layers() {
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(t.path()).unwrap();
    let cfg = ImageConfig {
        cmd: Some(vec!["/bin/hello".into()]),
        working_dir: Some("/etc".into()),
        ..Default::default()
    };
    let md = s
        .import_rootfs_tar(Cursor::new(rootfs_tar()), "hello", cfg.clone())
        .unwrap();
    assert_eq!(s.resolve("hello:latest").unwrap(), md);
    let c = s.config("hello").unwrap();
    assert_eq!(c.cmd, cfg.cmd);
    assert!(c.env[0].starts_with("PATH="));
    let p1 = s.prepare("hello").unwrap();
    let p2 = s.prepare("hello").unwrap();
    assert_eq!(p1.layers, p2.layers, "layers are unpacked once and shared");
    assert!(p1.layers[0].join("bin/hello").is_file());
    // Second name, same content: same layer dir.
    s.import_rootfs_tar(Cursor::new(rootfs_tar()), "other:1", ImageConfig::default())
        .unwrap();
    assert_eq!(s.prepare("other:1").unwrap().layers, p1.layers);
}

#[test]
fn corrupt_blob_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(t.path()).unwrap();
    let md = s
        .import_rootfs_tar(Cursor::new(rootfs_tar()), "hello", ImageConfig::default())
        .unwrap();
    let m = s.manifest(&md).unwrap();
    let layer = s.blob_path(&m.layers[0].digest);
    let mut bytes = fs::read(&layer).unwrap();
    bytes[600] ^= 0xff;
    fs::write(&layer, &bytes).unwrap();
    let e = s.prepare("hello").unwrap_err();
    assert!(e.to_string().contains("verification"), "{e}");
    assert!(fs::read_dir(t.path().join("layers"))
        .unwrap()
        .next()
        .is_none());
    // Wrong expected digest on write.
    let wrong = Digest::of(b"something else");
    assert!(matches!(
        s.put_blob_reader(&b"data"[..], Some((&wrong, None))),
        Err(ImageError::DigestMismatch { .. })
    ));
    let right = Digest::of(b"data");
    assert!(matches!(
        s.put_blob_reader(&b"data"[..], Some((&right, Some(99)))),
        Err(ImageError::DigestMismatch { .. })
    ));
    // Tampered config is caught on read.
    let cfgp = s.blob_path(&m.config.digest);
    fs::write(&cfgp, b"{}").unwrap();
    assert!(matches!(
        s.config("hello"),
        Err(ImageError::DigestMismatch { .. })
    ));
}

#[test]
fn export_import_round_trip_and_gc() {
    let t = tempfile::tempdir().unwrap();
    let a = ImageStore::open(t.path().join("a")).unwrap();
    let md = a
        .import_rootfs_tar(
            Cursor::new(rootfs_tar()),
            "hello:v1",
            ImageConfig::default(),
        )
        .unwrap();
    let mut archive = Vec::new();
    a.export_archive(&["hello:v1"], &mut archive).unwrap();
    let b = ImageStore::open(t.path().join("b")).unwrap();
    // The export carries manifest.json (docker load) and an OCI layout.
    assert_eq!(
        b.import_archive(Cursor::new(&archive), None).unwrap(),
        vec!["hello:v1"]
    );
    let dir = t.path().join("oci");
    a.export_dir(&["hello:v1"], &dir).unwrap();
    fs::remove_file(dir.join("manifest.json")).unwrap();
    let c = ImageStore::open(t.path().join("c")).unwrap();
    assert_eq!(
        c.import_dir(&dir, Some("renamed")).unwrap(),
        vec!["renamed:latest"]
    );
    assert_eq!(c.resolve("renamed").unwrap(), md);
    assert!(c.prepare("renamed").unwrap().layers[0]
        .join("bin/hello")
        .is_file());

    // GC keeps what is tagged, removes the rest.
    let before = c.prepare("renamed").unwrap();
    assert_eq!(c.gc(&HashSet::new()).unwrap(), GcStats::default());
    c.untag("renamed").unwrap();
    let st = c.gc(&before.layers.iter().cloned().collect()).unwrap();
    assert_eq!(
        (st.blobs_removed, st.layers_removed),
        (3, 0),
        "in-use layer kept"
    );
    let st = c.gc(&HashSet::new()).unwrap();
    assert_eq!(st.layers_removed, 1);
}

#[test]
fn docker_save_archive_imports() {
    let t = tempfile::tempdir().unwrap();
    let layer = rootfs_tar();
    let diff = Digest::of(&layer);
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/hello"],"Env":["A=1"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    );
    let manifest =
        r#"[{"Config":"abc.json","RepoTags":["hello:saved"],"Layers":["l1/layer.tar"]}]"#;
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", manifest.as_bytes()),
        ("abc.json", cfg.as_bytes()),
        ("l1/layer.tar", &layer[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let s = ImageStore::open(t.path()).unwrap();
    let names = s
        .import_archive(Cursor::new(b.into_inner().unwrap()), None)
        .unwrap();
    assert_eq!(names, vec!["hello:saved"]);
    assert_eq!(s.config("hello:saved").unwrap().env, vec!["A=1"]);
    assert!(s.prepare("hello:saved").unwrap().layers[0]
        .join("etc/passwd")
        .is_file());
}

#[test]
fn docker_healthcheck_in_image_config_parses_and_old_configs_load() {
    let json = r#"{"Cmd":["sh"],"Healthcheck":{"Test":["CMD-SHELL","test -f /ok"],
        "Interval":2000000000,"Timeout":1000000000,"StartPeriod":500000000,"Retries":4}}"#;
    let c: ImageConfig = serde_json::from_str(json).unwrap();
    let h = c.healthcheck.clone().unwrap();
    assert_eq!(h.test, vec!["CMD-SHELL", "test -f /ok"]);
    assert_eq!(h.interval(), std::time::Duration::from_secs(2));
    assert_eq!(h.timeout(), std::time::Duration::from_secs(1));
    assert_eq!(h.start_period(), std::time::Duration::from_millis(500));
    assert_eq!(h.retries, 4);
    let back: ImageConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let old: ImageConfig = serde_json::from_str(r#"{"Cmd":["sh"]}"#).unwrap();
    assert_eq!(old.healthcheck, None);
}

#[test]
fn concurrent_prepares_of_a_fresh_image_all_succeed() {
    // Regression: concurrent task preparations used to unpack into one shared temp dir.
    let t = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(ImageStore::open(t.path()).unwrap());
    s.import_rootfs_tar(Cursor::new(rootfs_tar()), "hello", ImageConfig::default())
        .unwrap();
    let results: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8).map(|_| sc.spawn(|| s.prepare("hello"))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        let p = r.as_ref().expect("every concurrent prepare succeeds");
        assert!(p.layers[0].join("bin/hello").is_file());
    }
}

#[test]
fn a_fresh_layer_is_unpacked_once_however_many_prepare_it() {
    // 50 tasks of a freshly imported image used to unpack its layer 50 times (issue 13).
    let names: Vec<String> = (0..2000).map(|i| format!("f/{i:04}")).collect();
    let mut entries: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> =
        vec![("f/", tar::EntryType::Directory, b"", None)];
    for n in &names {
        entries.push((n.as_str(), tar::EntryType::Regular, &[7u8; 512], None));
    }
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(t.path()).unwrap();
    s.import_rootfs_tar(
        Cursor::new(tar_with(&entries)),
        "many",
        ImageConfig::default(),
    )
    .unwrap();
    let start = std::sync::Barrier::new(8);
    let results: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    start.wait();
                    s.prepare("many")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dst = results[0].as_ref().unwrap().layers[0].clone();
    for r in &results {
        assert_eq!(r.as_ref().unwrap().layers[0], dst);
    }
    assert!(dst.join("f/1999").is_file());
    let n = UNPACKED
        .lock()
        .unwrap()
        .iter()
        .filter(|p| **p == dst)
        .count();
    assert_eq!(n, 1, "the layer was unpacked {n} times");
}

#[test]
fn a_build_cache_entry_keeps_an_untagged_image_until_the_cache_is_cleared() {
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(t.path().join("s")).unwrap();
    let md = s
        .import_rootfs_tar(Cursor::new(rootfs_tar()), "step:1", ImageConfig::default())
        .unwrap();
    let key = "ab".repeat(32);
    assert_eq!(s.cache_get(&key), None);
    s.cache_put(&key, &md).unwrap();
    assert!(s.cache_put("../escape", &md).is_err(), "keys are hex only");
    s.untag("step:1").unwrap();
    assert_eq!(s.gc(&HashSet::new()).unwrap(), GcStats::default());
    assert_eq!(s.cache_get(&key), Some(md.clone()));
    assert!(s.list().unwrap().is_empty(), "a cache entry is not a tag");
    assert_eq!(s.cache_clear().unwrap(), 1);
    let st = s.gc(&HashSet::new()).unwrap();
    assert_eq!(st.blobs_removed, 3, "manifest, config and layer");
    assert_eq!(s.cache_get(&key), None);
}

#[test]
fn the_same_build_cache_entry_written_at_once_from_many_threads_succeeds_every_time() {
    // Two stages of one build with the same step finish it together (a build test once
    // failed with "No such file or directory" from the shared temporary name).
    let t = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(ImageStore::open(t.path().join("s")).unwrap());
    let md = s
        .import_rootfs_tar(Cursor::new(rootfs_tar()), "step:1", ImageConfig::default())
        .unwrap();
    let key = "cd".repeat(32);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, md, key) = (s.clone(), md.clone(), key.clone());
            std::thread::spawn(move || (0..50).map(|_| s.cache_put(&key, &md)).collect::<Vec<_>>())
        })
        .collect();
    for t in threads {
        for r in t.join().unwrap() {
            r.unwrap();
        }
    }
    assert_eq!(s.cache_get(&key), Some(md));
}

#[test]
fn file_capabilities_and_user_xattrs_are_restored_and_others_are_not() {
    let (_t, root, _o) = sentinel();
    // VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_RAW (bit 13).
    let mut cap = vec![0x01, 0x00, 0x00, 0x02];
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&[0u8; 12]);
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.security.capability", cap.as_slice()),
        ("SCHILY.xattr.user.origin", b"layer".as_slice()),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y".as_slice()),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_size(3);
    b.append_data(&mut h, "ping", &b"elf"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    unpack::unpack_layer(Cursor::new(tar), &root, Default::default()).unwrap();
    let p = root.join("ping");
    assert_eq!(
        sys::lgetxattr(&p, "security.capability").unwrap(),
        Some(cap)
    );
    // The root filesystem of the test may lack user xattrs (then none is set, and that is fine).
    if let Some(v) = sys::lgetxattr(&p, "user.origin").unwrap() {
        assert_eq!(v, b"layer");
    }
    assert_eq!(
        sys::lgetxattr(&p, "trusted.overlay.opaque").unwrap(),
        None,
        "an image never sets overlayfs' own attributes"
    );
}
