//! The `swarmctl` binary's answers that need no server: usage errors exit with 2 and name
//! the offending option; a refused setting exits 1 before anything is sent.

use std::process::Command;

fn swarmctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        // Nothing listens here: an error about connecting means the command got that far.
        .args(["-H", "unix:///nonexistent/swarmd.sock"])
        .args(args)
        .output()
        .expect("run swarmctl")
}

#[test]
fn unknown_option_before_the_image_exits_2_naming_it() {
    let o = swarmctl(&[
        "service", "create", "--name", "pub", "-z", "8080:80", "busybox", "httpd",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unexpected argument '-z'"), "{err}");
    assert!(
        !err.contains("cannot connect"),
        "refused before connecting: {err}"
    );
}

#[test]
fn settings_the_mode_ignores_are_refused_before_anything_is_sent() {
    for (args, says) in [
        (
            &[
                "service",
                "create",
                "--mode",
                "global-job",
                "--replicas",
                "3",
                "busybox",
            ][..],
            "--replicas can only be used with replicated",
        ),
        (
            &["service", "create", "--max-concurrent", "2", "busybox"][..],
            "--max-concurrent can only be used with --mode replicated-job",
        ),
        (
            &[
                "service",
                "create",
                "--mode",
                "global",
                "--update-order",
                "start-first",
                "busybox",
            ][..],
            "start-first update order does not apply to a global service",
        ),
    ] {
        let o = swarmctl(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let o = swarmctl(&[
        "service",
        "update",
        "--rollback",
        "--limit-memory",
        "64m",
        "web",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
}
