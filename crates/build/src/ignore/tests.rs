//! `.dockerignore` matching cases in the spirit of moby's patternmatcher tests, plus
//! directory skipping and file parsing.

use super::*;

fn matcher(lines: &[&str]) -> IgnoreMatcher {
    IgnoreMatcher::from_patterns(lines).expect("valid patterns")
}

/// (patterns, path, excluded) in the spirit of moby's patternmatcher tests.
#[test]
fn matches_like_moby_patternmatcher() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&["foo"], "foo", true),
        (&["foo"], "foo/bar.txt", true),
        (&["foo"], "foobar", false),
        (&["foo"], "x/foo", false),
        (&["/foo"], "foo/a", true),
        (&["./foo/"], "foo", true),
        (&["foo/../bar"], "bar/x", true),
        (&["*.go"], "main.go", true),
        (&["*.go"], "cmd/main.go", false),
        (&["*/*.go"], "cmd/main.go", true),
        (&["*"], "anything/at/all", true),
        (&["?.txt"], "a.txt", true),
        (&["?.txt"], "ab.txt", false),
        (&["a?c"], "a/c", false),
        (&["[abc].txt"], "b.txt", true),
        (&["[a-c].txt"], "d.txt", false),
        (&["[^a-c].txt"], "d.txt", true),
        (&["[^a-c].txt"], "a.txt", false),
        (&["\\*.txt"], "*.txt", true),
        (&["\\*.txt"], "a.txt", false),
        (&["**"], "a/b/c", true),
        (&["**/*.go"], "main.go", true),
        (&["**/*.go"], "a/b/main.go", true),
        (&["**/foo"], "foo", true),
        (&["**/foo"], "a/b/foo", true),
        (&["**/foo"], "a/xfoo", false),
        (&["**/foo"], "a/foo/bar", true),
        (&["**.txt"], "a/b/c.txt", true),
        (&["docs/**"], "docs/a/b.md", true),
        (&["docs/**"], "docs", false),
        (&["docs/**/*.md"], "docs/a.md", true),
        (&["docs/**/*.md"], "docs/x/y/a.md", true),
        (&["docs/**/*.md"], "docs/x/y/a.txt", false),
        (&["a/**/b"], "a/b", true),
        (&["a/**/b"], "a/x/y/b", true),
        (&["a/**/b"], "a/xb", false),
        (&["*", "!keep.txt"], "keep.txt", false),
        (&["*", "!keep.txt"], "other.txt", true),
        (&["*.md", "!README.md", "README.md"], "README.md", true),
        (&["dir", "!dir/keep"], "dir/keep/a", false),
        (&["dir", "!dir/keep"], "dir/other", true),
        (&["!foo", "foo"], "foo", true),
        (&["foo", "!foo"], "foo", false),
        (&["**/node_modules"], "web/node_modules/x/index.js", true),
        (&["ünï*"], "ünïcode", true),
    ];
    for (patterns, path, want) in cases {
        assert_eq!(
            matcher(patterns).excluded(path),
            *want,
            "patterns {patterns:?} path {path:?}"
        );
    }
}

#[test]
fn paths_are_normalized_before_matching() {
    let m = matcher(&["build"]);
    assert!(m.excluded("./build/out"));
    assert!(m.excluded("/build"));
    assert!(m.excluded("src/../build/x"));
    assert!(!m.excluded("."));
}

#[test]
fn reads_dockerignore_files() {
    let file =
        "\u{feff}# comment\n\n  node_modules  \r\n!node_modules/keep\n #not a comment\n/dist/\n";
    let m = IgnoreMatcher::parse(file).unwrap();
    let patterns: Vec<(&str, bool)> = m.patterns().collect();
    assert_eq!(
        patterns,
        [
            ("node_modules", false),
            ("node_modules/keep", true),
            ("#not a comment", false),
            ("dist", false)
        ]
    );
    assert!(m.excluded("node_modules/a"));
    assert!(!m.excluded("node_modules/keep/b"));
    assert!(m.excluded("dist/app.js"));
    assert!(m.has_exceptions());
    assert!(IgnoreMatcher::parse("# only comments\n\n")
        .unwrap()
        .is_empty());
}

#[test]
fn refuses_malformed_patterns_with_line_numbers() {
    let cases: &[(&str, &str)] = &[
        ("ok\nfoo[", ".dockerignore line 2: invalid pattern \"foo[\": unterminated character class: add ']'"),
        ("[a-", ".dockerignore line 1: invalid pattern \"[a-\": unterminated character class: add ']'"),
        ("x\n\n[]", ".dockerignore line 3: invalid pattern \"[]\": '-' and ']' must be escaped with \\ inside a character class"),
        ("foo\\", ".dockerignore line 1: invalid pattern \"foo\\\\\": a trailing \\ escapes nothing"),
        ("!", ".dockerignore line 1: invalid pattern \"!\": \"!\" alone re-includes nothing: write !<pattern>"),
        ("a\n!  ", ".dockerignore line 2: invalid pattern \"!\": \"!\" alone re-includes nothing: write !<pattern>"),
    ];
    for (file, want) in cases {
        assert_eq!(
            IgnoreMatcher::parse(file).unwrap_err().to_string(),
            *want,
            "file {file:?}"
        );
    }
    let big = "x".repeat(MAX_IGNORE_BYTES + 1);
    assert!(matches!(
        IgnoreMatcher::parse(&big),
        Err(IgnoreError::TooLarge { .. })
    ));
}

#[test]
fn skips_directories_only_when_no_exception_can_reach_inside() {
    let cases: &[(&[&str], &str, bool)] = &[
        (&["node_modules"], "node_modules", true),
        (&["node_modules"], "src", false),
        (
            &["node_modules", "!node_modules/keep.txt"],
            "node_modules",
            false,
        ),
        (
            &["node_modules", "!node_modules/keep.txt"],
            "node_modules/sub",
            true,
        ),
        (&["*", "!*/keep.txt"], "a", false),
        (&["*", "!**/keep.txt"], "a", false),
        (&["*", "!src"], "docs", true),
        (&["*", "!src"], "src", false),
        (&["!src/keep", "src"], "src", true),
        (&["build", "!build/[a-c]*"], "build", false),
        (&["build", "!other/*"], "build", true),
    ];
    for (patterns, dir, want) in cases {
        assert_eq!(
            matcher(patterns).can_skip_dir(dir),
            *want,
            "patterns {patterns:?} dir {dir:?}"
        );
    }
}

#[test]
fn skipping_never_hides_a_reincluded_file() {
    let m = matcher(&["*", "!*/keep.txt", "b"]);
    for dir in ["a", "b", "c/d"] {
        let file = format!("{dir}/keep.txt");
        if m.can_skip_dir(dir) {
            assert!(m.excluded(&file), "{dir} skipped but {file} is included");
        }
    }
    assert!(!m.excluded("a/keep.txt"));
    assert!(m.can_skip_dir("b"));
}

#[test]
fn clean_matches_go_path_clean() {
    let cases = [
        ("", "."),
        ("a/b/../c", "a/c"),
        ("/../a", "/a"),
        ("../a/..", ".."),
        ("a//b/./c/", "a/b/c"),
        ("/", "/"),
        ("./", "."),
    ];
    for (input, want) in cases {
        assert_eq!(pattern::clean(input), want, "input {input:?}");
    }
}
