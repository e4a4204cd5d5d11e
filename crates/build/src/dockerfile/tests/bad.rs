//! Invalid input: the exact error text, including `file:line:column`.

use super::*;

const FROM_USAGE: &str = "FROM [--platform=<platform>] <image> [AS <name>]";
const COPY_FLAGS: &str = "COPY accepts --from, --chown, --chmod, --link, --parents, --exclude";

/// Parses each source and compares the error text (`Dockerfile:` is prefixed to `want`).
fn check_errors(cases: Vec<(&str, String)>) {
    let mut failures = Vec::new();
    for (source, want) in &cases {
        let want = format!("Dockerfile:{want}");
        match parse(source, "Dockerfile") {
            Ok(_) => failures.push(format!("{source:?}: parsed, expected {want}")),
            Err(e) if e.to_string() != want => {
                failures.push(format!("{source:?}:\n   got  {e}\n   want {want}"))
            }
            Err(_) => {}
        }
    }
    let count = cases.len();
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Empty files, instructions before FROM, unknown instructions.
#[test]
fn file_structure_errors() {
    check_errors(vec![
        (
            "",
            "1:1: the file has no instructions: a Dockerfile starts with FROM <image>".into(),
        ),
        (
            "# only a comment\n\n",
            "1:1: the file has no instructions: a Dockerfile starts with FROM <image>".into(),
        ),
        (
            "RUN echo hi",
            "1:1: RUN before the first FROM: only ARG may come before FROM".into(),
        ),
        (
            "ARG A\nENV B=1\nFROM a",
            "2:1: ENV before the first FROM: only ARG may come before FROM".into(),
        ),
        (
            "ARG A=1\n",
            "1:1: no FROM instruction: add FROM <image> after the ARG lines".into(),
        ),
        (
            "FROM a\nRUNN make",
            "2:1: unknown instruction \"RUNN\" (did you mean RUN?)".into(),
        ),
        (
            "FROM a\n  CPY . /app",
            "2:3: unknown instruction \"CPY\" (did you mean COPY?)".into(),
        ),
        (
            "FROM a\n\tRUNN x",
            "2:2: unknown instruction \"RUNN\" (did you mean RUN?)".into(),
        ),
        ("FROM a\nFOO bar", "2:1: unknown instruction \"FOO\"".into()),
    ]);
}

/// FROM arguments and stage names.
#[test]
fn from_errors() {
    check_errors(vec![
        ("FROM", format!("1:1: FROM is missing arguments; usage: {FROM_USAGE}")),
        ("FROM a b", format!("1:8: unexpected argument \"b\" for FROM; usage: {FROM_USAGE}")),
        ("FROM a AS", format!("1:8: unexpected argument \"AS\" for FROM; usage: {FROM_USAGE}")),
        ("FROM a FOR b", format!("1:8: unexpected argument \"FOR\" for FROM; usage: {FROM_USAGE}")),
        ("FROM a AS b c", format!("1:13: unexpected argument \"c\" for FROM; usage: {FROM_USAGE}")),
        (
            "FROM a AS 1st",
            "1:11: invalid stage name \"1st\": it must start with a letter and contain only letters, digits, '-', '_' and '.'".into(),
        ),
    ]);
}

/// Unknown, repeated, valueless and non-boolean flags.
#[test]
fn flag_errors() {
    check_errors(vec![
        (
            "FROM --platfrom=linux/amd64 a",
            "1:6: unknown flag --platfrom for FROM (did you mean --platform?); FROM accepts --platform".into(),
        ),
        ("FROM a\nCOPY --form=b . /", format!("2:6: unknown flag --form for COPY (did you mean --from?); {COPY_FLAGS}")),
        ("FROM a\nCOPY --from=a --from=b . /", "2:15: --from is given twice for COPY; give it once".into()),
        ("FROM a\nCOPY --from . /", "2:6: --from needs a value: write --from=<value>".into()),
        ("FROM a\nCOPY --chmod=1 --exclude . /", "2:16: --exclude needs a value: write --exclude=<value>".into()),
        ("FROM a\nCOPY --link=maybe . /", "2:6: --link expects true or false, not \"maybe\"".into()),
        ("FROM a\nCOPY --link= . /", "2:6: --link needs a value: write --link=<value>".into()),
    ]);
}

/// Missing arguments, heredocs, JSON arrays, key=value lists.
#[test]
fn argument_errors() {
    check_errors(vec![
        ("FROM a\nCOPY onlyone", "2:1: COPY is missing arguments; usage: COPY [flags] <src>... <dest>".into()),
        ("FROM a\nADD", "2:1: ADD is missing arguments; usage: ADD [flags] <src>... <dest>".into()),
        ("FROM a\nADD --from=x a b", "2:5: unknown flag --from for ADD; ADD accepts --chown, --chmod, --link, --keep-git-dir, --checksum, --unpack, --exclude".into()),
        (
            "FROM a\nCOPY --from=$STAGE . /",
            "2:6: --from=\"$STAGE\" uses a variable, which is not supported: define a stage with FROM ${VAR} AS <name> and copy from that stage".into(),
        ),
        (
            "FROM a\nCOPY <<EOF <<EOF2\nx\nEOF\ny\nEOF2\n",
            "2:12: COPY cannot take a heredoc as its destination; put the destination path last".into(),
        ),
        ("FROM a\nRUN <<EOF\necho hi\n", "2:5: unterminated heredoc: add a line containing only EOF to end it".into()),
        ("FROM a\nRUN cat <<A <<B\na\nA\n", "2:13: unterminated heredoc: add a line containing only B to end it".into()),
        ("FROM a\nRUN [1, 2]", "2:5: RUN JSON array must contain only strings, e.g. [\"/bin/sh\", \"-c\", \"make\"]".into()),
        ("FROM a\nRUN", "2:1: RUN is missing arguments; usage: RUN [flags] <command> or RUN [flags] [\"executable\", \"arg\"]".into()),
        ("FROM a\nRUN []", "2:1: RUN is missing arguments; usage: RUN [flags] <command> or RUN [flags] [\"executable\", \"arg\"]".into()),
        ("FROM a\nCMD", "2:1: CMD is missing arguments; usage: CMD [\"executable\", \"arg\"] or CMD <command>".into()),
        ("FROM a\nSHELL /bin/bash -c", "2:7: SHELL needs the JSON array form, e.g. SHELL [\"/bin/sh\", \"-c\"]".into()),
        ("FROM a\nSHELL []", "2:1: SHELL is missing arguments; usage: SHELL [\"executable\", \"arg\"]".into()),
        ("FROM a\nENV A=1 B", "2:9: ENV expects <name>=<value> pairs, but \"B\" has no '='".into()),
        ("FROM a\nENV ÄÖ=1 B", "2:10: ENV expects <name>=<value> pairs, but \"B\" has no '='".into()),
        ("FROM a\nLABEL a=b c", "2:11: LABEL expects <name>=<value> pairs, but \"c\" has no '='".into()),
        ("FROM a\nENV ONLYKEY", "2:5: ENV ONLYKEY needs a value: write ENV ONLYKEY=<value>".into()),
        ("FROM a\nENV =x", "2:5: ENV name is empty: write ENV <name>=<value>".into()),
        ("FROM a\nARG =x", "2:5: ARG name is empty: write ARG <name>=<value>".into()),
        ("FROM a\nLABEL", "2:1: LABEL is missing arguments; usage: LABEL <key>=<value> ...".into()),
        ("FROM a\nWORKDIR", "2:1: WORKDIR is missing arguments; usage: WORKDIR <path>".into()),
        ("FROM a\nUSER --name=x root", "2:6: unknown flag --name for USER; USER takes no flags".into()),
        ("FROM a\nEXPOSE", "2:1: EXPOSE is missing arguments; usage: EXPOSE <port>[/<protocol>] ...".into()),
        ("FROM a\nVOLUME [\"\"]", "2:8: VOLUME path is empty".into()),
    ]);
}

/// HEALTHCHECK types, durations, retries; refused ONBUILD triggers.
#[test]
fn healthcheck_and_onbuild_errors() {
    check_errors(vec![
        ("FROM a\nHEALTHCHECK", "2:1: HEALTHCHECK is missing arguments; usage: HEALTHCHECK [flags] CMD <command> or HEALTHCHECK NONE".into()),
        ("FROM a\nHEALTHCHECK CHECK curl", "2:13: unknown HEALTHCHECK type \"CHECK\": expected CMD or NONE".into()),
        ("FROM a\nHEALTHCHECK NONE extra", "2:1: HEALTHCHECK NONE takes no arguments or flags".into()),
        ("FROM a\nHEALTHCHECK --retries=3 NONE", "2:1: HEALTHCHECK NONE takes no arguments or flags".into()),
        ("FROM a\nHEALTHCHECK CMD", "2:1: HEALTHCHECK CMD needs a command, e.g. HEALTHCHECK CMD curl -f http://localhost/".into()),
        ("FROM a\nHEALTHCHECK CMD []", "2:1: HEALTHCHECK CMD needs a command, e.g. HEALTHCHECK CMD curl -f http://localhost/".into()),
        ("FROM a\nHEALTHCHECK --interval=5 CMD true", "2:13: invalid --interval=\"5\": expected a duration such as 30s, 1m30s or 500ms".into()),
        ("FROM a\nHEALTHCHECK --timeout=10us CMD true", "2:13: invalid --timeout=\"10us\": must be 0 (the default) or at least 1ms".into()),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD true", "2:13: invalid --retries=\"-1\": expected a whole number from 0 to 2147483647".into()),
        ("FROM a\nONBUILD ONBUILD RUN x", "2:9: ONBUILD isn't allowed as an ONBUILD trigger".into()),
        ("FROM a\nONBUILD FROM b", "2:9: FROM isn't allowed as an ONBUILD trigger".into()),
        ("FROM a\nonbuild maintainer x", "2:9: MAINTAINER isn't allowed as an ONBUILD trigger".into()),
        ("FROM a\nONBUILD", "2:1: ONBUILD is missing arguments; usage: ONBUILD <instruction>".into()),
        ("FROM a\nONBUILD RUNN x", "2:9: unknown instruction \"RUNN\" (did you mean RUN?)".into()),
        ("FROM a\nONBUILD COPY --form=a b c", format!("2:14: unknown flag --form for COPY (did you mean --from?); {COPY_FLAGS}")),
    ]);
}

/// RUN --mount/--network/--security, errors on continuation lines, directives.
#[test]
fn run_flag_and_directive_errors() {
    check_errors(vec![
        ("FROM a\nRUN --mount=type=cache echo", "2:5: invalid --mount: type=cache mount needs target=<path>".into()),
        ("FROM a\nRUN --mount=type=nfs,target=/x echo", "2:5: invalid --mount: unsupported type \"nfs\": expected bind, cache, tmpfs, secret or ssh".into()),
        ("FROM a\nRUN --network=bridge x", "2:5: unsupported --network=\"bridge\": expected default, none or host".into()),
        ("FROM a\nRUN --security=root x", "2:5: unsupported --security=\"root\": expected sandbox or insecure".into()),
        (
            "FROM a\nRUN --mount=type=cache,target=/c \\\n  --network=wrong x",
            "3:3: unsupported --network=\"wrong\": expected default, none or host".into(),
        ),
        ("FROM a\nRUN [\"a\", \\\n  # comment\n  1]", "2:5: RUN JSON array must contain only strings, e.g. [\"/bin/sh\", \"-c\", \"make\"]".into()),
        ("# escape=x\nFROM a", "1:1: invalid escape directive \"x\": the escape character must be \\ or `".into()),
        ("# syntax=a\n#syntax=b\nFROM a", "2:1: the syntax parser directive is given twice; keep only one".into()),
    ]);
}

#[test]
fn errors_are_structured_and_name_the_callers_file() {
    let err = parse("FROM a\nRUNN x", "build/Dockerfile.dev").unwrap_err();
    assert_eq!(
        (err.file.as_str(), err.line, err.column),
        ("build/Dockerfile.dev", 2, 1)
    );
    assert_eq!(
        err.kind,
        ErrorKind::UnknownInstruction {
            name: "RUNN".into(),
            suggestion: Some("RUN")
        }
    );
}

#[test]
fn errors_never_echo_long_input() {
    let source = format!("FROM a\n{} y", "X".repeat(5000));
    let message = parse(&source, "Dockerfile").unwrap_err().to_string();
    assert!(
        message.len() < 200,
        "message too long: {} bytes",
        message.len()
    );
    assert!(message.contains('…'));
}

#[test]
fn sizes_are_bounded() {
    let long_line = format!("FROM a\nRUN {}", "x".repeat(70_000));
    assert_eq!(
        parse(&long_line, "Dockerfile").unwrap_err().to_string(),
        "Dockerfile:2:1: line is 70004 bytes; the limit is 65535 bytes: split it with line continuations"
    );
    let huge = "#\n".repeat(MAX_DOCKERFILE_BYTES / 2 + 1);
    assert_eq!(
        parse(&huge, "Dockerfile").unwrap_err().kind,
        ErrorKind::TooLarge {
            size: MAX_DOCKERFILE_BYTES + 2,
            limit: MAX_DOCKERFILE_BYTES
        }
    );
}
