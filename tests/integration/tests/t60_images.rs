//! The node-local API on the control socket: a worker's socket says what it is, and a node's
//! images are removed and collected without ever pulling one from under a container. One
//! manager and one worker on loopback, real containers from a busybox image.

use std::path::{Path, PathBuf};
use swarm_integration::{import, init_tracing, managers, running, tasks, wait_socket, LONG};
use swarm_testkit::wait_until;
use tracing::info;

/// The unpacked layer directories of node `i`'s image store.
fn layer_dirs(state_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state_dir.join("images/layers"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn blob_count(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("images/blobs/sha256"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn image_names(c: &swarm_testkit::Cluster, i: usize) -> Vec<String> {
    let mut v: Vec<String> = c
        .ctl(i, &["image", "ls", "-q"])
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn worker_socket_says_it_is_a_worker_and_names_its_managers() {
    init_tracing();
    let mut c = managers(1, &[]);
    let token = c.token(0, "worker").unwrap();
    let w = c.join(0, &token).unwrap();
    wait_socket(&c, w);

    info!("phase: control commands on the worker's socket");
    for args in [
        &["service", "ls"][..],
        &["node", "ls"][..],
        &["service", "create", "busybox"][..],
    ] {
        let o = c.ctl_raw(w, args).unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        info!("swarmctl {args:?} on the worker: {}", err.trim());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("is a worker: control commands need a manager"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&c.nodes[0].addr),
            "names the manager it knows ({}): {err}",
            c.nodes[0].addr
        );
    }
    let v = c.ctl(w, &["version"]).unwrap();
    assert!(v.contains("is a worker"), "{v}");

    info!("phase: node-local commands still work there, and the manager is unaffected");
    c.ctl(w, &["image", "ls"]).unwrap();
    c.ctl(0, &["service", "ls"]).unwrap();
}

#[test]
fn images_in_use_stay_and_unused_data_is_collected() {
    init_tracing();
    let c = managers(1, &[]);
    let sd = c.state_dir(0).to_path_buf();
    import(&c, 0, "busybox:latest", "v1");
    import(&c, 0, "spare:v1", "v2");
    let marker = format!("{}", 86_400 + std::process::id() % 10_000);

    info!("phase: a service runs on busybox:latest");
    c.ctl(
        0,
        &[
            "service", "create", "--name", "keep", "busybox", "sleep", &marker,
        ],
    )
    .unwrap();
    wait_until("1 running task", LONG, || {
        (running(&c, 0, "keep").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", tasks(&c, 0, "keep"), c.dump()));
    let used = layer_dirs(&sd);
    assert_eq!(used.len(), 1, "one unpacked layer: {used:?}");

    info!("phase: removing the image a container uses is refused, nothing changes");
    let o = c.ctl_raw(0, &["image", "rm", "busybox"]).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    info!("image rm busybox: {}", err.trim());
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("image busybox:latest is used by 1 container")
            && err.contains("of service keep"),
        "{err}"
    );
    // All or nothing: an unused image named with it stays too.
    assert!(c.ctl(0, &["image", "rm", "spare:v1", "busybox"]).is_err());
    assert_eq!(image_names(&c, 0), vec!["busybox:latest", "spare:v1"]);
    let o = c.ctl_raw(0, &["image", "rm", "nosuch:tag"]).unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("image \"nosuch:tag\" not found"));

    info!("phase: an unused image is removed with its blobs");
    let blobs = blob_count(&sd);
    let out = c.ctl(0, &["image", "rm", "spare:v1"]).unwrap();
    assert!(out.contains("Untagged: spare:v1"), "{out}");
    assert!(
        out.contains("Deleted: 3 blobs"),
        "manifest, config, layer: {out}"
    );
    assert_eq!(blob_count(&sd), blobs - 3);
    assert_eq!(image_names(&c, 0), vec!["busybox:latest"]);
    assert_eq!(layer_dirs(&sd), used, "the running container's layer stays");

    info!("phase: busybox:latest re-imported; the old layer stays while its container exists");
    import(&c, 0, "busybox:latest", "v3");
    let out = c.ctl(0, &["image", "prune", "-f"]).unwrap();
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(layer_dirs(&sd), used, "still used by the container");

    info!("phase: once the container is removed, its layer goes by itself");
    c.ctl(0, &["service", "rm", "keep"]).unwrap();
    wait_until("the unused layer removed", LONG, || {
        layer_dirs(&sd).is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", layer_dirs(&sd), c.dump()));

    info!("phase: prune --all removes images no container uses");
    let out = c.ctl(0, &["image", "prune", "--all", "--force"]).unwrap();
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert!(image_names(&c, 0).is_empty());
    assert_eq!(blob_count(&sd), 0, "no blob left");
}

/// The keep policy (`swarmd --image-keep-unused`): an image no container uses goes once it
/// has been unused for the whole period, with its data; an image a running task uses stays.
#[test]
fn images_unused_for_the_keep_period_are_removed() {
    init_tracing();
    let c = managers(1, &["--image-keep-unused", "4s"]);
    import(&c, 0, "kept:1", "keep1");
    import(&c, 0, "dropped:1", "drop1");
    c.ctl(
        0,
        &[
            "service", "create", "-d", "--name", "k", "kept:1", "sleep", "3600",
        ],
    )
    .unwrap();
    wait_until("the service runs", LONG, || {
        (running(&c, 0, "k").len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", tasks(&c, 0, "k"), c.dump()));
    let blobs_before = blob_count(c.state_dir(0));

    info!("phase: the unused image stays for the keep period");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(image_names(&c, 0).contains(&"dropped:1".to_string()));

    info!("phase: then it goes, data included; the one in use stays");
    wait_until("the unused image is removed", LONG, || {
        (!image_names(&c, 0).contains(&"dropped:1".to_string())).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.dump()));
    assert!(image_names(&c, 0).contains(&"kept:1".to_string()));
    assert!(
        blob_count(c.state_dir(0)) < blobs_before,
        "its blobs were collected"
    );
    assert_eq!(running(&c, 0, "k").len(), 1);
}

/// `image tag` and `image inspect` on the node's store: a second name for the same manifest,
/// Docker's inspect keys, and clear errors for unknown images and bad names.
#[test]
fn images_are_tagged_and_inspected() {
    init_tracing();
    let c = managers(1, &[]);
    import(&c, 0, "orig:1", "tag1");
    c.ctl(0, &["image", "tag", "orig:1", "team/copy:v2"])
        .unwrap();
    let out = c.ctl(0, &["image", "inspect", "team/copy:v2"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tags: Vec<&str> = v[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        tags.contains(&"orig:1") && tags.contains(&"team/copy:v2"),
        "{out}"
    );
    assert!(v[0]["Id"].as_str().unwrap().starts_with("sha256:"), "{out}");
    assert!(
        v[0]["Manifest"].as_str().unwrap().starts_with("sha256:"),
        "{out}"
    );
    assert_eq!(v[0]["RootFS"]["type"], "layers", "{out}");
    assert!(v[0]["Size"].as_u64().unwrap() > 0, "{out}");
    // By manifest digest, as services pin it.
    let by_digest = c
        .ctl(0, &["image", "inspect", v[0]["Manifest"].as_str().unwrap()])
        .unwrap();
    assert!(by_digest.contains("team/copy:v2"), "{by_digest}");

    let err = c
        .ctl(0, &["image", "inspect", "nope:1"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope:1") && err.contains("image ls"), "{err}");
    let err = c
        .ctl(0, &["image", "tag", "nope:1", "x:1"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope:1"), "{err}");
    let err = c
        .ctl(0, &["image", "tag", "orig:1", "Bad Name"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("target"), "{err}");
}
