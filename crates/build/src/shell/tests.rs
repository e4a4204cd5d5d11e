//! Variable substitution cases, modelled on BuildKit's shell lexer behaviour.

use super::*;

fn vars(name: &str) -> Option<String> {
    match name {
        "NAME" => Some("world".to_string()),
        "EMPTY" => Some(String::new()),
        "SPACED" => Some("a  b".to_string()),
        "DIR" => Some("/app".to_string()),
        _ => None,
    }
}

#[test]
fn expands_words_like_buildkit_process_word() {
    let cases: &[(&str, &str)] = &[
        ("plain", "plain"),
        ("$NAME", "world"),
        ("${NAME}", "world"),
        ("hello $NAME!", "hello world!"),
        ("${DIR}/bin", "/app/bin"),
        ("$DIR/bin", "/app/bin"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET-fallback}", "fallback"),
        ("${NAME:-fallback}", "world"),
        ("${NAME:+set}", "set"),
        ("${EMPTY:+set}", ""),
        ("${EMPTY+set}", "set"),
        ("${UNSET+set}", ""),
        ("${UNSET:-${NAME}}", "world"),
        ("${UNSET:-a b}", "a b"),
        ("${UNSET:-'q}'}", "q}"),
        ("'$NAME'", "$NAME"),
        ("\"$NAME\"", "world"),
        ("\"it's $NAME\"", "it's world"),
        ("\\$NAME", "$NAME"),
        ("\"\\$NAME\"", "$NAME"),
        ("\"a\\b\"", "a\\b"),
        ("\"a\\\"b\"", "a\"b"),
        ("a\\ b", "a b"),
        ("trailing\\", "trailing"),
        ("$", "$"),
        ("a$", "a$"),
        ("$1", ""),
        ("${NAME}_${DIR}", "world_/app"),
        ("$NAME_x", ""),
        ("ünï$NAME", "ünïworld"),
    ];
    for (word, want) in cases {
        assert_eq!(expand(word, vars).as_deref(), Ok(*want), "word {word:?}");
    }
}

#[test]
fn expand_words_splits_on_unquoted_whitespace() {
    let cases: &[(&str, &[&str])] = &[
        ("a b  c", &["a", "b", "c"]),
        ("'a b' c", &["a b", "c"]),
        ("\"$SPACED\" x", &["a  b", "x"]),
        ("$SPACED x", &["a", "b", "x"]),
        ("a\\ b", &["a b"]),
        ("", &[]),
        ("  ", &[]),
    ];
    for (word, want) in cases {
        let got = expand_words(word, vars).unwrap();
        assert_eq!(got, *want, "word {word:?}");
    }
}

#[test]
fn backtick_escape_leaves_backslash_alone() {
    let lexer = Lexer::new('`');
    assert_eq!(
        lexer.expand("C:\\Users\\$NAME", vars).unwrap(),
        "C:\\Users\\world"
    );
    assert_eq!(lexer.expand("`$NAME", vars).unwrap(), "$NAME");
}

#[test]
fn refuses_malformed_substitutions() {
    let cases: &[(&str, &str)] = &[
        ("'open", "unterminated single quote: add the closing '"),
        ("\"open", "unterminated double quote: add the closing \""),
        (
            "${NAME",
            "missing '}' in variable substitution: write ${NAME}",
        ),
        (
            "${NAME:-x",
            "missing '}' in variable substitution: write ${NAME}",
        ),
        ("${", "missing '}' in variable substitution: write ${NAME}"),
        (
            "${}",
            "bad substitution: a variable name must follow '${', e.g. ${NAME}",
        ),
        (
            "${:-x}",
            "bad substitution: a variable name must follow '${', e.g. ${NAME}",
        ),
        (
            "${NAME#pre}",
            "unsupported modifier \"#\" in ${NAME...}: use :-, -, :+, +, :? or ?",
        ),
        (
            "${NAME:=x}",
            "unsupported modifier \":=\" in ${NAME...}: use :-, -, :+, +, :? or ?",
        ),
        ("${UNSET?}", "UNSET: is not allowed to be unset"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
        ("${UNSET:?set it please}", "UNSET: set it please"),
    ];
    for (word, want) in cases {
        assert_eq!(
            expand(word, vars).unwrap_err().to_string(),
            *want,
            "word {word:?}"
        );
    }
    assert_eq!(expand("${NAME:?}", vars).unwrap(), "world");
}

#[test]
fn deep_nesting_is_refused_not_recursed() {
    let depth = MAX_NESTING + 5;
    let word = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    assert_eq!(
        expand(&word, vars),
        Err(ExpandError::TooDeep { limit: MAX_NESTING })
    );
    let shallow = format!("{}x{}", "${A:-".repeat(5), "}".repeat(5));
    assert_eq!(expand(&shallow, vars).unwrap(), "x");
}

#[test]
fn split_unexpanded_keeps_dollars_and_optionally_quotes() {
    assert_eq!(split_unexpanded("\"E$OF\"", false).unwrap(), ["E$OF"]);
    assert_eq!(split_unexpanded("\"EOF\"", true).unwrap(), ["\"EOF\""]);
    assert_eq!(split_unexpanded("a b", false).unwrap(), ["a", "b"]);
}
