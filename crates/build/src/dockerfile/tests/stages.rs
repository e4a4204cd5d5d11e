//! Stage grouping, global ARGs, `--from` resolution and `--target` pruning.

use super::*;

const MULTI: &str = "\
ARG GO=1.23
ARG BASE=alpine:${GO}
FROM golang:${GO} AS deps
RUN go mod download
FROM deps AS build
COPY . .
RUN --mount=type=cache,target=/root/.cache,from=deps go build -o /out/app
FROM ${BASE} AS test
COPY --from=build /out/app /app
RUN --mount=type=bind,from=1,target=/src go test ./...
FROM scratch AS docs
COPY --from=nginx:latest /etc/nginx /nginx
FROM alpine
COPY --from=build /out/app /usr/bin/app
";

fn no_args(_: &str) -> Option<String> {
    None
}

fn analyze(source: &str) -> Result<Stages, Error> {
    parse_ok(source).stages(&no_args)
}

#[test]
fn groups_stages_and_resolves_references() {
    let stages = analyze(MULTI).unwrap();
    let names: Vec<Option<&str>> = stages.stages.iter().map(|s| s.name.as_deref()).collect();
    assert_eq!(
        names,
        [
            Some("deps"),
            Some("build"),
            Some("test"),
            Some("docs"),
            None
        ]
    );
    let bases: Vec<&Base> = stages.stages.iter().map(|s| &s.base).collect();
    assert_eq!(
        bases,
        [
            &Base::Image("golang:1.23".into()),
            &Base::Stage(0),
            &Base::Image("alpine:1.23".into()),
            &Base::Scratch,
            &Base::Image("alpine".into()),
        ]
    );
    let deps: Vec<&[usize]> = stages.stages.iter().map(|s| s.deps.as_slice()).collect();
    assert_eq!(deps, [&[][..], &[0], &[1], &[], &[1]]);
    assert_eq!(stages.stages[3].images, ["nginx:latest"]);
    assert_eq!(stages.stages[1].nodes, 5..7);
    assert_eq!(
        stages
            .global_args
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["GO", "BASE"]
    );
}

#[test]
fn target_needs_only_its_dependencies() {
    let stages = analyze(MULTI).unwrap();
    assert_eq!(stages.needed_for(None).unwrap(), [0, 1, 4]);
    assert_eq!(stages.needed_for(Some("test")).unwrap(), [0, 1, 2]);
    assert_eq!(stages.needed_for(Some("DOCS")).unwrap(), [3]);
    assert_eq!(stages.needed_for(Some("deps")).unwrap(), [0]);
    assert_eq!(
        stages.needed_for(Some("prod")).unwrap_err().to_string(),
        "target stage \"prod\" not found; named stages: deps, build, test, docs"
    );
}

#[test]
fn build_args_override_global_defaults() {
    let df = parse_ok(MULTI);
    let args = |name: &str| (name == "GO").then(|| "1.22".to_string());
    let stages = df.stages(&args).unwrap();
    assert_eq!(stages.stages[0].base, Base::Image("golang:1.22".into()));
    assert_eq!(
        stages.stages[2].base,
        Base::Image("alpine:1.22".into()),
        "BASE's default sees the new GO"
    );
}

#[test]
fn from_a_stage_name_only_looks_backwards() {
    let stages = analyze("FROM node AS node\nFROM node\n").unwrap();
    assert_eq!(stages.stages[0].base, Base::Image("node".into()));
    assert_eq!(stages.stages[1].base, Base::Stage(0));
    assert_eq!(stages.stages[1].deps, [0]);
    let via_arg = analyze("ARG STAGE=builder\nFROM a AS builder\nFROM ${STAGE}\n").unwrap();
    assert_eq!(via_arg.stages[1].base, Base::Stage(0));
}

#[test]
fn bad_references_are_located_errors() {
    let cases: &[(&str, &str)] = &[
        ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2:1: duplicate stage name \"x\": already used on line 1; rename one of the stages"),
        ("FROM a\nCOPY --from=3 / /\n", "Dockerfile:2:1: from \"3\" refers to stage 3, but stages are numbered 0 to 0"),
        ("FROM a\nCOPY --from=0 / /\n", "Dockerfile:2:1: from \"0\" refers to a stage that is not defined before this one; a stage can only use earlier stages"),
        ("FROM a\nCOPY --from=later / /\nFROM b AS later\n", "Dockerfile:2:1: from \"later\" refers to a stage that is not defined before this one; a stage can only use earlier stages"),
        ("FROM a AS me\nRUN --mount=from=me,target=/x true\n", "Dockerfile:2:1: from \"me\" refers to a stage that is not defined before this one; a stage can only use earlier stages"),
        ("ARG EMPTY=\nFROM ${EMPTY}\n", "Dockerfile:2:1: FROM \"${EMPTY}\" expands to an empty image name: give the build argument a value"),
        ("FROM ${BAD\n", "Dockerfile:1:1: cannot expand FROM image: missing '}' in variable substitution: write ${NAME}"),
        ("ARG A=${B\nFROM a\n", "Dockerfile:1:1: cannot expand ARG default: missing '}' in variable substitution: write ${NAME}"),
    ];
    for (source, want) in cases {
        assert_eq!(
            analyze(source).unwrap_err().to_string(),
            *want,
            "source {source:?}"
        );
    }
}

#[test]
fn platform_is_expanded_with_global_args() {
    let args = |name: &str| (name == "BUILDPLATFORM").then(|| "linux/arm64".to_string());
    let df = parse_ok("ARG BUILDPLATFORM\nFROM --platform=$BUILDPLATFORM alpine\n");
    assert_eq!(
        df.stages(&args).unwrap().stages[0].platform.as_deref(),
        Some("linux/arm64")
    );
}
