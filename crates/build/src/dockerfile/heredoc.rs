//! Heredocs in RUN, COPY and ADD (and ONBUILD triggers of those): finding the heredoc
//! words (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) on an instruction line, as BuildKit's
//! `heredocsFromLine` does, and reading the bodies that follow the line.

use crate::dockerfile::ast::Heredoc;
use crate::dockerfile::error::{At, ErrorKind};
use crate::dockerfile::instructions::Keyword;
use crate::dockerfile::lines::LineReader;
use crate::dockerfile::words::{json_array, split_head, ArrayForm, Head};

/// A heredoc word found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub fd: u32,
    pub chomp: bool,
    pub expand: bool,
    pub offset: usize,
}

/// Reads the bodies of the heredocs named on `text` when the instruction can take them.
pub(crate) fn read_bodies(
    reader: &mut LineReader<'_>,
    head: &Head<'_>,
    text: &str,
) -> Result<Vec<Heredoc>, At> {
    if !text.contains("<<") || !accepts_heredocs(head, reader.escape()) {
        return Ok(Vec::new());
    }
    let mut docs = Vec::new();
    for marker in markers(text) {
        let Some(raw) = reader.read_heredoc(&marker.name, marker.chomp) else {
            let name = crate::snippet(&marker.name);
            return Err(At::new(
                marker.offset,
                ErrorKind::UnterminatedHeredoc { name },
            ));
        };
        let content = if marker.chomp { chomp(&raw) } else { raw };
        docs.push(Heredoc {
            name: marker.name,
            fd: marker.fd,
            chomp: marker.chomp,
            expand: marker.expand,
            content,
        });
    }
    Ok(docs)
}

/// RUN, COPY and ADD in shell form (or such an ONBUILD trigger) may have heredocs.
fn accepts_heredocs(head: &Head<'_>, escape: char) -> bool {
    match Keyword::lookup(head.keyword) {
        Some(Keyword::Run | Keyword::Copy | Keyword::Add) => {
            json_array(head.args) == ArrayForm::NotArray
        }
        Some(Keyword::Onbuild) => {
            let inner = split_head(head.args, head.args_offset, escape);
            Keyword::lookup(inner.keyword) != Some(Keyword::Onbuild)
                && accepts_heredocs(&inner, escape)
        }
        _ => false,
    }
}

/// Strips leading tabs from every line (`<<-EOF`).
fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// The heredoc words of an instruction line, in order.
pub(crate) fn markers(text: &str) -> Vec<Marker> {
    raw_words(text)
        .into_iter()
        .filter_map(|(word, offset)| marker(&word).map(|m| Marker { offset, ..m }))
        .collect()
}

/// Reads one word as a heredoc marker: `^(\d*)<<(-?)\s*([^<]*)$` with a non-empty,
/// single-word delimiter. A quoted delimiter turns expansion of the body off.
pub(crate) fn marker(word: &str) -> Option<Marker> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\u{c}', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let names = crate::shell::split_unexpanded(rest, false).ok()?;
    let raw = crate::shell::split_unexpanded(rest, true).ok()?;
    let ([name], [raw]) = (names.as_slice(), raw.as_slice()) else {
        return None;
    };
    let fd = word[..digits].parse().unwrap_or(0);
    let expand = quote_count(name) == quote_count(raw);
    Some(Marker {
        name: name.clone(),
        fd,
        chomp,
        expand,
        offset: 0,
    })
}

fn quote_count(text: &str) -> usize {
    text.chars().filter(|c| *c == '\'' || *c == '"').count()
}

/// Words of a whole line with quotes and `\` escapes kept (BuildKit lexes with raw quotes
/// and raw escapes here); `<<` swallows the blanks after it. `[]` if a quote is open.
fn raw_words(text: &str) -> Vec<(String, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].1.is_whitespace() {
            i += 1;
            continue;
        }
        let start = chars[i].0;
        let Some((word, next)) = raw_word(&chars, i) else {
            return Vec::new();
        };
        words.push((word, start));
        i = next;
    }
    words
}

fn raw_word(chars: &[(usize, char)], mut i: usize) -> Option<(String, usize)> {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    while let Some(&(_, ch)) = chars.get(i) {
        if quote.is_none() && ch.is_whitespace() {
            break;
        }
        i += 1;
        word.push(ch);
        match (quote, ch) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (None, '\'' | '"') => quote = Some(ch),
            (Some('"') | None, '\\') => {
                if let Some(&(_, next)) = chars.get(i) {
                    word.push(next);
                    i += 1;
                }
            }
            (None, '<') if chars.get(i).is_some_and(|&(_, c)| c == '<') => {
                word.push('<');
                i += 1;
                while let Some(&(_, blank)) = chars.get(i).filter(|&&(_, c)| c == ' ' || c == '\t')
                {
                    word.push(blank);
                    i += 1;
                }
            }
            _ => {}
        }
    }
    quote.is_none().then_some((word, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected (name, fd, chomp, expand).
    type Want = Option<(&'static str, u32, bool, bool)>;

    #[test]
    fn marker_reads_delimiters_as_buildkit_does() {
        let cases: &[(&str, Want)] = &[
            ("<<EOF", Some(("EOF", 0, false, true))),
            ("<<-EOF", Some(("EOF", 0, true, true))),
            ("<<\"EOF\"", Some(("EOF", 0, false, false))),
            ("<<'EOF'", Some(("EOF", 0, false, false))),
            ("<<E\"O\"F", Some(("EOF", 0, false, false))),
            ("3<<EOF", Some(("EOF", 3, false, true))),
            ("<< EOF", Some(("EOF", 0, false, true))),
            ("<<", None),
            ("<<<EOF", None),
            ("cat<<EOF", None),
            ("\"<<EOF\"", None),
            ("<<\"a b\"", Some(("a b", 0, false, false))),
        ];
        for (word, want) in cases {
            let got = marker(word).map(|m| (m.name, m.fd, m.chomp, m.expand));
            let want = want.map(|(n, fd, c, e)| (n.to_string(), fd, c, e));
            assert_eq!(got, want, "word {word:?}");
        }
    }

    #[test]
    fn markers_skip_quoted_and_escaped_text() {
        let names = |line: &str| {
            markers(line)
                .into_iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("RUN cat <<A <<-B"), ["A", "B"]);
        assert_eq!(names("RUN echo '<<A' \"<<B\""), Vec::<String>::new());
        assert_eq!(names("RUN echo \\<<A"), Vec::<String>::new());
        assert_eq!(names("RUN cat << A"), ["A"]);
        assert_eq!(names("RUN echo \"unterminated <<A"), Vec::<String>::new());
        assert_eq!(markers("COPY <<A /x")[0].offset, 5);
    }

    #[test]
    fn chomp_strips_leading_tabs_of_every_line() {
        assert_eq!(chomp("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
    }
}
