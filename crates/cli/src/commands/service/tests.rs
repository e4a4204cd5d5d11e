//! What `swarmctl service ...` makes of a command line, without a server: clap's parse, then
//! the spec the command would write.

use super::*;
use crate::{Cli, Command};
use clap::error::ErrorKind;
use clap::Parser;
use swarm_types::spec::{ServiceMode, ServiceSpec};

fn parse(args: &[&str]) -> Result<ServiceCmd, clap::Error> {
    let mut v = vec!["swarmctl", "service"];
    v.extend_from_slice(args);
    match Cli::try_parse_from(v)?.command {
        Command::Service(c) => Ok(c),
        other => panic!("not a service command: {other:?}"),
    }
}

fn usage_error(args: &[&str]) -> clap::Error {
    match parse(args) {
        Ok(c) => panic!("{args:?} parsed as {c:?}"),
        Err(e) => e,
    }
}

fn create_spec(args: &[&str]) -> anyhow::Result<ServiceSpec> {
    let mut v = vec!["create"];
    v.extend_from_slice(args);
    match parse(&v).map_err(|e| anyhow::anyhow!("{e}"))? {
        ServiceCmd::Create(a) => create::build(&a),
        _ => unreachable!(),
    }
}

#[test]
fn split_command_honours_quotes() {
    assert_eq!(
        split_command(r#"sh -c "echo hi; sleep 1" 'a b'"#).unwrap(),
        vec!["sh", "-c", "echo hi; sleep 1", "a b"]
    );
    assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
    assert_eq!(split_command("''").unwrap(), vec![""]);
    assert!(split_command("'open").is_err());
}

#[test]
fn an_unknown_option_before_the_image_is_a_usage_error_naming_it() {
    // An unknown option was once taken as the image.
    for (args, named) in [
        (
            &[
                "create", "--name", "pub", "-z", "8080:80", "busybox", "httpd",
            ][..],
            "-z",
        ),
        (&["create", "--secret", "s", "busybox"][..], "--secret"),
        (
            &["create", "--name", "x", "--no-such-flag", "busybox"][..],
            "--no-such-flag",
        ),
        (&["update", "--secret-add", "s", "web"][..], "--secret-add"),
        (&["scale", "-x", "web=2"][..], "-x"),
        (&["rollback", "--detached", "web"][..], "--detached"),
    ] {
        let e = usage_error(args);
        assert_eq!(e.kind(), ErrorKind::UnknownArgument, "{args:?}: {e}");
        assert_eq!(e.exit_code(), 2, "{args:?}");
        assert!(e.to_string().contains(named), "{args:?}: {e}");
    }
}

#[test]
fn everything_after_the_image_is_the_containers_command() {
    let s = create_spec(&["--name", "lister", "busybox", "ls", "-l", "--name", "x"]).unwrap();
    assert_eq!(s.name, "lister");
    assert_eq!(s.task.container.image, "busybox");
    assert_eq!(s.task.container.args, vec!["ls", "-l", "--name", "x"]);
    // `--` ends the options; an image that looks like an option is still refused.
    let e = create_spec(&["--", "-p", "busybox"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid image reference \"-p\""), "{e}");
}

#[test]
fn detach_takes_docker_s_forms_and_quiet_is_parsed_where_it_prints_the_id() {
    for (args, want) in [
        (&["create", "-d", "busybox"][..], Some(true)),
        (&["create", "--detach=false", "busybox"][..], Some(false)),
        (&["create", "--detach=true", "busybox"][..], Some(true)),
        (&["create", "busybox"][..], None),
    ] {
        match parse(args).unwrap() {
            ServiceCmd::Create(a) => assert_eq!(a.detach.detach, want, "{args:?}"),
            other => panic!("{other:?}"),
        }
    }
    match parse(&["update", "--detach=false", "--image", "busybox:2", "web"]).unwrap() {
        ServiceCmd::Update(a) => assert!(a.detach.follow(true), "--detach=false follows"),
        other => panic!("{other:?}"),
    }
    match parse(&["rollback", "-d", "web"]).unwrap() {
        ServiceCmd::Rollback(a) => assert!(!a.detach.follow(false)),
        other => panic!("{other:?}"),
    }
    match parse(&["scale", "--detach=false", "web=2"]).unwrap() {
        ServiceCmd::Scale(a) => assert!(a.detach.follow(false)),
        other => panic!("{other:?}"),
    }
    // `-d` takes no value: the next word stays an argument.
    match parse(&["create", "-d", "--name", "x", "busybox"]).unwrap() {
        ServiceCmd::Create(a) => assert_eq!(a.name.as_deref(), Some("x")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        usage_error(&["create", "--detach=maybe", "busybox"]).kind(),
        ErrorKind::InvalidValue
    );
    match parse(&["create", "-q", "busybox"]).unwrap() {
        ServiceCmd::Create(a) => assert!(a.quiet),
        other => panic!("{other:?}"),
    }
    match parse(&["update", "-q", "--image", "busybox:2", "web"]).unwrap() {
        ServiceCmd::Update(a) => assert!(a.quiet),
        other => panic!("{other:?}"),
    }
    match parse(&["rollback", "--quiet", "web"]).unwrap() {
        ServiceCmd::Rollback(a) => assert!(a.quiet),
        other => panic!("{other:?}"),
    }
}

#[test]
fn mode_flags_the_mode_does_not_use_are_refused() {
    for (args, says) in [
        (
            &["--mode", "global-job", "--replicas", "3", "busybox"][..],
            "--replicas can only be used with replicated",
        ),
        (
            &["--mode", "global", "--replicas", "3", "busybox"][..],
            "--replicas can only be used with replicated",
        ),
        (
            &["--max-concurrent", "2", "busybox"][..],
            "--max-concurrent can only be used with --mode replicated-job",
        ),
        (
            &["--mode", "global", "--max-concurrent", "2", "busybox"][..],
            "--max-concurrent",
        ),
        (
            &[
                "--mode",
                "global",
                "--update-order",
                "start-first",
                "busybox",
            ][..],
            "start-first",
        ),
        (
            &[
                "--mode",
                "global-job",
                "--rollback-order",
                "start-first",
                "busybox",
            ][..],
            "start-first",
        ),
        (
            &[
                "--mode",
                "replicated-job",
                "--update-parallelism",
                "2",
                "busybox",
            ][..],
            "remove the --update-* and --rollback-* options",
        ),
        (
            &[
                "--mode",
                "global",
                "--replicas-max-per-node",
                "2",
                "busybox",
            ][..],
            "--replicas-max-per-node",
        ),
    ] {
        let e = format!("{:#}", create_spec(args).unwrap_err());
        assert!(e.contains(says), "{args:?}: {e}");
    }
    // A negative count is a bad value, not an unknown option.
    let e = parse(&["create", "--replicas", "-1", "busybox"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueValidation, "{e}");
    assert!(e.to_string().contains("between 0"), "{e}");
    // And what they use is in the spec.
    let s = create_spec(&[
        "--mode",
        "replicated-job",
        "--replicas",
        "6",
        "--max-concurrent",
        "2",
        "busybox",
    ])
    .unwrap();
    assert_eq!(
        s.mode,
        ServiceMode::ReplicatedJob {
            max_concurrent: 2,
            total_completions: 6
        }
    );
    let s = create_spec(&["--mode", "global-job", "busybox"]).unwrap();
    assert_eq!(s.mode, ServiceMode::GlobalJob);
}

#[test]
fn update_rollback_refuses_every_other_change() {
    // Flags of each kind: update's own, the task template's, the service-level ones.
    for flag in [
        &["--image", "busybox:2"][..],
        &["--env-add", "A=1"][..],
        &["--force"][..],
        &["--limit-memory", "64m"][..],
        &["--workdir", "/tmp"][..],
        &["--restart-condition", "none"][..],
        &["--update-order", "start-first"][..],
        &["--health-cmd", "true"][..],
    ] {
        let mut args = vec!["update", "--rollback"];
        args.extend_from_slice(flag);
        args.push("web");
        let e = usage_error(&args);
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{args:?}: {e}");
        assert!(e.to_string().contains("--rollback"), "{args:?}: {e}");
    }
    match parse(&["update", "--rollback", "-q", "web"]).unwrap() {
        ServiceCmd::Update(a) => assert!(a.rollback && a.quiet),
        other => panic!("{other:?}"),
    }
}

#[test]
fn update_refuses_what_the_services_mode_ignores() {
    let update = |args: &[&str], mode: ServiceMode| {
        let mut v = vec!["update"];
        v.extend_from_slice(args);
        v.push("svc");
        let ServiceCmd::Update(a) = parse(&v).unwrap() else {
            unreachable!()
        };
        let mut spec = ServiceSpec::replicated("svc", "busybox", 1);
        spec.mode = mode;
        update::apply(&a, &mut spec, &[]).map(|_| spec)
    };
    let e = update(&["--update-order", "start-first"], ServiceMode::Global).unwrap_err();
    assert!(e.to_string().contains("start-first"), "{e}");
    let e = update(&["--replicas", "3"], ServiceMode::GlobalJob).unwrap_err();
    assert!(e.to_string().contains("--replicas"), "{e}");
    let s = update(
        &["--update-order", "start-first"],
        ServiceMode::Replicated { replicas: 2 },
    )
    .unwrap();
    assert_eq!(
        s.update_config.order,
        swarm_types::spec::UpdateOrder::StartFirst
    );
}
