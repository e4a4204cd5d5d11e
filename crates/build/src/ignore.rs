//! The `.dockerignore` matcher, with Docker's semantics (moby `patternmatcher` and
//! `ignorefile`):
//!
//! - A line starting with `#` (in the first column) is a comment; other lines are trimmed
//!   and blank ones skipped.
//! - `!pattern` is an exception: it re-includes what earlier patterns excluded. The last
//!   pattern that matches a path decides.
//! - Patterns are cleaned like Go's `filepath.Clean` and a leading `/` is dropped, so they
//!   are always relative to the context root.
//! - Go `filepath.Match` syntax: `*` (not across `/`), `?`, `[a-z]`, `[^a-z]`, `\` escape;
//!   plus `**`, which matches any number of directories (`**/*.go`, `docs/**`).
//! - A pattern that matches a directory matches everything below it (`foo` excludes
//!   `foo/bar.txt`).
//!
//! [`IgnoreMatcher::can_skip_dir`] tells a context walker when a whole directory can be
//! skipped: it is excluded and no later exception could re-include anything below it.

mod pattern;

use pattern::Pattern;

/// Largest `.dockerignore` accepted.
pub const MAX_IGNORE_BYTES: usize = 1 << 20;

/// Why a `.dockerignore` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(".dockerignore is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(".dockerignore line {line}: invalid pattern {pattern:?}: {reason}")]
    Pattern {
        line: usize,
        pattern: String,
        reason: &'static str,
    },
}

/// The compiled patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    text: String,
    exception: bool,
    pattern: Pattern,
}

impl IgnoreMatcher {
    /// Parses the contents of a `.dockerignore` file.
    pub fn parse(contents: &str) -> Result<Self, IgnoreError> {
        if contents.len() > MAX_IGNORE_BYTES {
            return Err(IgnoreError::TooLarge {
                size: contents.len(),
                limit: MAX_IGNORE_BYTES,
            });
        }
        let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
        let mut rules = Vec::new();
        for (index, line) in contents.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            if let Some(rule) = Rule::from_line(line, index + 1)? {
                rules.push(rule);
            }
        }
        Ok(IgnoreMatcher { rules })
    }

    /// Builds a matcher from patterns already split into lines (`!` marks exceptions; no
    /// comments). Errors number the patterns from 1.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut rules = Vec::new();
        for (index, line) in patterns.into_iter().enumerate() {
            if let Some(rule) = Rule::from_line(line.as_ref(), index + 1)? {
                rules.push(rule);
            }
        }
        Ok(IgnoreMatcher { rules })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the
    /// build context.
    pub fn excluded(&self, path: &str) -> bool {
        let path = normalize(path);
        self.last_match(&path)
            .is_some_and(|index| !self.rules[index].exception)
    }

    /// Whether a walker may skip directory `dir` without looking inside: it is excluded
    /// and no exception after the pattern that excluded it could match a path below it.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let dir = normalize(dir);
        let Some(index) = self.last_match(&dir) else {
            return false;
        };
        if self.rules[index].exception {
            return false;
        }
        self.rules[index + 1..]
            .iter()
            .filter(|r| r.exception)
            .all(|r| !r.pattern.could_match_below(&dir))
    }

    /// Whether any pattern is an exception (`!pattern`).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// The cleaned patterns in order, each with whether it is an exception.
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> + '_ {
        self.rules.iter().map(|r| (r.text.as_str(), r.exception))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The last rule matching `path` or one of its parent directories.
    fn last_match(&self, path: &str) -> Option<usize> {
        self.rules
            .iter()
            .rposition(|r| r.pattern.matches_path_or_parent(path))
    }
}

impl Rule {
    /// One line: trimmed, `!` split off, cleaned, leading `/` dropped. `None` if blank.
    fn from_line(line: &str, number: usize) -> Result<Option<Rule>, IgnoreError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let (exception, body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let fail = |reason| IgnoreError::Pattern {
            line: number,
            pattern: crate::snippet(line),
            reason,
        };
        if body.is_empty() {
            return Err(fail("\"!\" alone re-includes nothing: write !<pattern>"));
        }
        let cleaned = pattern::clean(body);
        let text = match cleaned.strip_prefix('/') {
            Some(rest) if !rest.is_empty() => rest.to_string(),
            _ => cleaned,
        };
        let pattern = Pattern::compile(&text).map_err(fail)?;
        Ok(Some(Rule {
            text,
            exception,
            pattern,
        }))
    }
}

/// A path as the matcher compares it: cleaned, relative.
fn normalize(path: &str) -> String {
    let cleaned = pattern::clean(path);
    match cleaned.trim_start_matches('/') {
        "" => ".".to_string(),
        rest => rest.to_string(),
    }
}

#[cfg(test)]
mod tests;
