//! Splitting an instruction's logical line the way BuildKit's line parsers do: the keyword,
//! the leading `--flag` words (quotes removed), and the arguments, which each instruction
//! then reads as whitespace-separated words, quote-aware words (ENV, LABEL, ARG), a JSON
//! array, or one string. Every word keeps its byte offset in the logical line for errors.

/// A word and the byte offset in the logical line where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub offset: usize,
}

/// An instruction line cut into keyword, flags and arguments.
#[derive(Debug, Clone)]
pub(crate) struct Head<'a> {
    pub keyword: &'a str,
    pub keyword_offset: usize,
    pub flags: Vec<Word>,
    /// The arguments, trimmed.
    pub args: &'a str,
    pub args_offset: usize,
}

/// BuildKit's `reWhitespace`: the separators between keyword and arguments and between
/// whitespace-delimited arguments.
pub(crate) fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Cuts `text` (which starts at byte `base` of the logical line) into a [`Head`].
pub(crate) fn split_head(text: &str, base: usize, escape: char) -> Head<'_> {
    let trimmed = text.trim();
    let start = base + (text.len() - text.trim_start().len());
    let Some(keyword_end) = trimmed.find(is_separator) else {
        let end = start + trimmed.len();
        return Head {
            keyword: trimmed,
            keyword_offset: start,
            flags: Vec::new(),
            args: "",
            args_offset: end,
        };
    };
    let rest = trimmed[keyword_end..].trim_start_matches(is_separator);
    let rest_offset = start + (trimmed.len() - rest.len());
    let (flags, consumed) = extract_flags(rest, rest_offset, escape);
    let after = &rest[consumed..];
    let args = after.trim();
    let args_offset = rest_offset + consumed + (after.len() - after.trim_start().len());
    Head {
        keyword: &trimmed[..keyword_end],
        keyword_offset: start,
        flags,
        args,
        args_offset,
    }
}

/// Reads the leading `--flag` words of `rest`; returns them (quotes removed, escapes
/// applied) and how many bytes of `rest` they took. A lone `--` ends the flags.
fn extract_flags(rest: &str, base: usize, escape: char) -> (Vec<Word>, usize) {
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(rest.len(), |&(b, _)| b);
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while chars.get(i).is_some_and(|&(_, c)| c.is_whitespace()) {
            i += 1;
        }
        if i >= chars.len() || !rest[byte_at(i)..].starts_with("--") {
            return (flags, byte_at(i));
        }
        let start = byte_at(i);
        let (text, next) = flag_word(&chars, i, escape);
        i = next;
        if text == "--" {
            return (flags, byte_at(i));
        }
        flags.push(Word {
            text,
            offset: base + start,
        });
    }
}

/// One flag word starting at `chars[i]`: quotes removed, the escape character applied.
fn flag_word(chars: &[(usize, char)], mut i: usize, escape: char) -> (String, usize) {
    let mut text = String::new();
    let mut quote: Option<char> = None;
    while let Some(&(_, ch)) = chars.get(i) {
        i += 1;
        match quote {
            None if ch.is_whitespace() => return (text, i - 1),
            None if ch == '\'' || ch == '"' => quote = Some(ch),
            Some(q) if ch == q => quote = None,
            _ if ch == escape => {
                if let Some(&(_, next)) = chars.get(i) {
                    text.push(next);
                    i += 1;
                }
            }
            _ => text.push(ch),
        }
    }
    (text, i)
}

/// Whitespace-delimited words (BuildKit's `parseStringsWhitespaceDelimited`).
pub(crate) fn split_whitespace(args: &str, base: usize) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in args.char_indices() {
        match (is_separator(c), start) {
            (true, Some(s)) => {
                words.push(Word {
                    text: args[s..i].to_string(),
                    offset: base + s,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(Word {
            text: args[s..].to_string(),
            offset: base + s,
        });
    }
    words
}

/// Quote-aware words for ENV, LABEL and ARG (BuildKit's `parseWords`): whitespace outside
/// quotes separates words; quotes and escape characters stay in the words.
pub(crate) fn quoted_words(args: &str, base: usize, escape: char) -> Vec<Word> {
    let chars: Vec<(usize, char)> = args.char_indices().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1.is_whitespace() {
            i += 1;
            continue;
        }
        let start = chars[i].0;
        let (text, next) = quoted_word(&chars, i, escape);
        words.push(Word {
            text,
            offset: base + start,
        });
        i = next;
    }
    words
}

fn quoted_word(chars: &[(usize, char)], mut i: usize, escape: char) -> (String, usize) {
    let mut text = String::new();
    let mut quote: Option<char> = None;
    while let Some(&(_, ch)) = chars.get(i) {
        if quote.is_none() && ch.is_whitespace() {
            break;
        }
        i += 1;
        if ch == escape && quote != Some('\'') {
            if let Some(&(_, next)) = chars.get(i) {
                text.push(ch);
                text.push(next);
                i += 1;
            }
            continue;
        }
        match quote {
            None if ch == '\'' || ch == '"' => quote = Some(ch),
            Some(q) if ch == q => quote = None,
            _ => {}
        }
        text.push(ch);
    }
    (text, i)
}

/// What the arguments are when read as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArrayForm {
    /// Not a JSON array: use the shell form (Docker's fallback).
    NotArray,
    /// A JSON array of strings: the exec form.
    Strings(Vec<String>),
    /// A JSON array with a non-string element: an error, not a fallback.
    NotStrings,
}

pub(crate) fn json_array(args: &str) -> ArrayForm {
    let text = args.trim_start();
    if !text.starts_with('[') {
        return ArrayForm::NotArray;
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(text) else {
        return ArrayForm::NotArray;
    };
    let strings: Option<Vec<String>> = values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        })
        .collect();
    strings.map_or(ArrayForm::NotStrings, ArrayForm::Strings)
}
