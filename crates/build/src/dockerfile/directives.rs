//! Parser directives (`# syntax=`, `# escape=`, `# check=`), read as BuildKit does: only
//! from the comment lines at the very top of the file. The first line that is not a
//! known directive (an instruction, a blank line, any other comment, or an unknown
//! directive such as `# foo=bar`) ends the directive section; later directive-looking
//! lines are ordinary comments. A directive may appear once.

use crate::dockerfile::ast::Directives;
use crate::dockerfile::error::ErrorKind;

/// Watches the first lines of a file for directives.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    seen: Vec<&'static str>,
    found: Directives,
}

impl DirectiveParser {
    /// Looks at one line (leading whitespace already removed).
    pub(crate) fn observe(&mut self, line: &str) -> Result<(), ErrorKind> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = line.strip_prefix('#').and_then(split_directive) else {
            self.done = true;
            return Ok(());
        };
        let key: &'static str = match name.to_ascii_lowercase().as_str() {
            "syntax" => "syntax",
            "escape" => "escape",
            "check" => "check",
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if self.seen.contains(&key) {
            return Err(ErrorKind::DuplicateDirective {
                name: key.to_string(),
            });
        }
        self.seen.push(key);
        self.apply(key, value)
    }

    fn apply(&mut self, key: &'static str, value: &str) -> Result<(), ErrorKind> {
        match key {
            "escape" => match value {
                "\\" => self.found.escape = '\\',
                "`" => self.found.escape = '`',
                _ => {
                    return Err(ErrorKind::InvalidEscape {
                        value: crate::snippet(value),
                    })
                }
            },
            "syntax" => self.found.syntax = Some(value.to_string()),
            _ => self.found.check = Some(value.to_string()),
        }
        Ok(())
    }

    /// The escape character in effect.
    pub(crate) fn escape(&self) -> char {
        self.found.escape
    }

    pub(crate) fn directives(&self) -> Directives {
        self.found.clone()
    }
}

/// Matches `\s*name\s*=\s*value\s*` (name: a letter, then letters or digits).
fn split_directive(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start_matches(is_regex_space);
    let name_len = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = text.split_at(name_len);
    let rest = rest.trim_start_matches(is_regex_space).strip_prefix('=')?;
    let value = rest.trim_matches(is_regex_space);
    (!value.is_empty()).then_some((name, value))
}

/// RE2's `\s`: the ASCII whitespace Go's directive regexp accepts.
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}
