//! Variable substitution in Dockerfile words, with the semantics of BuildKit's shell lexer
//! (`frontend/dockerfile/shell`, `ProcessWord` / `ProcessWords`).
//!
//! - `$NAME` and `${NAME}`; an unset variable expands to the empty string.
//! - `${NAME:-word}` / `${NAME-word}`: `word` when NAME is unset (`:-`: or empty).
//! - `${NAME:+word}` / `${NAME+word}`: `word` when NAME is set (`:+`: and not empty).
//! - `${NAME:?message}` / `${NAME?message}`: an error when NAME is unset (or empty).
//! - Single quotes keep everything literal; double quotes still expand `$`; the escape
//!   character (`\`, or the file's `# escape=` character) makes the next character literal.
//!   Quotes and escapes are removed from the result.
//! - [`expand_words`] also splits the result into words on unquoted whitespace (including
//!   whitespace that came out of an unquoted variable), as `ProcessWords` does.
//!
//! Not supported (an error, never a silent misreading): the pattern operators
//! `${NAME#pat}`, `${NAME%pat}` and `${NAME/pat/repl}`.

/// How deeply `${A:-${B:-...}}` may nest; deeper input is refused instead of recursing.
pub const MAX_NESTING: usize = 32;

/// Why a word could not be expanded. The builder adds where the word came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated single quote: add the closing '")]
    UnterminatedSingleQuote,
    #[error("unterminated double quote: add the closing \"")]
    UnterminatedDoubleQuote,
    #[error("missing '}}' in variable substitution: write ${{NAME}}")]
    MissingBrace,
    #[error("bad substitution: a variable name must follow '${{', e.g. ${{NAME}}")]
    BadSubstitution,
    #[error("unsupported modifier {modifier:?} in ${{{name}...}}: use :-, -, :+, +, :? or ?")]
    UnsupportedModifier { name: String, modifier: String },
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("variable substitutions nested deeper than {limit} levels")]
    TooDeep { limit: usize },
}

/// The lexer for one Dockerfile: it only needs the file's escape character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

impl Lexer {
    /// A lexer for a file whose `# escape=` directive chose `escape` (`\` or `` ` ``).
    pub fn new(escape: char) -> Self {
        Lexer { escape }
    }

    /// The escape character this lexer honours.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands one word (`ProcessWord`): variables substituted, quotes and escapes removed.
    pub fn expand<F>(&self, word: &str, lookup: F) -> Result<String, ExpandError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let opts = Opts {
            expand: true,
            raw_quotes: false,
        };
        Walker::new(word, self.escape, opts, &lookup)
            .run()
            .map(|(text, _)| text)
    }

    /// Expands and splits into words (`ProcessWords`): unquoted whitespace separates words.
    pub fn expand_words<F>(&self, word: &str, lookup: F) -> Result<Vec<String>, ExpandError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let opts = Opts {
            expand: true,
            raw_quotes: false,
        };
        Walker::new(word, self.escape, opts, &lookup)
            .run()
            .map(|(_, words)| words)
    }
}

/// [`Lexer::expand`] with the default escape character `\`.
pub fn expand<F>(word: &str, lookup: F) -> Result<String, ExpandError>
where
    F: Fn(&str) -> Option<String>,
{
    Lexer::default().expand(word, lookup)
}

/// [`Lexer::expand_words`] with the default escape character `\`.
pub fn expand_words<F>(word: &str, lookup: F) -> Result<Vec<String>, ExpandError>
where
    F: Fn(&str) -> Option<String>,
{
    Lexer::default().expand_words(word, lookup)
}

/// Splits `text` into words without expanding `$` (it stays literal), with `\` as escape.
/// `raw_quotes` keeps the quote characters in the words. Used to read heredoc names.
pub(crate) fn split_unexpanded(text: &str, raw_quotes: bool) -> Result<Vec<String>, ExpandError> {
    let opts = Opts {
        expand: false,
        raw_quotes,
    };
    let no_vars = |_: &str| None;
    Walker::new(text, '\\', opts, &no_vars)
        .run()
        .map(|(_, words)| words)
}

#[derive(Debug, Clone, Copy)]
struct Opts {
    /// Whether `$` starts a substitution (otherwise it is a plain character).
    expand: bool,
    /// Whether quote characters stay in the output.
    raw_quotes: bool,
}

/// One pass over a word: a cursor over its characters plus the variables to look up.
struct Walker<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    opts: Opts,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    depth: usize,
}

/// The words of `ProcessWords`: whitespace from unquoted text or variables splits words,
/// quoted text never does.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    current: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if !ch.is_whitespace() {
            self.add_raw_char(ch);
        } else if self.in_word && !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
            self.in_word = false;
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.current.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_str(&mut self, text: &str) {
        self.current.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

impl<'a> Walker<'a> {
    fn new(
        text: &str,
        escape: char,
        opts: Opts,
        lookup: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Walker {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            opts,
            lookup,
            depth: 0,
        }
    }

    fn run(&mut self) -> Result<(String, Vec<String>), ExpandError> {
        self.until(None)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += 1;
        Some(ch)
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// Processes characters up to `stop` (consumed) or the end of the word.
    fn until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ExpandError> {
        let mut text = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((text, words.finish()));
            }
            match ch {
                '\'' | '"' => {
                    let quoted = if ch == '\'' {
                        self.single_quoted()?
                    } else {
                        self.double_quoted()?
                    };
                    text.push_str(&quoted);
                    words.add_raw_str(&quoted);
                }
                '$' if self.opts.expand => {
                    let value = self.dollar()?;
                    text.push_str(&value);
                    words.add_str(&value);
                }
                _ => self.plain(&mut text, &mut words),
            }
        }
        match stop {
            Some(_) => Err(ExpandError::MissingBrace),
            None => Ok((text, words.finish())),
        }
    }

    /// A character outside quotes; the escape character makes the next one literal.
    fn plain(&mut self, text: &mut String, words: &mut Words) {
        let Some(ch) = self.bump() else { return };
        if ch != self.escape {
            text.push(ch);
            words.add_char(ch);
        } else if let Some(next) = self.bump() {
            text.push(next);
            words.add_raw_char(next);
        }
    }

    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        let open = self.bump().unwrap_or('\'');
        if self.opts.raw_quotes {
            out.push(open);
        }
        loop {
            match self.bump() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.opts.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        let open = self.bump().unwrap_or('"');
        if self.opts.raw_quotes {
            out.push(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.opts.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') if self.opts.expand => out.push_str(&self.dollar()?),
                Some(_) => self.double_quoted_char(&mut out),
            }
        }
    }

    /// Inside double quotes the escape character only escapes `"`, `$` and itself.
    fn double_quoted_char(&mut self, out: &mut String) {
        let Some(ch) = self.bump() else { return };
        if ch != self.escape {
            out.push(ch);
            return;
        }
        match self.peek() {
            None => {}
            Some(next) if next == '"' || next == '$' || next == self.escape => {
                self.pos += 1;
                out.push(next);
            }
            Some(_) => out.push(ch),
        }
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.bump() {
            None => Err(ExpandError::MissingBrace),
            Some('}') => Ok(self.get(&name).unwrap_or_default()),
            Some(':') => match self.bump() {
                Some(op @ ('-' | '+' | '?')) => self.modifier(&name, op, true),
                other => Err(unsupported(&name, ':', other)),
            },
            Some(op @ ('-' | '+' | '?')) => self.modifier(&name, op, false),
            Some(other) => Err(unsupported(&name, other, None)),
        }
    }

    /// `${name<op>word}`; with `null_is_unset` (the `:` forms) empty counts as unset.
    fn modifier(
        &mut self,
        name: &str,
        op: char,
        null_is_unset: bool,
    ) -> Result<String, ExpandError> {
        let word = self.nested_word()?;
        let value = self.get(name);
        let unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' if unset => Ok(word),
            '+' if unset => Ok(String::new()),
            '+' => Ok(word),
            '?' if unset => Err(required(name, word, value.is_none())),
            _ => Ok(value.unwrap_or_default()),
        }
    }

    fn nested_word(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::TooDeep { limit: MAX_NESTING });
        }
        self.depth += 1;
        let result = self.until(Some('}'));
        self.depth -= 1;
        result.map(|(text, _)| text)
    }

    /// A variable name: a run of digits, one special parameter character, or letters,
    /// digits and underscores.
    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(first) = self.peek() {
            if first.is_numeric() {
                while let Some(ch) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(ch);
                    self.pos += 1;
                }
                return name;
            }
            if matches!(first, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.pos += 1;
                return first.to_string();
            }
        }
        while let Some(ch) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

fn unsupported(name: &str, first: char, second: Option<char>) -> ExpandError {
    let mut modifier = first.to_string();
    modifier.extend(second);
    ExpandError::UnsupportedModifier {
        name: crate::snippet(name),
        modifier,
    }
}

fn required(name: &str, word: String, unset: bool) -> ExpandError {
    let message = match (word.is_empty(), unset) {
        (false, _) => crate::snippet(&word),
        (true, true) => "is not allowed to be unset".to_string(),
        (true, false) => "is not allowed to be empty".to_string(),
    };
    ExpandError::Required {
        name: crate::snippet(name),
        message,
    }
}

#[cfg(test)]
mod tests;
