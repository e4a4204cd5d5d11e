//! Container logs: the container init writes one JSON object per line (`{"time","stream","log"}`,
//! Docker's json-file format) to `container.log` in the state dir; readers tail and follow it.
//! The file outlives the supervising process, so logs survive agent restarts.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Errors reading logs.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339 UTC timestamp taken when the init read the line.
    pub time: String,
    pub stream: Stream,
    /// The line including its trailing newline (absent for a partial line).
    pub log: String,
}

/// Splits a byte stream into lines and appends them as JSON entries (used by the init).
pub struct LineWriter {
    buf: Vec<u8>,
    stream: Stream,
}

/// Lines longer than this are flushed in pieces (Docker uses 16 KiB too).
const MAX_LINE: usize = 16 * 1024;

impl LineWriter {
    pub fn new(stream: Stream) -> Self {
        LineWriter {
            buf: Vec::new(),
            stream,
        }
    }

    /// Feeds bytes; complete lines are written to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut impl Write) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            self.emit(&line, out)?;
        }
        while self.buf.len() >= MAX_LINE {
            let part: Vec<u8> = self.buf.drain(..MAX_LINE).collect();
            self.emit(&part, out)?;
        }
        Ok(())
    }

    /// Writes a pending partial line.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if !self.buf.is_empty() {
            let part = std::mem::take(&mut self.buf);
            self.emit(&part, out)?;
        }
        Ok(())
    }

    fn emit(&self, bytes: &[u8], out: &mut impl Write) -> io::Result<()> {
        let e = LogEntry {
            time: crate::timefmt::rfc3339_now(),
            stream: self.stream,
            log: String::from_utf8_lossy(bytes).into_owned(),
        };
        let mut line = serde_json::to_vec(&e).map_err(io::Error::other)?;
        line.push(b'\n');
        out.write_all(&line)
    }
}

fn parse_lines(text: &str) -> Vec<LogEntry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Reads the whole log, keeping the last `tail` entries when given.
pub fn read_log(path: &Path, tail: Option<usize>) -> Result<Vec<LogEntry>, LogError> {
    let mut s = String::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_string(&mut s).map_err(|source| LogError::Io {
                path: path.into(),
                source,
            })?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LogError::Io {
                path: path.into(),
                source,
            })
        }
    }
    let mut v = parse_lines(&s);
    if let Some(t) = tail {
        let skip = v.len().saturating_sub(t);
        v.drain(..skip);
    }
    Ok(v)
}

/// A blocking iterator over log entries that keeps reading new lines until `is_done` says the
/// container exited and the file is drained (`docker logs -f`).
pub struct LogFollower {
    reader: BufReader<File>,
    pending: std::collections::VecDeque<LogEntry>,
    partial: String,
    is_done: Box<dyn Fn() -> bool + Send>,
    poll: Duration,
}

impl LogFollower {
    /// Starts following `path` after emitting the last `tail` existing entries (all when
    /// `None`).
    pub fn open(
        path: &Path,
        tail: Option<usize>,
        is_done: Box<dyn Fn() -> bool + Send>,
    ) -> Result<Self, LogError> {
        let ioe = |source| LogError::Io {
            path: path.into(),
            source,
        };
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                File::create(path).map_err(ioe)?;
                File::open(path).map_err(ioe)?
            }
            Err(e) => return Err(ioe(e)),
        };
        let mut reader = BufReader::new(f);
        let mut s = String::new();
        reader.read_to_string(&mut s).map_err(ioe)?;
        // Keep a trailing partial line for the next read.
        let (complete, partial) = match s.rfind('\n') {
            Some(i) => (&s[..=i], s[i + 1..].to_string()),
            None => ("", s.clone()),
        };
        let mut v = parse_lines(complete);
        if let Some(t) = tail {
            let skip = v.len().saturating_sub(t);
            v.drain(..skip);
        }
        let _ = reader.stream_position();
        Ok(LogFollower {
            reader,
            pending: v.into(),
            partial,
            is_done,
            poll: Duration::from_millis(50),
        })
    }
}

impl Iterator for LogFollower {
    type Item = LogEntry;
    fn next(&mut self) -> Option<LogEntry> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let done_before = (self.is_done)();
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    if done_before {
                        return None;
                    }
                    std::thread::sleep(self.poll);
                }
                Ok(_) => {
                    self.partial.push_str(&line);
                    if self.partial.ends_with('\n') {
                        let l = std::mem::take(&mut self.partial);
                        if let Ok(e) = serde_json::from_str(l.trim_end()) {
                            self.pending.push_back(e);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_long_lines() {
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stdout);
        w.feed(b"hel", &mut out).unwrap();
        w.feed(b"lo\nwor", &mut out).unwrap();
        w.finish(&mut out).unwrap();
        let v = parse_lines(std::str::from_utf8(&out).unwrap());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].log, "hello\n");
        assert_eq!(v[1].log, "wor");
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stderr);
        w.feed(&vec![b'x'; MAX_LINE + 10], &mut out).unwrap();
        assert_eq!(parse_lines(std::str::from_utf8(&out).unwrap()).len(), 1);
    }

    #[test]
    fn tail_and_follow() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("log");
        let mut f = File::create(&p).unwrap();
        let mut w = LineWriter::new(Stream::Stdout);
        w.feed(b"1\n2\n3\n", &mut f).unwrap();
        let v = read_log(&p, Some(2)).unwrap();
        assert_eq!(
            v.iter().map(|e| e.log.as_str()).collect::<Vec<_>>(),
            ["2\n", "3\n"]
        );
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        let mut fo = LogFollower::open(
            &p,
            Some(1),
            Box::new(move || d2.load(std::sync::atomic::Ordering::SeqCst)),
        )
        .unwrap();
        assert_eq!(fo.next().unwrap().log, "3\n");
        w.feed(b"4\n", &mut f).unwrap();
        assert_eq!(fo.next().unwrap().log, "4\n");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(fo.next(), None);
    }
}
