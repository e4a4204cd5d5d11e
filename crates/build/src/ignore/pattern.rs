//! One `.dockerignore` pattern: compiled from Go `filepath.Match` syntax plus `**` into
//! tokens, validated as Go does (an unterminated `[`, an empty class or a trailing `\` is an
//! error), and matched by simulating all positions at once, so matching costs
//! O(path × pattern) whatever the input.
//!
//! `**` follows moby's translation: `**/` or a `**` inside a pattern matches zero or more
//! whole directories (`(.*/)?`), a trailing `**` matches anything. Like moby, a pattern
//! that is `**` followed by plain text (no other wildcard) matches any path ending in that
//! text (`**.txt` matches `a/b.txt`).

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `**` + literal text: paths ending in the text (`**/x` also matches `x`).
    Suffix(String),
    Glob(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    Any,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: nothing, or anything ending in `/`.
    DirStar,
    /// `**` at the end: anything.
    TailStar,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Pattern {
    pub(crate) fn compile(text: &str) -> Result<Pattern, &'static str> {
        let tokens = tokenize(text)?;
        match text.strip_prefix("**") {
            Some(rest) if !rest.contains(['*', '?', '\\', '[', ']']) => {
                Ok(Pattern::Suffix(rest.to_string()))
            }
            _ => Ok(Pattern::Glob(tokens)),
        }
    }

    /// Whether the pattern matches `path` or one of its parent directories.
    pub(crate) fn matches_path_or_parent(&self, path: &str) -> bool {
        match self {
            Pattern::Suffix(suffix) => {
                let ancestors = path.match_indices('/').map(|(i, _)| &path[..i]);
                ancestors.chain([path]).any(|p| suffix_matches(suffix, p))
            }
            Pattern::Glob(tokens) => glob_matches_path_or_parent(tokens, path),
        }
    }

    /// Whether some path strictly below directory `dir` could match (a safe
    /// over-approximation: `true` when unsure).
    pub(crate) fn could_match_below(&self, dir: &str) -> bool {
        match self {
            Pattern::Suffix(_) => true,
            Pattern::Glob(tokens) => {
                let mut states = States::start(tokens);
                for c in dir.chars().chain(['/']) {
                    states = states.step(tokens, c);
                    if states.is_dead() {
                        return false;
                    }
                }
                true
            }
        }
    }
}

fn suffix_matches(suffix: &str, path: &str) -> bool {
    path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|rest| rest == path)
}

fn glob_matches_path_or_parent(tokens: &[Token], path: &str) -> bool {
    let mut states = States::start(tokens);
    for (i, c) in path.char_indices() {
        if c == '/' && i > 0 && states.accepts(tokens) {
            return true;
        }
        states = states.step(tokens, c);
        if states.is_dead() {
            return false;
        }
    }
    states.accepts(tokens)
}

/// The set of pattern positions a prefix of the path can be in. Position `2*i` is
/// "before token i"; `2*i+1` is "inside the `**` group of token i".
struct States {
    live: Vec<bool>,
}

impl States {
    fn start(tokens: &[Token]) -> States {
        let mut live = vec![false; 2 * (tokens.len() + 1)];
        live[0] = true;
        let mut states = States { live };
        states.close(tokens);
        states
    }

    /// Adds the positions reachable without consuming a character (skipping stars).
    fn close(&mut self, tokens: &[Token]) {
        for (i, token) in tokens.iter().enumerate() {
            if self.live[2 * i] && matches!(token, Token::Star | Token::DirStar | Token::TailStar) {
                self.live[2 * (i + 1)] = true;
            }
        }
    }

    fn step(&self, tokens: &[Token], c: char) -> States {
        let mut next = States {
            live: vec![false; self.live.len()],
        };
        for (i, token) in tokens.iter().enumerate() {
            let (before, inside) = (self.live[2 * i], self.live[2 * i + 1]);
            if before {
                next.advance(i, token, c);
            }
            if inside {
                next.live[2 * i + 1] = true;
                if c == '/' {
                    next.live[2 * (i + 1)] = true;
                }
            }
        }
        next.close(tokens);
        next
    }

    /// The positions after token `i` consumes `c`, from "before token i".
    fn advance(&mut self, i: usize, token: &Token, c: char) {
        let after = 2 * (i + 1);
        match token {
            Token::Literal(l) if *l == c => self.live[after] = true,
            Token::Any if c != '/' => self.live[after] = true,
            Token::Class { negated, ranges } if in_class(ranges, c) != *negated => {
                self.live[after] = true
            }
            Token::Star if c != '/' => self.live[2 * i] = true,
            Token::TailStar => self.live[2 * i] = true,
            Token::DirStar => {
                self.live[2 * i + 1] = true;
                if c == '/' {
                    self.live[after] = true;
                }
            }
            _ => {}
        }
    }

    fn accepts(&self, tokens: &[Token]) -> bool {
        self.live[2 * tokens.len()]
    }

    fn is_dead(&self) -> bool {
        !self.live.contains(&true)
    }
}

fn in_class(ranges: &[(char, char)], c: char) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

fn tokenize(text: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        let token = match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    Token::TailStar
                } else {
                    Token::DirStar
                }
            }
            '*' => Token::Star,
            '?' => Token::Any,
            '\\' => {
                let escaped = chars.get(i).ok_or("a trailing \\ escapes nothing")?;
                i += 1;
                Token::Literal(*escaped)
            }
            '[' => {
                let (class, next) = class(&chars, i)?;
                i = next;
                class
            }
            other => Token::Literal(other),
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// A character class whose body starts at `chars[i]` (after `[`).
fn class(chars: &[char], mut i: usize) -> Result<(Token, usize), &'static str> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            (hi, i) = class_char(chars, i + 1)?;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: usize) -> Result<(char, usize), &'static str> {
    match chars.get(i) {
        None => Err("unterminated character class: add ']'"),
        Some('-' | ']') => Err("'-' and ']' must be escaped with \\ inside a character class"),
        Some('\\') => match chars.get(i + 1) {
            None => Err("unterminated character class: add ']'"),
            Some(c) => Ok((*c, i + 2)),
        },
        Some(c) => Ok((*c, i + 1)),
    }
}

/// Go's `path.Clean` for `/`-separated paths.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}
