//! Physical lines to logical lines, as BuildKit's `parser.Parse` reads them: a leading BOM
//! is dropped, parser directives are watched, comment and blank lines are skipped, and a
//! line ending in the escape character continues on the next line (comment and blank
//! lines inside a continuation are skipped; blank ones earn a warning). Heredoc bodies
//! are read on request. Every logical line keeps a map from its text back to physical
//! line and column, so errors point at the right place.

use crate::dockerfile::directives::DirectiveParser;
use crate::dockerfile::error::{Error, ErrorKind};

/// Longest physical line accepted (BuildKit's scanner limit).
pub const MAX_LINE_BYTES: usize = 65_535;

/// An instruction's text with continuations joined.
#[derive(Debug, Clone)]
pub(crate) struct LogicalLine {
    pub text: String,
    pub start_line: usize,
    pub empty_continuation: bool,
    pieces: Vec<Piece>,
}

/// Where a stretch of the logical text starts in the file.
#[derive(Debug, Clone, Copy)]
struct Piece {
    offset: usize,
    line: usize,
    column: usize,
}

impl LogicalLine {
    fn new(start_line: usize) -> Self {
        LogicalLine {
            text: String::new(),
            start_line,
            empty_continuation: false,
            pieces: Vec::new(),
        }
    }

    fn push(&mut self, text: &str, line: usize, column: usize) {
        self.pieces.push(Piece {
            offset: self.text.len(),
            line,
            column,
        });
        self.text.push_str(text);
    }

    /// Physical (line, column) of a byte offset in [`LogicalLine::text`].
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let index = self
            .pieces
            .partition_point(|p| p.offset <= offset)
            .saturating_sub(1);
        let Some(piece) = self.pieces.get(index) else {
            return (self.start_line, 1);
        };
        let end = offset.min(self.text.len());
        let chars = self
            .text
            .get(piece.offset..end)
            .map_or(0, |s| s.chars().count());
        (piece.line, piece.column + chars)
    }
}

/// Hands out logical lines and heredoc bodies, in file order.
pub(crate) struct LineReader<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    next: usize,
    directives: DirectiveParser,
}

impl<'a> LineReader<'a> {
    pub fn new(source: &'a str, file: &'a str) -> Result<Self, Error> {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        let lines: Vec<&str> = source.split_inclusive('\n').collect();
        if let Some((index, line)) = lines
            .iter()
            .enumerate()
            .find(|(_, l)| l.len() > MAX_LINE_BYTES)
        {
            let kind = ErrorKind::LineTooLong {
                size: line.len(),
                limit: MAX_LINE_BYTES,
            };
            return Err(Error::new(file, index + 1, 1, kind));
        }
        Ok(LineReader {
            file,
            lines,
            next: 0,
            directives: DirectiveParser::default(),
        })
    }

    /// The escape character chosen by the directives.
    pub fn escape(&self) -> char {
        self.directives.escape()
    }

    pub fn directives(&self) -> crate::dockerfile::ast::Directives {
        self.directives.directives()
    }

    /// Number of the last physical line handed out.
    pub fn line_number(&self) -> usize {
        self.next
    }

    /// The next physical line with its number and line ending.
    fn take(&mut self) -> Option<(usize, &'a str)> {
        let line = *self.lines.get(self.next)?;
        self.next += 1;
        Some((self.next, line))
    }

    /// The next instruction's logical line, or `None` at the end of the file.
    pub fn next_logical(&mut self) -> Result<Option<LogicalLine>, Error> {
        while let Some((number, raw)) = self.take() {
            let text = trim_newline(raw);
            let body = text.trim_start();
            let column = 1 + text[..text.len() - body.len()].chars().count();
            let observed = self.directives.observe(body);
            observed.map_err(|kind| Error::new(self.file, number, column, kind))?;
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let mut logical = LogicalLine::new(number);
            if self.append(&mut logical, body, number, column) {
                self.continuation(&mut logical);
            }
            if !logical.text.trim().is_empty() {
                return Ok(Some(logical));
            }
        }
        Ok(None)
    }

    /// Reads continuation lines until one does not end in the escape character.
    fn continuation(&mut self, logical: &mut LogicalLine) {
        while let Some((number, raw)) = self.take() {
            let text = trim_newline(raw);
            let body = text.trim_start();
            if body.starts_with('#') {
                continue;
            }
            if body.is_empty() {
                logical.empty_continuation = true;
                continue;
            }
            if !self.append(logical, text, number, 1) {
                return;
            }
        }
    }

    /// Adds a line's text; true when it ends in a line continuation.
    fn append(&self, logical: &mut LogicalLine, text: &str, number: usize, column: usize) -> bool {
        let (kept, continues) = strip_continuation(text, self.escape());
        logical.push(kept, number, column);
        continues
    }

    /// Reads a heredoc body up to the line that is exactly `name` (after leading tabs when
    /// `chomp`). The body keeps its line endings. `None`: the file ended first.
    pub fn read_heredoc(&mut self, name: &str, chomp: bool) -> Option<String> {
        let mut content = String::new();
        while let Some((_, raw)) = self.take() {
            let mut candidate = trim_newline(raw);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Some(content);
            }
            content.push_str(raw);
        }
        None
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// BuildKit's continuation rule: the escape character, then only spaces or tabs, at the
/// end of the line, and not itself escaped (`foo \\` does not continue).
fn strip_continuation(text: &str, escape: char) -> (&str, bool) {
    let trimmed = text.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(before) if !before.ends_with(escape) => (before, true),
        _ => (text, false),
    }
}
