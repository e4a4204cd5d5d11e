//! Valid input: every instruction and form, directives, continuations and heredocs.

use std::time::Duration;

use super::*;

/// The instruction `line` parses into, after a `FROM scratch` line.
fn single(line: &str) -> Instruction {
    let source = format!("FROM scratch\n{line}\n");
    let mut nodes = instructions(&source);
    assert_eq!(nodes.len(), 2, "{line:?} should be one instruction");
    nodes.remove(1)
}

/// Parses each line after `FROM scratch` and compares with the expected instruction.
fn check_lines(cases: Vec<(&str, Instruction)>) {
    for (line, want) in cases {
        assert_eq!(single(line), want, "line {line:?}");
    }
}

/// RUN, CMD and ENTRYPOINT: shell form, exec (JSON) form, and the fallback to shell form.
#[test]
fn run_cmd_entrypoint_in_shell_and_exec_form() {
    check_lines(vec![
        ("RUN make all", run(shell("make all"))),
        ("run  make   all ", run(shell("make   all"))),
        ("RUN [\"make\", \"all\"]", run(exec(&["make", "all"]))),
        ("RUN [ \"a\" ]  ", run(exec(&["a"]))),
        ("RUN [\"unterminated\"", run(shell("[\"unterminated\""))),
        (
            "RUN ['single', 'quotes']",
            run(shell("['single', 'quotes']")),
        ),
        ("RUN -- --not-a-flag", run(shell("--not-a-flag"))),
        (
            "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
            Instruction::Cmd(exec(&["nginx", "-g", "daemon off;"])),
        ),
        ("CMD echo $HOME", Instruction::Cmd(shell("echo $HOME"))),
        ("CMD []", Instruction::Cmd(exec(&[]))),
        (
            "ENTRYPOINT [\"/init\"]",
            Instruction::Entrypoint(exec(&["/init"])),
        ),
        (
            "ENTRYPOINT exec top -b",
            Instruction::Entrypoint(shell("exec top -b")),
        ),
        (
            "RUN --network=none --security=insecure echo hi",
            Instruction::Run(RunArgs {
                network: Some(Network::None),
                security: Some(Security::Insecure),
                ..run_args(shell("echo hi"))
            }),
        ),
        (
            "RUN --network=host [\"ping\", \"x\"]",
            Instruction::Run(RunArgs {
                network: Some(Network::Host),
                ..run_args(exec(&["ping", "x"]))
            }),
        ),
        ("RUN \"--quoted\" stays", run(shell("\"--quoted\" stays"))),
    ]);
}

/// ENV, LABEL and ARG: `k=v` lists (raw, quotes kept) and the legacy `k v` form.
#[test]
fn env_label_arg_pairs() {
    check_lines(vec![
        (
            "ENV A=1 B=\"two words\" C=a\\ b",
            Instruction::Env(kv(&[("A", "1"), ("B", "\"two words\""), ("C", "a\\ b")])),
        ),
        (
            "ENV PATH /usr/local/bin:$PATH",
            Instruction::Env(kv(&[("PATH", "/usr/local/bin:$PATH")])),
        ),
        (
            "ENV GREETING hello   world",
            Instruction::Env(kv(&[("GREETING", "hello   world")])),
        ),
        ("ENV EMPTY=", Instruction::Env(kv(&[("EMPTY", "")]))),
        (
            "LABEL \"com.example.vendor\"=\"ACME\" version=1.0",
            Instruction::Label(kv(&[
                ("\"com.example.vendor\"", "\"ACME\""),
                ("version", "1.0"),
            ])),
        ),
        (
            "LABEL description \"a b\"",
            Instruction::Label(kv(&[("description", "\"a b\"")])),
        ),
        (
            "ARG VERSION=1.2 TARGETOS DEBUG=",
            Instruction::Arg(vec![
                ArgDecl {
                    name: "VERSION".into(),
                    default: Some("1.2".into()),
                },
                ArgDecl {
                    name: "TARGETOS".into(),
                    default: None,
                },
                ArgDecl {
                    name: "DEBUG".into(),
                    default: Some(String::new()),
                },
            ]),
        ),
    ]);
}

/// WORKDIR, USER, STOPSIGNAL, MAINTAINER, EXPOSE, VOLUME, SHELL.
#[test]
fn single_value_and_list_instructions() {
    check_lines(vec![
        ("WORKDIR /app", Instruction::Workdir("/app".into())),
        (
            "WORKDIR /path with spaces",
            Instruction::Workdir("/path with spaces".into()),
        ),
        ("USER app:staff", Instruction::User("app:staff".into())),
        (
            "STOPSIGNAL SIGTERM",
            Instruction::StopSignal("SIGTERM".into()),
        ),
        (
            "MAINTAINER Jane <jane@example.com>",
            Instruction::Maintainer("Jane <jane@example.com>".into()),
        ),
        (
            "EXPOSE 80 443/tcp 53/udp",
            Instruction::Expose(strings(&["80", "443/tcp", "53/udp"])),
        ),
        (
            "VOLUME /data /logs",
            Instruction::Volume(strings(&["/data", "/logs"])),
        ),
        (
            "VOLUME [\"/data\", \"/var/log\"]",
            Instruction::Volume(strings(&["/data", "/var/log"])),
        ),
        (
            "SHELL [\"powershell\", \"-command\"]",
            Instruction::Shell(strings(&["powershell", "-command"])),
        ),
    ]);
}

/// HEALTHCHECK NONE and CMD with every flag.
#[test]
fn healthcheck_forms() {
    let secs = Duration::from_secs;
    check_lines(vec![
        ("HEALTHCHECK NONE", Instruction::Healthcheck(Healthcheck::None)),
        (
            "HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=500ms --retries=3 CMD curl -f http://localhost/",
            Instruction::Healthcheck(Healthcheck::Cmd(HealthcheckCmd {
                command: shell("curl -f http://localhost/"),
                interval: Some(secs(30)),
                timeout: Some(secs(3)),
                start_period: Some(secs(60)),
                start_interval: Some(Duration::from_millis(500)),
                retries: Some(3),
            })),
        ),
        (
            "healthcheck --interval=0s cmd [\"/bin/check\"]",
            Instruction::Healthcheck(Healthcheck::Cmd(HealthcheckCmd {
                command: exec(&["/bin/check"]),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            })),
        ),
    ]);
}

/// COPY and ADD: flags, several sources, JSON form.
#[test]
fn copy_and_add_forms() {
    check_lines(vec![
        ("COPY . /app/", copy(&["."], "/app/")),
        ("COPY a.txt b.txt /dst/", copy(&["a.txt", "b.txt"], "/dst/")),
        (
            "COPY [\"my file.txt\", \"/dst dir/\"]",
            Instruction::Copy(CopyArgs {
                from: None,
                parents: false,
                transfer: Transfer { json_form: true, ..transfer(paths(&["my file.txt"]), "/dst dir/") },
            }),
        ),
        (
            "COPY --from=builder --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=tmp ./out /srv",
            Instruction::Copy(CopyArgs {
                from: Some("builder".into()),
                parents: true,
                transfer: Transfer {
                    chown: Some("app:app".into()),
                    chmod: Some("0755".into()),
                    link: true,
                    exclude: strings(&["*.md", "tmp"]),
                    ..transfer(paths(&["./out"]), "/srv")
                },
            }),
        ),
        ("COPY --link=false a b", copy(&["a"], "b")),
        (
            "ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chown=1000 https://example.com/x.tar.gz /x/",
            Instruction::Add(AddArgs {
                checksum: Some("sha256:abc".into()),
                keep_git_dir: true,
                unpack: Some(false),
                transfer: Transfer { chown: Some("1000".into()), ..transfer(paths(&["https://example.com/x.tar.gz"]), "/x/") },
            }),
        ),
        (
            "ADD [\"a\", \"b\"]",
            Instruction::Add(AddArgs {
                checksum: None,
                keep_git_dir: false,
                unpack: None,
                transfer: Transfer { json_form: true, ..transfer(paths(&["a"]), "b") },
            }),
        ),
    ]);
}

fn run_args(command: CommandLine) -> RunArgs {
    match run(command) {
        Instruction::Run(args) => args,
        _ => unreachable!("run() builds a RUN"),
    }
}

#[test]
fn from_forms() {
    let cases: Vec<(&str, FromArgs)> = vec![
        (
            "FROM alpine:3.20",
            FromArgs {
                image: "alpine:3.20".into(),
                stage_name: None,
                platform: None,
            },
        ),
        (
            "FROM scratch",
            FromArgs {
                image: "scratch".into(),
                stage_name: None,
                platform: None,
            },
        ),
        (
            "from golang AS Build",
            FromArgs {
                image: "golang".into(),
                stage_name: Some("build".into()),
                platform: None,
            },
        ),
        (
            "FROM --platform=$BUILDPLATFORM golang:1.23 as build-env.1",
            FromArgs {
                image: "golang:1.23".into(),
                stage_name: Some("build-env.1".into()),
                platform: Some("$BUILDPLATFORM".into()),
            },
        ),
        (
            "FROM ${BASE}",
            FromArgs {
                image: "${BASE}".into(),
                stage_name: None,
                platform: None,
            },
        ),
    ];
    for (line, want) in cases {
        assert_eq!(
            instructions(line),
            [Instruction::From(want)],
            "line {line:?}"
        );
    }
    assert!(FromArgs {
        image: "scratch".into(),
        stage_name: None,
        platform: None
    }
    .is_scratch());
}

#[test]
fn run_mounts_are_parsed() {
    let Instruction::Run(args) =
        single("RUN --mount=type=cache,target=/root/.cache/go-build --mount=type=secret,id=tok,env=TOKEN go build")
    else {
        panic!("not RUN");
    };
    assert_eq!(args.command, shell("go build"));
    let kinds: Vec<MountType> = args
        .mounts
        .iter()
        .map(|m| m.mount.as_ref().unwrap().kind)
        .collect();
    assert_eq!(kinds, [MountType::Cache, MountType::Secret]);
    let Instruction::Run(args) =
        single("RUN --mount=type=bind,from=build,target=/src,source=${SRC} ls")
    else {
        panic!("not RUN");
    };
    assert_eq!(
        (
            args.mounts[0].from.as_deref(),
            args.mounts[0].mount.as_ref()
        ),
        (Some("build"), None)
    );
}

#[test]
fn onbuild_keeps_the_parsed_trigger() {
    let Instruction::Onbuild(onbuild) = single("ONBUILD RUN echo hi") else {
        panic!("not ONBUILD");
    };
    assert_eq!(*onbuild.trigger, run(shell("echo hi")));
    assert_eq!(onbuild.expression, "RUN echo hi");
    let Instruction::Onbuild(onbuild) = single("onbuild COPY --chown=a . /app") else {
        panic!("not ONBUILD");
    };
    let Instruction::Copy(copy) = *onbuild.trigger else {
        panic!("trigger not COPY");
    };
    assert_eq!(copy.transfer.chown.as_deref(), Some("a"));
}

#[test]
fn directives_are_read_only_at_the_top() {
    let df = parse_ok("# syntax=docker/dockerfile:1.7\n#ESCAPE = `\n# check=skip=all\nFROM a\n");
    assert_eq!(
        df.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(df.directives.escape, '`');
    assert_eq!(df.directives.check.as_deref(), Some("skip=all"));

    let after_comment = parse_ok("# a comment\n# escape=`\nFROM a\n");
    assert_eq!(after_comment.directives.escape, '\\');
    let after_blank = parse_ok("\n# escape=`\nFROM a\n");
    assert_eq!(after_blank.directives.escape, '\\');
    let after_unknown = parse_ok("# unknown=x\n# escape=`\nFROM a\n");
    assert_eq!(after_unknown.directives.escape, '\\');
    let after_instruction = parse_ok("FROM a\n# escape=`\nRUN a \\\n b\n");
    assert_eq!(after_instruction.nodes[1].instruction, run(shell("a  b")));
    let indented = parse_ok("  # escape=`\nFROM a\n");
    assert_eq!(indented.directives.escape, '`');
}

#[test]
fn continuations_join_lines_and_skip_comments_and_blanks() {
    let df = parse_ok("FROM a\nRUN apt-get update \\\n  # a comment\n\n    && apt-get install -y curl \\  \n && echo done\nRUN next\n");
    assert_eq!(
        df.nodes[1].instruction,
        run(shell(
            "apt-get update     && apt-get install -y curl  && echo done"
        ))
    );
    assert_eq!((df.nodes[1].line, df.nodes[1].end_line), (2, 6));
    assert_eq!(df.nodes[2].line, 7);
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].line, 2);
    let escaped = parse_ok("FROM a\nRUN echo foo\\\\\nRUN two\n");
    assert_eq!(
        escaped.nodes.len(),
        3,
        "an escaped escape does not continue the line"
    );
    let at_eof = parse_ok("FROM a\nRUN echo \\");
    assert_eq!(at_eof.nodes[1].instruction, run(shell("echo")));
    let flags_across = parse_ok("FROM a\nCOPY \\\n  --from=b \\\n  /x /y\n");
    assert!(
        matches!(&flags_across.nodes[1].instruction, Instruction::Copy(c) if c.from.as_deref() == Some("b"))
    );
}

#[test]
fn windows_file_with_backtick_escape() {
    let source = "# escape=`\r\n\r\nFROM mcr.microsoft.com/windows/servercore:ltsc2022\r\nSHELL [\"powershell\", \"-Command\"]\r\nCOPY testfile.txt c:\\\r\nRUN New-Item -ItemType Directory C:\\Example `\r\n    ; Copy-Item c:\\testfile.txt C:\\Example\r\nENV DIR=C:\\Program` Files\r\nWORKDIR c:\\app\r\n";
    let df = parse_ok(source);
    assert_eq!(df.directives.escape, '`');
    let got: Vec<Instruction> = df.nodes.into_iter().map(|n| n.instruction).collect();
    assert_eq!(
        got,
        [
            from("mcr.microsoft.com/windows/servercore:ltsc2022"),
            Instruction::Shell(strings(&["powershell", "-Command"])),
            copy(&["testfile.txt"], "c:\\"),
            run(shell("New-Item -ItemType Directory C:\\Example     ; Copy-Item c:\\testfile.txt C:\\Example")),
            Instruction::Env(kv(&[("DIR", "C:\\Program` Files")])),
            Instruction::Workdir("c:\\app".into()),
        ]
    );
}

#[test]
fn heredocs_keep_their_bodies() {
    let source = "FROM a\nRUN <<EOF\napt-get update\n  echo $HOME\nEOF\nRUN <<-EOT bash\n\t\tset -e\n\techo hi\n\tEOT\nCOPY <<\"CONF\" <<two /etc/\nkey=$value\nCONF\nsecond\ntwo\nRUN cat <<A 3<<'B'\na\nA\nb\nB\nCMD done\n";
    let df = parse_ok(source);
    let got: Vec<Instruction> = df.nodes.iter().map(|n| n.instruction.clone()).collect();
    let run_with = |command: &str, heredocs: Vec<Heredoc>| {
        Instruction::Run(RunArgs {
            heredocs,
            ..run_args(shell(command))
        })
    };
    let quoted = Heredoc {
        expand: false,
        ..heredoc("CONF", "key=$value\n")
    };
    let copy = Instruction::Copy(CopyArgs {
        from: None,
        parents: false,
        transfer: transfer(
            vec![
                Source::Heredoc(quoted),
                Source::Heredoc(heredoc("two", "second\n")),
            ],
            "/etc/",
        ),
    });
    assert_eq!(
        got,
        [
            from("a"),
            run_with(
                "<<EOF",
                vec![heredoc("EOF", "apt-get update\n  echo $HOME\n")]
            ),
            run_with(
                "<<-EOT bash",
                vec![Heredoc {
                    chomp: true,
                    ..heredoc("EOT", "set -e\necho hi\n")
                }]
            ),
            copy,
            run_with(
                "cat <<A 3<<'B'",
                vec![
                    heredoc("A", "a\n"),
                    Heredoc {
                        fd: 3,
                        expand: false,
                        ..heredoc("B", "b\n")
                    }
                ]
            ),
            Instruction::Cmd(shell("done")),
        ]
    );
    assert_eq!((df.nodes[1].line, df.nodes[1].end_line), (2, 5));
    assert_eq!(df.nodes[5].line, 20);
}

#[test]
fn heredocs_are_not_read_for_json_form_or_other_instructions() {
    let df = parse_ok("FROM a\nRUN [\"cat\", \"<<EOF\"]\nCMD cat <<EOF\nLABEL a=b\n");
    assert_eq!(df.nodes.len(), 4);
    assert_eq!(df.nodes[1].instruction, run(exec(&["cat", "<<EOF"])));
}

#[test]
fn onbuild_heredoc_is_read_and_kept_in_the_expression() {
    let df = parse_ok("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
    let Instruction::Onbuild(onbuild) = &df.nodes[1].instruction else {
        panic!("not ONBUILD");
    };
    assert_eq!(onbuild.expression, "RUN <<EOF\necho hi\nEOF");
    assert!(
        matches!(&*onbuild.trigger, Instruction::Run(r) if r.heredocs == [heredoc("EOF", "echo hi\n")])
    );
}

#[test]
fn file_level_details() {
    let df = parse_ok("\u{feff}ARG BASE=alpine\nFROM $BASE\nMAINTAINER me\n");
    assert_eq!(df.nodes.len(), 3);
    assert_eq!(df.warnings.len(), 1, "MAINTAINER is deprecated");
    assert_eq!((df.nodes[1].line, df.nodes[1].column), (2, 1));
    let indented = parse_ok("FROM a\n   RUN x\n");
    assert_eq!((indented.nodes[1].line, indented.nodes[1].column), (2, 4));
    assert_eq!(indented.nodes[1].original, "RUN x");
    let lossy = parse_bytes(b"FROM a\nRUN echo \xff\n", "Dockerfile").unwrap();
    assert_eq!(lossy.nodes[1].instruction, run(shell("echo \u{fffd}")));
    let lone_continuation = parse_ok("FROM a\n\\\nRUN x\n");
    assert_eq!(lone_continuation.nodes.len(), 2);
}

#[test]
fn which_instructions_expand_variables() {
    let expanding = [
        "ADD",
        "COPY",
        "ENV",
        "EXPOSE",
        "FROM",
        "LABEL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
        "ARG",
    ];
    let source = "ARG A\nFROM a\nADD a b\nCOPY a b\nENV a=b\nEXPOSE 1\nLABEL a=b\nSTOPSIGNAL 9\nUSER u\nVOLUME /v\nWORKDIR /w\nRUN r\nCMD c\nENTRYPOINT e\nSHELL [\"s\"]\nHEALTHCHECK NONE\nONBUILD COPY a b\nMAINTAINER m\n";
    for node in parse_ok(source).nodes {
        let name = node.instruction.name();
        assert_eq!(
            expands_variables(&node.instruction),
            expanding.contains(&name),
            "{name}"
        );
    }
}

#[test]
fn ports_and_users_split_after_expansion() {
    let tcp = |start, end| {
        Ok(PortSpec {
            start,
            end,
            protocol: Protocol::Tcp,
        })
    };
    assert_eq!(parse_port("80"), tcp(80, 80));
    assert_eq!(parse_port("8000-8010/TCP"), tcp(8000, 8010));
    assert_eq!(parse_port("53/udp").map(|p| p.protocol), Ok(Protocol::Udp));
    for bad in ["0", "70000", "80/icmp", "9-1", "", "x"] {
        assert!(parse_port(bad).is_err(), "{bad:?}");
    }
    assert_eq!(split_user("app:staff"), ("app", Some("staff")));
    assert_eq!(split_user("1000"), ("1000", None));
}
