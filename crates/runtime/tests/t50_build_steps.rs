//! What `docker build` does with each step, through the library API on real busybox
//! containers (root only): a RUN step's container writes, replaces and deletes files; its upper
//! directory becomes a layer; the step is committed on top of its parent with a new config and
//! a history entry; a config-only step adds no layer; and a container of the result sees
//! exactly what the steps left.

mod common;

use common::Harness;
use std::time::Duration;
use swarm_runtime::image::commit::Step;
use swarm_runtime::image::diff::write_layer;
use swarm_runtime::spec::{resolve_process, ProcessOverrides, RootfsSpec};
use swarm_runtime::ContainerSpec;

fn run(h: &Harness, spec: ContainerSpec) -> i32 {
    let id = spec.id.clone();
    h.rt().create(spec).unwrap();
    h.rt().start(&id).unwrap();
    h.rt()
        .wait(&id, Some(Duration::from_secs(30)))
        .unwrap()
        .code
}

/// A container of image `name` running `sh -c script` with the image's own config.
fn spec_of(h: &Harness, name: &str, id: &str, script: &str) -> ContainerSpec {
    let p = h.store.prepare(name).unwrap();
    let o = ProcessOverrides {
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    };
    ContainerSpec::new(
        id,
        RootfsSpec::Layers { lower: p.layers },
        resolve_process(&p.config, &o).unwrap(),
    )
}

#[test]
fn run_steps_become_layers_and_the_image_shows_what_they_left() {
    let h = Harness::new();
    let tmp = tempfile::tempdir().unwrap();

    // RUN: write, delete from the parent, create a directory.
    let script = "echo hi > /x && rm /bin/ls && mkdir -p /app && echo data > /app/d";
    assert_eq!(run(&h, spec_of(&h, "busybox:test", "step1", script)), 0);
    let upper = h
        .rt()
        .upper_dir("step1")
        .unwrap()
        .expect("a layered container");
    let layer = tmp.path().join("layer1.tar");
    let stats = write_layer(&upper, std::fs::File::create(&layer).unwrap()).unwrap();
    assert_eq!(stats.whiteouts, 1, "rm /bin/ls is one whiteout: {stats:?}");
    h.rt().remove("step1", true).unwrap();
    let mut config = h.image.clone();
    config.env.push("STEP=1".into());
    h.store
        .commit(
            &Step {
                parent: Some("busybox:test"),
                layer: Some(&layer),
                reuse: None,
                config: config.clone(),
                created_by: format!("RUN /bin/sh -c {script}"),
            },
            Some("built:1"),
        )
        .unwrap();

    // WORKDIR: a config-only step, no layer.
    config.working_dir = Some("/app".into());
    h.store
        .commit(
            &Step {
                parent: Some("built:1"),
                layer: None,
                reuse: None,
                config,
                created_by: "WORKDIR /app".into(),
            },
            Some("built:2"),
        )
        .unwrap();

    let base = h.store.prepare("busybox:test").unwrap();
    let built = h.store.prepare("built:2").unwrap();
    assert_eq!(built.layers.len(), base.layers.len() + 1);
    let history = h.store.history("built:2").unwrap();
    let empty: Vec<bool> = history.iter().map(|e| e.empty_layer).collect();
    assert_eq!(empty, vec![false, false, true], "{history:?}");
    assert_eq!(
        history.iter().filter(|e| !e.empty_layer).count(),
        built.layers.len(),
        "one non-empty history entry per layer (Docker checks it)"
    );

    let check = "cat /x; pwd; cat d; echo $STEP; ls /bin/ls 2>/dev/null || echo ls-gone";
    assert_eq!(run(&h, spec_of(&h, "built:2", "check", check)), 0);
    assert_eq!(h.log_text("check"), "hi\n/app\ndata\n1\nls-gone\n");
    // The parent is untouched.
    assert_eq!(
        run(
            &h,
            spec_of(&h, "busybox:test", "parent", "ls /bin/ls && test ! -e /x")
        ),
        0
    );
}
