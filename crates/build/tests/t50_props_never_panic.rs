//! Property tests: no input makes the parser, the expander or the ignore matcher panic,
//! and words with nothing to expand come back unchanged.

use proptest::prelude::*;
use swarm_build::dockerfile::{parse, parse_bytes, Stages};
use swarm_build::ignore::IgnoreMatcher;
use swarm_build::shell::{expand, expand_words, Lexer};

/// Fragments that exercise the parser's corners: keywords, flags, quotes, brackets,
/// heredocs, continuations, directives.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FROM ".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ADD ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("ENV ".to_string()),
        Just("ARG ".to_string()),
        Just("SHELL ".to_string()),
        Just(" AS ".to_string()),
        Just("--mount=type=cache,target=/x ".to_string()),
        Just("--from=".to_string()),
        Just("--".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'EOF'".to_string()),
        Just("EOF".to_string()),
        Just("\\\n".to_string()),
        Just("`\n".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("#".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("${".to_string()),
        Just("}".to_string()),
        Just("=".to_string()),
        Just("\t".to_string()),
        "[a-z0-9 ./:-]{0,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn dockerfile_like() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..60).prop_map(|parts| parts.concat())
}

fn no_vars(_: &str) -> Option<String> {
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics_on_structured_noise(source in dockerfile_like()) {
        if let Ok(df) = parse(&source, "Dockerfile") {
            let _ = Stages::analyze(&df, &no_vars).map(|s| s.needed_for(None));
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_bytes(&bytes, "Dockerfile");
        let _ = parse_bytes(&[b"FROM a\n".as_slice(), &bytes].concat(), "Dockerfile");
    }

    #[test]
    fn parser_errors_point_inside_the_file(source in dockerfile_like()) {
        if let Err(e) = parse(&source, "Dockerfile") {
            let lines = source.split_inclusive('\n').count().max(1);
            prop_assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}: {e}", e.line);
            prop_assert!(e.column >= 1);
        }
    }

    #[test]
    fn expand_never_panics(word in "(\\$|\\{|\\}|:|-|\\+|\\?|'|\"|\\\\|`|[a-z ]){0,40}") {
        let _ = expand(&word, no_vars);
        let _ = expand_words(&word, |n| Some(format!("<{n}>")));
        let _ = Lexer::new('`').expand(&word, no_vars);
    }

    #[test]
    fn expand_leaves_plain_words_alone(word in "[^$'\"\\\\]{0,40}") {
        prop_assert_eq!(expand(&word, |_| Some("X".to_string())).unwrap(), word);
    }

    #[test]
    fn ignore_matcher_never_panics(
        patterns in prop::collection::vec("(\\*|\\*\\*|\\?|\\[|\\]|\\^|-|!|/|\\\\|\\.|[a-c]){0,12}", 0..8),
        path in "[a-c*]{1,3}(/[a-c*]{1,3}){0,3}",
    ) {
        if let Ok(m) = IgnoreMatcher::from_patterns(&patterns) {
            let excluded = m.excluded(&path);
            if m.can_skip_dir(&path) {
                prop_assert!(excluded, "a skippable dir must be excluded");
                let below = format!("{path}/c/a");
                prop_assert!(m.excluded(&below), "skipped {path:?} but {below:?} is included");
            }
        }
    }

    #[test]
    fn ignore_parse_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = IgnoreMatcher::parse(&text).map(|m| m.excluded("a/b"));
    }
}

#[test]
fn deep_continuations_and_long_heredocs_are_fine() {
    let continued = format!("FROM a\nRUN {}true\n", "x \\\n".repeat(50_000));
    let df = parse(&continued, "Dockerfile").expect("long continuation parses");
    assert_eq!(df.nodes[1].end_line, 50_002);
    let heredoc = format!("FROM a\nRUN <<EOF\n{}EOF\n", "line\n".repeat(100_000));
    assert!(parse(&heredoc, "Dockerfile").is_ok());
    let nested_json = format!("FROM a\nRUN {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    assert!(
        parse(&nested_json, "Dockerfile").is_ok(),
        "deep JSON falls back to shell form"
    );
    let unbalanced = format!(
        "FROM a\nENV A=\"{}\nCOPY {} /x\n",
        "'".repeat(1_000),
        "[".repeat(1_000)
    );
    let _ = parse(&unbalanced, "Dockerfile");
}

#[test]
fn many_stages_and_references_stay_linear() {
    let stages = 40_000;
    let mut source = String::from("FROM base AS s0\n");
    for i in 1..stages {
        source.push_str(&format!(
            "FROM s{} AS s{i}\nCOPY --from=s{} / /\n",
            i - 1,
            i / 2
        ));
    }
    let df = parse(&source, "Dockerfile").expect("parses");
    let analyzed = Stages::analyze(&df, &no_vars).expect("stages resolve");
    assert_eq!(analyzed.needed_for(None).expect("last stage").len(), stages);
    assert_eq!(
        analyzed.needed_for(Some("s3")).expect("named"),
        [0, 1, 2, 3]
    );
}
