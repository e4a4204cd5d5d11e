//! Unit tests of the runc-style command line (argument parsing, log records, pid files).

use super::*;

fn args(v: &[&str]) -> Result<Args, CliError> {
    parse(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn parses_runc_style_arguments() {
    let a = args(&[
        "--root",
        "/tmp/r",
        "--log",
        "/tmp/l.json",
        "--log-format=json",
        "--debug",
        "run",
        "--bundle=/b",
        "--pid-file",
        "/p",
        "--no-new-keyring",
        "-d",
        "c1",
    ])
    .unwrap();
    assert_eq!(
        a.globals,
        Globals {
            root: "/tmp/r".into(),
            log: Some("/tmp/l.json".into()),
            log_json: true,
            debug: true,
        }
    );
    assert_eq!((a.cmd.as_str(), a.positional[0].as_str()), ("run", "c1"));
    assert_eq!(a.bundle, Some(PathBuf::from("/b")));
    assert_eq!(a.pid_file, Some(PathBuf::from("/p")));
    assert!(a.detach);
    assert!(args(&["delete", "-f", "c1"]).unwrap().force);
    let a = args(&["kill", "--all", "c1", "KILL"]).unwrap();
    assert!(a.all);
    assert_eq!(a.positional, vec!["c1", "KILL"]);
    let a = args(&["list", "-q", "--format", "json"]).unwrap();
    assert!(a.quiet && a.format == "json");
    assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
    assert_eq!(parse_signal("term").unwrap(), 15);
    assert!(parse_signal("NOPE").is_err());
}

#[test]
fn runc_options_without_support_are_refused_not_ignored() {
    for (argv, flag) in [
        (
            &["--systemd-cgroup", "create", "c1"][..],
            "--systemd-cgroup",
        ),
        (&["--criu", "/usr/sbin/criu", "create", "c1"][..], "--criu"),
        (&["create", "--no-pivot", "c1"][..], "--no-pivot"),
        (
            &["create", "--systemd-cgroup", "c1"][..],
            "--systemd-cgroup",
        ),
    ] {
        match args(argv) {
            Err(CliError::Unsupported { flag: f, why }) => {
                assert_eq!(f, flag, "{argv:?}");
                assert!(!why.is_empty());
            }
            other => panic!("{argv:?}: {other:?}"),
        }
    }
    let a = args(&["run", "--console-socket=/s.sock", "--detach", "c1"]).unwrap();
    assert_eq!(a.console_socket, Some(PathBuf::from("/s.sock")));
    let e = args(&["start", "--console-socket", "/s", "c1"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--console-socket"), "{e}");
}

#[test]
fn options_are_checked_against_their_command() {
    for (argv, says) in [
        (
            &["start", "--all", "c1"][..],
            "unknown option --all for start",
        ),
        (&["kill", "-9", "c1"][..], "unknown option -9 for kill"),
        (
            &["delete", "--detach", "c1"][..],
            "unknown option --detach for delete",
        ),
        (
            &["state", "--pid-file", "/p", "c1"][..],
            "unknown option --pid-file",
        ),
        (
            &["create", "--preserve-fds", "2", "c1"][..],
            "unknown option --preserve-fds",
        ),
        (
            &["create", "--root", "/r", "c1"][..],
            "--root is a global option",
        ),
        (&["--log-format", "xml", "list"][..], "use text or json"),
        (
            &["--rootless", "true", "list"][..],
            "unknown global option --rootless",
        ),
        (&["list", "--format", "yaml"][..], "use table or json"),
        (&["--root", "/r"][..], "missing command"),
    ] {
        let e = args(argv).unwrap_err().to_string();
        assert!(e.contains(says), "{argv:?}: {e}");
    }
    // `--` ends the options.
    assert_eq!(args(&["state", "--", "-c"]).unwrap().positional, vec!["-c"]);
}

#[test]
fn exec_takes_runc_shim_options_and_a_command_after_the_id() {
    let a = args(&[
        "exec",
        "--process",
        "/b/p.json",
        "--detach",
        "--pid-file",
        "/b/pid",
        "c1",
    ])
    .unwrap();
    assert_eq!(a.process, Some(PathBuf::from("/b/p.json")));
    assert!(a.detach);
    assert_eq!(a.pid_file, Some(PathBuf::from("/b/pid")));
    assert_eq!(a.positional, vec!["c1"]);
    // Options of the command are the command's.
    let a = args(&["exec", "c1", "ls", "-l", "--all"]).unwrap();
    assert_eq!(a.positional, vec!["c1", "ls", "-l", "--all"]);
    let a = args(&["exec", "-t", "--console-socket", "/s", "c1", "sh"]).unwrap();
    assert!(a.tty);
    assert_eq!(a.console_socket, Some(PathBuf::from("/s")));
    assert_eq!(a.positional, vec!["c1", "sh"]);
    assert!(args(&["ps", "--format", "json", "c1"]).is_ok());
}

#[test]
fn log_records_are_runc_shaped() {
    let t = tempfile::tempdir().unwrap();
    for json in [true, false] {
        let p = t.path().join(format!("log-{json}"));
        let g = Globals {
            root: t.path().into(),
            log: Some(p.clone()),
            log_json: json,
            debug: false,
        };
        let l = Logger::open(&g).unwrap();
        l.debug(|| "not written without --debug".into());
        l.error("container \"c1\" not found");
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        if json {
            let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
            assert_eq!(v["level"], "error");
            assert_eq!(v["msg"], "container \"c1\" not found");
            assert!(v["time"].as_str().unwrap().ends_with('Z'));
        } else {
            assert!(text.starts_with("time=\""), "{text}");
            assert!(
                text.contains(r#"level=error msg="container \"c1\" not found""#),
                "{text}"
            );
        }
    }
}

#[test]
fn pid_file_is_written_whole_or_reported() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("init.pid");
    write_pid_file(&p, 4242).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "4242");
    let e = write_pid_file(&t.path().join("no/such/dir/pid"), 1).unwrap_err();
    assert!(matches!(e, CliError::File { .. }), "{e}");
}
