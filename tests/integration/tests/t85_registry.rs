//! The cluster registry (issue 13) against clients nobody here wrote: Debian's skopeo pushes
//! an OCI layout into a manager's registry and copies it back byte for byte; curl shows the
//! refusals (malformed, huge, unknown blobs, digest mismatch, path traversal, no credentials)
//! store nothing. On three netns hosts: an image pushed once runs on every host, survives the
//! SIGKILL of the manager that took the push, a corrupt blob on disk is refetched from a
//! peer, and a missing tag rejects the task with the registry's error.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use swarm_integration::docker::{cert_dir, DockerLogin};
use swarm_integration::{
    busybox_tar, hosts_cluster_with, init_tracing, json_lines, managers, tasks, LONG,
};
use swarm_testkit::{wait_until, Cluster};
use tracing::info;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// An OCI image layout at `dir` with one image tagged `tag`: the busybox rootfs (variant
/// `marker`) as one uncompressed layer. Returns the manifest digest.
fn oci_layout(dir: &Path, marker: &str, tag: &str) -> String {
    oci_layout_with(dir, marker, tag, &[])
}

/// Like [`oci_layout`], with more (uncompressed tar) layers on top of the busybox one.
fn oci_layout_with(dir: &Path, marker: &str, tag: &str, extra: &[PathBuf]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blobs.join(&d[7..]), b).unwrap();
        (d, b.len())
    };
    let layer = std::fs::read(busybox_tar(marker)).unwrap();
    let (ld, ls) = put(&layer);
    let mut more = Vec::new();
    for e in extra {
        more.push(put(&std::fs::read(e).unwrap()));
    }
    let diff_ids: Vec<String> = std::iter::once(ld.clone())
        .chain(more.iter().map(|(d, _)| d.clone()))
        .collect();
    let layers: Vec<serde_json::Value> = std::iter::once((ld.clone(), ls))
        .chain(more.iter().cloned())
        .map(|(d, s)| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": layers,
    });
    let (md, ms) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

fn run(prefix: &[String], args: &[&str]) -> std::process::Output {
    let mut cmd = if prefix.is_empty() {
        Command::new(args[0])
    } else {
        let mut c = Command::new(&prefix[0]);
        c.args(&prefix[1..]).arg(args[0]);
        c
    };
    cmd.args(&args[1..]).output().expect("run a client")
}

fn ok(prefix: &[String], args: &[&str]) -> String {
    let o = run(prefix, args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// curl against the registry: (status, headers+body).
fn curl(ca: &Path, auth: Option<&str>, args: &[&str]) -> (u16, String) {
    let mut a: Vec<String> = vec![
        "curl".into(),
        "-sS".into(),
        "--path-as-is".into(),
        "--cacert".into(),
        ca.display().to_string(),
        "-i".into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if let Some(t) = auth {
        a.extend(["-u".into(), format!("token:{t}")]);
    }
    a.extend(args.iter().map(|s| s.to_string()));
    let o = Command::new(&a[0]).args(&a[1..]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn registry_blobs(state_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(state_dir.join("registry/blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn skopeo_round_trip_and_refusals() {
    init_tracing();
    let c = managers(1, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let reg = c.nodes[0].registry.clone();
    let src = tmp.path().join("src");
    let md = oci_layout(&src, "v1", "v1");
    let certs = cert_dir(&c, 0, tmp.path(), false);
    wait_until("registry serving", LONG, || {
        (curl(
            &certs.join("ca.crt"),
            None,
            &[&format!("https://{reg}/v2/")],
        )
        .0 == 401)
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: anonymous access is refused; a pull token cannot push");
    let ca = certs.join("ca.crt");
    let (code, out) = curl(&ca, None, &[&format!("https://{reg}/v2/_catalog")]);
    assert_eq!(code, 401, "{out}");
    assert!(
        out.to_lowercase().contains("www-authenticate: basic"),
        "{out}"
    );
    let push = c
        .ctl(0, &["registry", "login-token", "--push", "--expires", "1h"])
        .unwrap();
    let push = push.trim();
    let pull = c.ctl(0, &["registry", "login-token", "--pull"]).unwrap();
    let pull = pull.trim();
    let (code, out) = curl(
        &ca,
        Some(pull),
        &["-X", "POST", &format!("https://{reg}/v2/x/blobs/uploads/")],
    );
    assert_eq!(code, 403, "{out}");
    assert!(out.contains("DENIED"), "{out}");
    let (code, out) = curl(
        &ca,
        Some("swreg1.forged.token"),
        &[&format!("https://{reg}/v2/_catalog")],
    );
    assert_eq!(code, 401, "{out}");

    info!(
        "phase: skopeo pushes the OCI layout (login token) and copies it back (client certificate)"
    );
    let dest = format!("docker://{reg}/test/busybox:v1");
    ok(
        &[],
        &[
            "skopeo",
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            "--dest-creds",
            &format!("u:{push}"),
            &format!("oci:{}:v1", src.display()),
            &dest,
        ],
    );
    let mtls = cert_dir(&c, 0, tmp.path(), true);
    let back = tmp.path().join("back");
    ok(
        &[],
        &[
            "skopeo",
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            mtls.to_str().unwrap(),
            &dest,
            &format!("oci:{}:v1", back.display()),
        ],
    );
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        idx["manifests"][0]["digest"], md,
        "same manifest digest after the round trip"
    );
    for e in std::fs::read_dir(src.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let copy = back.join("blobs/sha256").join(e.file_name());
        assert_eq!(
            std::fs::read(e.path()).unwrap(),
            std::fs::read(&copy).unwrap(),
            "blob {:?} byte-identical",
            e.file_name()
        );
    }
    let inspect = ok(
        &[],
        &[
            "skopeo",
            "inspect",
            "--raw",
            "--cert-dir",
            mtls.to_str().unwrap(),
            &dest,
        ],
    );
    assert_eq!(sha(inspect.as_bytes()), md);

    info!("phase: tags, pagination, catalog");
    let manifest = std::fs::read(src.join("blobs/sha256").join(&md[7..])).unwrap();
    let mf = tmp.path().join("manifest.json");
    std::fs::write(&mf, &manifest).unwrap();
    let ct = "content-type: application/vnd.oci.image.manifest.v1+json";
    for t in ["v2", "v3"] {
        let (code, out) = curl(
            &ca,
            Some(push),
            &[
                "-X",
                "PUT",
                "-H",
                ct,
                "--data-binary",
                &format!("@{}", mf.display()),
                &format!("https://{reg}/v2/test/busybox/manifests/{t}"),
            ],
        );
        assert_eq!(code, 201, "{out}");
        assert!(out.contains(&md), "{out}");
    }
    let (code, out) = curl(
        &ca,
        Some(pull),
        &[&format!("https://{reg}/v2/test/busybox/tags/list?n=2")],
    );
    assert_eq!(code, 200, "{out}");
    assert!(out.contains(r#""tags":["v1","v2"]"#), "{out}");
    assert!(
        out.to_lowercase()
            .contains("link: </v2/test/busybox/tags/list?n=2&last=v2>; rel=\"next\""),
        "{out}"
    );
    let (_, out) = curl(
        &ca,
        Some(pull),
        &[&format!(
            "https://{reg}/v2/test/busybox/tags/list?n=2&last=v2"
        )],
    );
    assert!(
        out.contains(r#""tags":["v3"]"#) && !out.to_lowercase().contains("link:"),
        "{out}"
    );
    let (_, out) = curl(
        &ca,
        Some(pull),
        &[
            &format!("https://{reg}/v2/test/busybox/manifests/v3"),
            "-X",
            "DELETE",
        ],
    );
    assert!(
        out.contains("403") || out.contains("DENIED"),
        "a pull token cannot delete: {out}"
    );
    let (code, out) = curl(
        &ca,
        Some(push),
        &[
            "-X",
            "DELETE",
            &format!("https://{reg}/v2/test/busybox/manifests/v3"),
        ],
    );
    assert_eq!(code, 202, "{out}");
    let (code, _) = curl(
        &ca,
        Some(pull),
        &[&format!("https://{reg}/v2/test/busybox/manifests/v3")],
    );
    assert_eq!(code, 404);
    let (code, out) = curl(
        &ca,
        Some(pull),
        &[
            "-r",
            "0-9",
            &format!(
                "https://{reg}/v2/test/busybox/blobs/{}",
                sha(&std::fs::read(busybox_tar("v1")).unwrap())
            ),
        ],
    );
    assert_eq!(code, 206, "{out}");
    assert!(
        out.to_lowercase().contains("content-range: bytes 0-9/"),
        "{out}"
    );

    info!("phase: refusals store nothing");
    let blobs_before = registry_blobs(c.state_dir(0));
    let catalog = || {
        let out = curl(&ca, Some(pull), &[&format!("https://{reg}/v2/_catalog")]).1;
        out.rsplit("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let before = catalog();
    assert!(
        before.contains(r#""repositories":["test/busybox"]"#),
        "{before}"
    );
    let put_manifest = |name: &str, reference: &str, body_file: &Path| {
        curl(
            &ca,
            Some(push),
            &[
                "-X",
                "PUT",
                "-H",
                ct,
                "--data-binary",
                &format!("@{}", body_file.display()),
                &format!("https://{reg}/v2/{name}/manifests/{reference}"),
            ],
        )
    };
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, b"{\"schemaVersion\":2,\"config\":").unwrap();
    let (code, out) = put_manifest("refused/one", "v1", &bad);
    assert_eq!(code, 400, "malformed: {out}");
    assert!(out.contains("MANIFEST_INVALID"), "{out}");
    let unknown = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(b"nope"), "size": 4},
        "layers": [],
    });
    std::fs::write(&bad, unknown.to_string()).unwrap();
    let (code, out) = put_manifest("refused/two", "v1", &bad);
    assert_eq!(code, 400, "unknown blob: {out}");
    assert!(out.contains("MANIFEST_BLOB_UNKNOWN"), "{out}");
    let huge = tmp.path().join("huge.json");
    let filler = "x".repeat(5 * 1024 * 1024);
    std::fs::write(
        &huge,
        format!(r#"{{"schemaVersion":2,"annotations":{{"a":"{filler}"}}}}"#),
    )
    .unwrap();
    let (code, out) = put_manifest("refused/three", "v1", &huge);
    assert_eq!(code, 413, "huge: {out}");
    let (code, out) = put_manifest("refused/four", &sha(b"other"), &mf);
    assert_eq!(code, 400, "manifest digest mismatch: {out}");
    assert!(out.contains("DIGEST_INVALID"), "{out}");
    let wrong = sha(b"not the content");
    let data = tmp.path().join("data.bin");
    std::fs::write(&data, b"some content").unwrap();
    let (code, out) = curl(
        &ca,
        Some(push),
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/octet-stream",
            "--data-binary",
            &format!("@{}", data.display()),
            &format!("https://{reg}/v2/refused/five/blobs/uploads/?digest={wrong}"),
        ],
    );
    assert_eq!(code, 400, "blob digest mismatch: {out}");
    assert!(out.contains("DIGEST_INVALID"), "{out}");
    let (code, _) = curl(
        &ca,
        Some(pull),
        &[
            "-I",
            &format!("https://{reg}/v2/refused/five/blobs/{wrong}"),
        ],
    );
    assert_eq!(code, 404);
    for path in [
        "/v2/../../etc/manifests/latest",
        "/v2/a/../../b/manifests/latest",
        "/v2/..%2f..%2fetc/manifests/latest",
        "/v2/UPPER/manifests/latest",
    ] {
        let (code, out) = put_manifest(
            path.trim_start_matches("/v2/")
                .trim_end_matches("/manifests/latest"),
            "latest",
            &mf,
        );
        assert_eq!(code, 400, "{path}: {out}");
        assert!(out.contains("NAME_INVALID"), "{path}: {out}");
    }
    let (code, out) = curl(
        &ca,
        Some(push),
        &[
            "-X",
            "PUT",
            "-H",
            ct,
            "--data-binary",
            &format!("@{}", mf.display()),
            &format!("https://{reg}/v2/a/b/manifests/..%2f..%2fx"),
        ],
    );
    assert_eq!(code, 400, "tag traversal: {out}");
    assert_eq!(
        catalog(),
        before,
        "no repository was created by a refused request"
    );
    assert_eq!(
        registry_blobs(c.state_dir(0)),
        blobs_before,
        "no blob was stored by a refused request"
    );
    assert!(
        std::fs::read_dir(c.state_dir(0).join("registry/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no temporary file left behind"
    );

    info!("phase: swarmctl image push from the node's store, image pull back into it");
    swarm_integration::import(&c, 0, "mine/bb:v1", "v1");
    let out = c.ctl(0, &["image", "push", "mine/bb:v1"]).unwrap();
    // The layer is the rootfs skopeo pushed above (same bytes): only the config is new.
    assert!(out.contains("pushed (1 blobs uploaded)"), "{out}");
    let pushed = out
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap()
        .to_string();
    assert!(catalog().contains("mine/bb"), "{}", catalog());
    let out = c
        .ctl(0, &["image", "push", "mine/bb:v1", "mine/bb:v2"])
        .unwrap();
    assert!(
        out.contains("pushed (0 blobs uploaded)"),
        "blobs already there: {out}"
    );
    c.ctl(0, &["image", "rm", "mine/bb:v1"]).unwrap();
    let out = c.ctl(0, &["image", "pull", "mine/bb:v2"]).unwrap();
    assert!(out.contains(&pushed), "pulled the pushed manifest: {out}");
    assert!(c.ctl(0, &["image", "ls"]).unwrap().contains("mine/bb"));
    let o = c.ctl_raw(0, &["image", "pull", "mine/bb:absent"]).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );
}

/// Hosts: three managers. The test pushes to host 0's registry from inside host 0.
/// `--resolve-image` (Docker's flag): a service of a cluster-registry tag is pinned to the
/// manifest digest at create, keeps it when the tag moves (also through `update --force`), is
/// re-pinned when `--image` is given again, and is left unpinned with `never`. An image the
/// registry does not hold (imported on the nodes) stays a tag, with a warning.
#[test]
fn service_images_are_pinned_to_the_pushed_digest() {
    init_tracing();
    let c = managers(1, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let reg = c.nodes[0].registry.clone();
    let certs = cert_dir(&c, 0, tmp.path(), true);
    let push = |marker: &str| {
        let src = tmp.path().join(marker);
        let md = oci_layout(&src, marker, "v1");
        wait_until("push", LONG, || {
            let o = run(
                &[],
                &[
                    "skopeo",
                    "copy",
                    "--preserve-digests",
                    "--dest-cert-dir",
                    certs.to_str().unwrap(),
                    &format!("oci:{}:v1", src.display()),
                    &format!("docker://{reg}/pin/app:v1"),
                ],
            );
            if !o.status.success() {
                info!("push not yet: {}", String::from_utf8_lossy(&o.stderr));
            }
            o.status.success().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
        md
    };
    let image_of = |name: &str| -> String {
        let v: serde_json::Value =
            serde_json::from_str(&c.ctl(0, &["service", "inspect", name]).unwrap()).unwrap();
        v[0]["spec"]["task"]["container"]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };

    info!("phase: create pins the tag to the pushed digest; the task runs it");
    let md1 = push("pin1");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "pin",
            "pin/app:v1",
            "sleep",
            "3600",
        ],
    )
    .unwrap();
    assert_eq!(image_of("pin"), format!("pin/app:v1@{md1}"));
    wait_until("the pinned service runs", LONG, || {
        (swarm_integration::running(&c, 0, "pin").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "pin"), c.dump()));
    let ls = c.ctl(0, &["service", "ls"]).unwrap();
    assert!(
        ls.contains("pin/app:v1") && !ls.contains(&md1),
        "lists show the tag, not the digest: {ls}"
    );
    let ps = c.ctl(0, &["service", "ps", "--no-trunc", "pin"]).unwrap();
    assert!(
        ps.contains(&format!("pin/app:v1@{md1}")),
        "service ps --no-trunc shows the pinned digest: {ps}"
    );

    info!("phase: the tag moves; the service keeps its digest, also through --force");
    let md2 = push("pin2");
    assert_ne!(md1, md2);
    c.ctl(0, &["service", "update", "-d", "--force", "pin"])
        .unwrap();
    assert_eq!(image_of("pin"), format!("pin/app:v1@{md1}"));

    info!("phase: --image again re-resolves the tag, and the new bytes run");
    c.ctl(
        0,
        &["service", "update", "-d", "--image", "pin/app:v1", "pin"],
    )
    .unwrap();
    assert_eq!(image_of("pin"), format!("pin/app:v1@{md2}"));
    wait_until("a task of the new digest runs", LONG, || {
        let ts = tasks(&c, 0, "pin");
        ts.iter()
            .any(|t| {
                t["DesiredState"] == "Running"
                    && t["CurrentState"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("Running"))
                    && t["ID"].is_string()
            })
            .then_some(())?;
        let out = c.ctl(0, &["image", "ls", "--format", "json"]).ok()?;
        json_lines(&out)
            .iter()
            .any(|i| i["Digest"] == md2.as_str())
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "pin"), c.dump()));

    info!("phase: --resolve-image never and changed leave the reference as given");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "-d",
            "--resolve-image",
            "never",
            "--image",
            "pin/app:v1",
            "pin",
        ],
    )
    .unwrap();
    assert_eq!(image_of("pin"), "pin/app:v1");
    c.ctl(
        0,
        &[
            "service",
            "update",
            "-d",
            "--resolve-image",
            "changed",
            "--force",
            "pin",
        ],
    )
    .unwrap();
    assert_eq!(
        image_of("pin"),
        "pin/app:v1",
        "unchanged image, not resolved"
    );

    info!("phase: an image the registry lacks stays a tag, with a warning");
    let out = c
        .ctl_raw(
            0,
            &[
                "service", "create", "-d", "--name", "local", "busybox", "sleep", "1",
            ],
        )
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: image busybox could not be pinned")
            && err.contains("no busybox:latest"),
        "{err}"
    );
    assert_eq!(image_of("local"), "busybox");
    let out = c
        .ctl_raw(
            0,
            &[
                "service",
                "create",
                "-d",
                "--resolve-image",
                "sometimes",
                "busybox",
            ],
        )
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Garbage collection: deleting a manifest makes the blobs only it referenced collectable;
/// blobs another manifest uses stay and still pull; an unreferenced blob just uploaded (a push
/// in flight) is kept for the grace period, then removed.
#[test]
fn registry_collects_blobs_no_manifest_references() {
    init_tracing();
    let c = managers(
        1,
        &["--registry-gc-interval", "1s", "--registry-gc-grace", "4s"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let reg = c.nodes[0].registry.clone();
    let certs = cert_dir(&c, 0, tmp.path(), true);
    let ca = certs.join("ca.crt");
    let push = |marker: &str, tag: &str| {
        let src = tmp.path().join(marker);
        let md = oci_layout(&src, marker, tag);
        wait_until("push", LONG, || {
            let o = run(
                &[],
                &[
                    "skopeo",
                    "copy",
                    "--preserve-digests",
                    "--dest-cert-dir",
                    certs.to_str().unwrap(),
                    &format!("oci:{}:{tag}", src.display()),
                    &format!("docker://{reg}/gc/app:{tag}"),
                ],
            );
            if !o.status.success() {
                info!("push not yet: {}", String::from_utf8_lossy(&o.stderr));
            }
            o.status.success().then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
        md
    };
    let layer = |marker: &str| sha(&std::fs::read(busybox_tar(marker)).unwrap())[7..].to_string();
    let on_disk = |hex: &str| registry_blobs(c.state_dir(0)).iter().any(|b| b == hex);

    info!("phase: two images pushed; both stay past the grace period while referenced");
    push("gca", "a");
    let mb = push("gcb", "b");
    let (la, lb) = (layer("gca"), layer("gcb"));
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(
        on_disk(&la) && on_disk(&lb),
        "{:?}",
        registry_blobs(c.state_dir(0))
    );

    info!("phase: an unreferenced upload is spared for the grace period, then collected");
    let token = c
        .ctl(0, &["registry", "login-token", "--push"])
        .unwrap()
        .trim()
        .to_string();
    let stray = tmp.path().join("stray");
    std::fs::write(&stray, b"a blob no manifest will ever reference").unwrap();
    let sd = sha(&std::fs::read(&stray).unwrap());
    let (code, out) = curl(
        &ca,
        Some(&token),
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/octet-stream",
            "--data-binary",
            &format!("@{}", stray.display()),
            &format!("https://{reg}/v2/gc/app/blobs/uploads/?digest={sd}"),
        ],
    );
    assert_eq!(code, 201, "{out}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        on_disk(&sd[7..]),
        "a fresh upload must survive the grace period"
    );
    wait_until("the stray blob is collected", LONG, || {
        (!on_disk(&sd[7..])).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: registry ls shows both tags; rm of an absent tag says so");
    let ls = c.ctl(0, &["registry", "ls", "--format", "json"]).unwrap();
    let tags: Vec<String> = json_lines(&ls)
        .iter()
        .map(|v| {
            format!(
                "{}:{}",
                v["Repository"].as_str().unwrap(),
                v["Tag"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(tags, ["gc/app:a", "gc/app:b"], "{ls}");
    let err = c
        .ctl(0, &["registry", "rm", "gc/app:nope"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no gc/app:nope"), "{err}");

    info!("phase: removing image b's manifest frees its layer; image a is untouched");
    let out = c
        .ctl(0, &["registry", "rm", &format!("gc/app@{mb}")])
        .unwrap();
    assert!(out.contains("Deleted: gc/app@"), "{out}");
    let ls = c.ctl(0, &["registry", "ls", "-q"]).unwrap();
    assert_eq!(ls.trim(), "gc/app:a", "the tag b went with its manifest");
    wait_until("b's layer is collected", LONG, || {
        (!on_disk(&lb)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert!(on_disk(&la), "a's layer is still referenced");
    let out = c.ctl(0, &["image", "pull", "gc/app:a"]).unwrap();
    info!("pulled after collection: {out}");
}

#[test]
fn three_hosts_pull_once_survive_the_pushing_manager_and_refetch_corrupt_blobs() {
    init_tracing();
    let (mut hosts, mut c) = hosts_cluster_with(3, 3, &["--node-down-grace", "2s"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let md = oci_layout(&src, "v85", "v1");
    let certs = cert_dir(&c, 0, tmp.path(), true);
    let p0 = hosts.exec_prefix(0);
    let reg0 = c.nodes[0].registry.clone();
    wait_until("three registry endpoints", LONG, || {
        let eps = (0..3)
            .filter(|i| std::fs::metadata(c.state_dir(*i).join("registry/blobs")).is_ok())
            .count();
        (eps == 3).then_some(())
    })
    .unwrap();

    info!("phase: push once to host 0; the blobs are on at least two managers when skopeo returns");
    wait_until("push", LONG, || {
        let o = run(
            &p0,
            &[
                "skopeo",
                "copy",
                "--preserve-digests",
                "--dest-cert-dir",
                certs.to_str().unwrap(),
                &format!("oci:{}:v1", src.display()),
                &format!("docker://{reg0}/app/busybox:v1"),
            ],
        );
        if !o.status.success() {
            info!("push not yet: {}", String::from_utf8_lossy(&o.stderr));
        }
        o.status.success().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    let layer = sha(&std::fs::read(busybox_tar("v85")).unwrap());
    let holders = (0..3)
        .filter(|i| {
            c.state_dir(*i)
                .join("registry/blobs/sha256")
                .join(&layer[7..])
                .is_file()
        })
        .count();
    assert!(
        holders >= 2,
        "the layer is on {holders} managers right after the push"
    );

    info!("phase: a 6-replica service of the pushed image runs on every host (each agent pulled)");
    c.ctl(
        0,
        &[
            "service",
            "create",
            "--name",
            "app",
            "--replicas",
            "6",
            "app/busybox:v1",
            "sleep",
            "3600",
        ],
    )
    .unwrap();
    wait_until("6 running on 3 hosts", LONG, || {
        let r = swarm_integration::running(&c, 0, "app");
        let nodes: std::collections::BTreeSet<_> = r.iter().map(|(_, n)| n.clone()).collect();
        (r.len() == 6 && nodes.len() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "app"), c.dump()));
    for i in 0..3 {
        let ls = c.ctl(i, &["image", "ls"]).unwrap();
        assert!(
            ls.contains("app/busybox"),
            "n{} has the pulled image: {ls}",
            i + 1
        );
    }

    info!("phase: SIGKILL the manager that took the push; a new host still pulls");
    c.kill(0);
    let token = c.token(1, "worker").unwrap();
    let h = hosts.add().unwrap();
    let w = c.join_on(&hosts, h, 1, &token).unwrap();
    swarm_integration::wait_socket(&c, w);
    c.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "late",
            "--constraint",
            "node.hostname==n4",
            "app/busybox:v1",
            "sleep",
            "3600",
        ],
    )
    .unwrap();
    wait_until("the new host runs the image", LONG, || {
        (swarm_integration::running(&c, 1, "late").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 1, "late"), c.dump()));

    info!(
        "phase: a blob corrupted on one manager's disk is detected and fetched again from a peer"
    );
    let corrupt = c
        .state_dir(1)
        .join("registry/blobs/sha256")
        .join(&layer[7..]);
    let len = std::fs::metadata(&corrupt).unwrap().len();
    std::fs::write(&corrupt, vec![0u8; len as usize]).unwrap();
    let reg1 = c.nodes[1].registry.clone();
    let out_dir = tmp.path().join("back");
    ok(
        &hosts.exec_prefix(1),
        &[
            "skopeo",
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            certs.to_str().unwrap(),
            &format!("docker://{reg1}/app/busybox:v1"),
            &format!("oci:{}:v1", out_dir.display()),
        ],
    );
    assert_eq!(
        std::fs::read(out_dir.join("blobs/sha256").join(&layer[7..])).unwrap(),
        std::fs::read(busybox_tar("v85")).unwrap(),
        "the copy served is the good one"
    );
    assert_eq!(
        sha(&std::fs::read(&corrupt).unwrap()),
        layer,
        "the manager's own copy was replaced"
    );
    assert!(
        c.nodes[1].log_tail(2000).contains("corrupt on disk"),
        "the corruption was logged"
    );
    let _ = md;

    info!("phase: a missing tag rejects the task with the registry's error");
    c.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "missing",
            "app/busybox:nope",
            "sleep",
            "3600",
        ],
    )
    .unwrap();
    let err = wait_until("the task is rejected", LONG, || {
        tasks(&c, 1, "missing")
            .into_iter()
            .find(|t| {
                t["CurrentState"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Rejected")
            })
            .map(|t| t["Error"].as_str().unwrap_or("").to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 1, "missing"), c.dump()));
    info!("rejected with: {err}");
    assert!(
        err.contains("MANIFEST_UNKNOWN") && err.contains("app/busybox:nope"),
        "{err}"
    );
    let _ = json_lines("");
}

/// Docker's engine on this machine pushes to and pulls from the cluster registry with a
/// login token (`docker login`), trusting the cluster CA through /etc/docker/certs.d.
#[test]
fn docker_push_and_pull_with_a_login_token() {
    init_tracing();
    let c = managers(1, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let reg = c.nodes[0].registry.clone();
    let certs = cert_dir(&c, 0, tmp.path(), false);
    wait_until("registry serving", LONG, || {
        (curl(
            &certs.join("ca.crt"),
            None,
            &[&format!("https://{reg}/v2/")],
        )
        .0 == 401)
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));

    info!("phase: docker login with the token, import, push");
    let mut d = DockerLogin::new(&c, 0, tmp.path(), true);
    let image = format!("{reg}/t85-{}/busybox:v1", std::process::id());
    d.images.push(image.clone());
    d.docker(&["import", busybox_tar("v1").to_str().unwrap(), &image]);
    let push = d.docker(&["push", &image]);
    info!("docker push: {push}");
    let digest = push
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .expect("docker push prints the digest")
        .to_string();

    info!("phase: remove it locally, pull it back by tag and by digest");
    d.docker(&["rmi", "-f", &image]);
    d.docker(&["pull", &image]);
    let by_digest = format!("{}@{digest}", image.rsplit_once(':').unwrap().0);
    let pulled = d.docker(&["pull", &by_digest]);
    assert!(pulled.contains(&digest), "{pulled}");
    let inspect = d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    assert!(inspect.contains(&digest), "{inspect}");
}

/// A process killed when the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An agent pulls an image named by another registry: Debian's `docker-registry` (the
/// reference implementation) serving plain HTTP on loopback.
#[test]
fn agents_pull_from_debians_docker_registry_on_loopback() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let port = swarm_testkit::free_port();
    let config = tmp.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(tmp.path().join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run docker-registry (Debian package docker-registry)");
    let _registry = Killed(child);
    wait_until("docker-registry serving", LONG, || {
        let o = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/v2/")])
            .output()
            .ok()?;
        o.status.success().then_some(())
    })
    .unwrap();
    let src = tmp.path().join("src");
    let md = oci_layout(&src, "v1", "v1");
    let image = format!("127.0.0.1:{port}/ext/busybox:v1");
    ok(
        &[],
        &[
            "skopeo",
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{image}"),
        ],
    );

    info!("phase: a service of that image runs; the agent pulled it over HTTP from loopback");
    let c = managers(1, &[]);
    c.ctl(
        0,
        &[
            "service", "create", "--name", "ext", &image, "sleep", "3600",
        ],
    )
    .unwrap();
    wait_until("the service runs", LONG, || {
        (swarm_integration::running(&c, 0, "ext").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "ext"), c.dump()));
    let ls = c.ctl(0, &["image", "ls"]).unwrap();
    assert!(
        ls.contains(&format!("127.0.0.1:{port}/ext/busybox")),
        "{ls}"
    );
    let out = c.ctl(0, &["image", "pull", &image]).unwrap();
    assert!(
        out.contains(&md),
        "the pulled manifest is the one pushed: {out}"
    );
}

/// `--with-registry-auth`: an image in a registry that wants a login (Debian's
/// docker-registry with htpasswd) is refused without credentials, with a hint, and runs with
/// the credentials `docker login` left in config.json. They never show in `service inspect`,
/// `service ps` or the agent's task database, and an update keeps them.
#[test]
fn private_registry_credentials_reach_only_the_pull() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let port = swarm_testkit::free_port();
    let hash = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .output()
        .expect("python3 makes the bcrypt hash");
    let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
    assert!(hash.starts_with("$2"), "bcrypt hash: {hash:?}");
    std::fs::write(tmp.path().join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    let config = tmp.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            tmp.path().join("data").display(),
            tmp.path().join("htpasswd").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(tmp.path().join("registry.log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run docker-registry (Debian package docker-registry)");
    let _registry = Killed(child);
    wait_until("docker-registry asks for a login", LONG, || {
        let o = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://127.0.0.1:{port}/v2/"),
            ])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&o.stdout) == "401").then_some(())
    })
    .unwrap();
    let src = tmp.path().join("src");
    oci_layout(&src, "priv", "v1");
    let image = format!("127.0.0.1:{port}/priv/busybox:v1");
    ok(
        &[],
        &[
            "skopeo",
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:s3cret",
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{image}"),
        ],
    );
    // What `docker login 127.0.0.1:PORT` leaves behind.
    let auth = "YWxpY2U6czNjcmV0"; // base64("alice:s3cret")
    let docker_config = tmp.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        serde_json::json!({"auths": {format!("127.0.0.1:{port}"): {"auth": auth}}}).to_string(),
    )
    .unwrap();

    let c = managers(1, &[]);
    let ctl = |args: &[&str]| {
        let o = Command::new(swarm_testkit::bin("swarmctl"))
            .env("DOCKER_CONFIG", &docker_config)
            .arg("-H")
            .arg(c.nodes[0].host())
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };

    info!("phase: without credentials the pull is refused, and the error says what to do");
    let (okay, out) = ctl(&[
        "service", "create", "-d", "--name", "nologin", &image, "sleep", "3600",
    ]);
    assert!(okay, "{out}");
    wait_until("the task is rejected", LONG, || {
        tasks(&c, 0, "nologin")
            .iter()
            .find(|t| {
                t["Error"]
                    .as_str()
                    .is_some_and(|e| e.contains("--with-registry-auth"))
            })
            .cloned()
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "nologin"), c.dump()));
    ctl(&["service", "rm", "nologin"]);

    info!("phase: with --with-registry-auth the node logs in and runs it");
    let (okay, out) = ctl(&[
        "service",
        "create",
        "-d",
        "--with-registry-auth",
        "--name",
        "priv",
        &image,
        "sleep",
        "3600",
    ]);
    assert!(okay, "{out}");
    wait_until("the private image runs", LONG, || {
        (swarm_integration::running(&c, 0, "priv").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "priv"), c.dump()));

    info!("phase: the credentials show nowhere a client or the node's disk can see");
    let (_, inspect) = ctl(&["service", "inspect", "priv"]);
    assert!(
        inspect.contains("(sealed)") && !inspect.contains(auth),
        "{inspect}"
    );
    let (_, ps) = ctl(&["service", "ps", "--format", "json", "priv"]);
    assert!(!ps.contains(auth), "{ps}");
    let db = c.state_dir(0).join("agent/tasks");
    for e in std::fs::read_dir(&db).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        assert!(
            !text.contains(auth),
            "{} holds the credentials",
            e.path().display()
        );
    }

    info!("phase: updates without the flag keep them: the node pulls again after losing the image");
    let (okay, out) = ctl(&["service", "update", "-d", "--replicas", "0", "priv"]);
    assert!(okay, "{out}");
    wait_until("the image is unused and removed", LONG, || {
        let (okay, _) = ctl(&["image", "rm", &image]);
        okay.then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "priv"), c.dump()));
    let (okay, out) = ctl(&[
        "service",
        "update",
        "-d",
        "--replicas",
        "1",
        "--force",
        "priv",
    ]);
    assert!(okay, "{out}");
    let (_, inspect) = ctl(&["service", "inspect", "priv"]);
    assert!(inspect.contains("(sealed)"), "{inspect}");
    wait_until("the task runs again after a fresh pull", LONG, || {
        (swarm_integration::running(&c, 0, "priv").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "priv"), c.dump()));
    let (_, images) = ctl(&["image", "ls"]);
    assert!(images.contains("priv/busybox"), "pulled again: {images}");

    info!("phase: the flag for an image of the cluster registry is refused");
    let (okay, out) = ctl(&["service", "create", "-d", "--with-registry-auth", "busybox"]);
    assert!(!okay && out.contains("cluster registry"), "{out}");
}

/// A chunked upload survives the manager's restart: the client asks where it stands and
/// resumes from that offset (the Distribution spec's resumable upload).
#[test]
fn a_chunked_upload_resumes_after_the_manager_restarts() {
    init_tracing();
    let mut c = managers(1, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let reg = c.nodes[0].registry.clone();
    let certs = cert_dir(&c, 0, tmp.path(), false);
    let ca = certs.join("ca.crt");
    let token = c
        .ctl(0, &["registry", "login-token", "--push"])
        .unwrap()
        .trim()
        .to_string();
    let serving = |c: &Cluster| {
        wait_until("registry serving", LONG, || {
            (curl(&ca, Some(&token), &[&format!("https://{reg}/v2/")]).0 == 200).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    };
    serving(&c);
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha(&blob);
    let (a, b) = blob.split_at(120_000);
    let (fa, fb) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::write(&fa, a).unwrap();
    std::fs::write(&fb, b).unwrap();
    let location = |out: &str| {
        out.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("location:")
                    .then(|| l[9..].trim().to_string())
            })
            .unwrap_or_else(|| panic!("no location in {out}"))
    };

    info!("phase: start an upload and send its first chunk");
    let (code, out) = curl(
        &ca,
        Some(&token),
        &[
            "-X",
            "POST",
            &format!("https://{reg}/v2/up/app/blobs/uploads/"),
        ],
    );
    assert_eq!(code, 202, "{out}");
    let loc = location(&out);
    let (code, out) = curl(
        &ca,
        Some(&token),
        &[
            "-X",
            "PATCH",
            "-H",
            "content-type: application/octet-stream",
            "-H",
            &format!("content-range: 0-{}", a.len() - 1),
            "--data-binary",
            &format!("@{}", fa.display()),
            &format!("https://{reg}{loc}"),
        ],
    );
    assert_eq!(code, 202, "{out}");

    info!("phase: the manager restarts; the upload is still there, at the same offset");
    c.restart(0).unwrap();
    serving(&c);
    let (code, out) = curl(&ca, Some(&token), &[&format!("https://{reg}{loc}")]);
    assert_eq!(code, 204, "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains(&format!("range: 0-{}", a.len() - 1)),
        "{out}"
    );

    info!("phase: the rest resumes from there and the blob is complete and verified");
    let (code, out) = curl(
        &ca,
        Some(&token),
        &[
            "-X",
            "PUT",
            "-H",
            "content-type: application/octet-stream",
            "-H",
            &format!("content-range: {}-{}", a.len(), blob.len() - 1),
            "--data-binary",
            &format!("@{}", fb.display()),
            &format!("https://{reg}{loc}?digest={digest}"),
        ],
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = curl(
        &ca,
        Some(&token),
        &["-I", &format!("https://{reg}/v2/up/app/blobs/{digest}")],
    );
    assert_eq!(code, 200, "{out}");
    assert!(registry_blobs(c.state_dir(0)).contains(&digest[7..].to_string()));
}

/// Peak VmRSS (kB) of `pid` sampled until `stop` is set.
fn sample_rss(pid: u32, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut peak = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    peak
}

/// Benchmark (BENCHMARKS.md, `deploy/bench/registry_pull.sh`): a 200 MB image pulled by three
/// netns hosts at once from the cluster registry, against `docker pull` of the same image from
/// Debian's docker-registry on loopback.
#[test]
#[ignore = "benchmark: deploy/bench/registry_pull.sh"]
fn bench_registry_pull_200mb() {
    init_tracing();
    let mb: u64 = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    ok(
        &[],
        &[
            "sh",
            "-c",
            &format!("head -c {}M /dev/urandom > {}/data", mb, big.display()),
        ],
    );
    let layer = tmp.path().join("big.tar");
    ok(
        &[],
        &[
            "tar",
            "-C",
            big.to_str().unwrap(),
            "-cf",
            layer.to_str().unwrap(),
            "data",
        ],
    );
    let src = tmp.path().join("src");
    oci_layout_with(&src, "bench", "v1", std::slice::from_ref(&layer));
    let (hosts, c) = hosts_cluster_with(3, 3, &["--log-level", "info"]);
    let certs = cert_dir(&c, 0, tmp.path(), true);
    let reg0 = c.nodes[0].registry.clone();
    let t = std::time::Instant::now();
    wait_until("push", LONG, || {
        run(
            &hosts.exec_prefix(0),
            &[
                "skopeo",
                "copy",
                "--dest-cert-dir",
                certs.to_str().unwrap(),
                &format!("oci:{}:v1", src.display()),
                &format!("docker://{reg0}/bench/big:v1"),
            ],
        )
        .status
        .success()
        .then_some(())
    })
    .unwrap();
    let push_s = t.elapsed().as_secs_f64();

    let stop = std::sync::atomic::AtomicBool::new(false);
    let pids: Vec<u32> = (0..3).map(|i| c.nodes[i].pid().unwrap()).collect();
    let (secs, rss) = std::thread::scope(|sc| {
        let samplers: Vec<_> = pids
            .iter()
            .map(|p| {
                let stop = &stop;
                sc.spawn(move || sample_rss(*p, stop))
            })
            .collect();
        let t = std::time::Instant::now();
        let pulls: Vec<_> = (0..3)
            .map(|i| {
                let c = &c;
                sc.spawn(move || {
                    let o = c.ctl(i, &["image", "pull", "bench/big:v1"]);
                    (o, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        let secs: Vec<f64> = pulls
            .into_iter()
            .map(|h| {
                let (o, s) = h.join().unwrap();
                o.unwrap();
                s
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rss: Vec<u64> = samplers.into_iter().map(|h| h.join().unwrap()).collect();
        (secs, rss)
    });
    let total = secs.iter().cloned().fold(0.0, f64::max);
    let size_mb = (std::fs::metadata(&layer).unwrap().len()
        + std::fs::metadata(busybox_tar("bench")).unwrap().len()) as f64
        / 1e6;

    // Docker's engine pulling the same image from Debian's docker-registry on loopback.
    let port = swarm_testkit::free_port();
    let config = tmp.path().join("registry.yml");
    std::fs::write(&config, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", tmp.path().join("data").display())).unwrap();
    let _registry = Killed(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("docker-registry", LONG, || {
        Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/v2/")])
            .output()
            .ok()?
            .status
            .success()
            .then_some(())
    })
    .unwrap();
    let image = format!("127.0.0.1:{port}/bench/big:v1");
    ok(
        &[],
        &[
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{image}"),
        ],
    );
    struct Rmi(String);
    impl Drop for Rmi {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _cleanup = Rmi(image.clone());
    let t = std::time::Instant::now();
    ok(&[], &["docker", "pull", &image]);
    let docker_s = t.elapsed().as_secs_f64();
    println!(
        "BENCH image {size_mb:.1} MB; push (skopeo, host 0) {push_s:.2}s; 3 hosts pulling at once: {:.2}s/{:.2}s/{:.2}s, all done {total:.2}s = {:.1} MB/s per host, {:.1} MB/s total; swarmd peak RSS during the pulls (MB): {:.0}/{:.0}/{:.0}; docker pull from docker-registry (one engine, loopback): {docker_s:.2}s = {:.1} MB/s",
        secs[0], secs[1], secs[2],
        size_mb / total, 3.0 * size_mb / total,
        rss[0] as f64 / 1024.0, rss[1] as f64 / 1024.0, rss[2] as f64 / 1024.0,
        size_mb / docker_s,
    );
}
