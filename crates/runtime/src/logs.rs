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

/// The log's file name in the container's state dir; rotated files add `.1`, `.2`, …
pub const LOG_FILE: &str = "container.log";

/// Rotated files (`container.log.N … .1`) that exist next to `path`, oldest first.
pub fn rotated(path: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for i in 1..=100 {
        let p = PathBuf::from(format!("{}.{i}", path.display()));
        if !p.exists() {
            break;
        }
        v.push(p);
    }
    v.reverse();
    v
}

/// What the container init appends to: `container.log`, rotated by size like Docker's
/// json-file (`max-size`, `max-file`): `container.log` becomes `.1`, `.1` becomes `.2`, …, and
/// the oldest beyond `max_files - 1` is overwritten. With one file the log is emptied instead.
/// Works on the state dir's fd: the init runs inside the container's root by then.
pub struct RotatingLog {
    file: File,
    dir: std::os::fd::RawFd,
    written: u64,
    max_size: u64,
    max_files: u32,
}

impl RotatingLog {
    /// `dir`: the state dir, open for the lifetime of this writer.
    pub fn new(file: File, dir: std::os::fd::RawFd, max_size: u64, max_files: u32) -> Self {
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        RotatingLog {
            file,
            dir,
            written,
            max_size,
            max_files: max_files.max(1),
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files <= 1 {
            // O_APPEND: the next write lands at the new end, 0.
            self.file.set_len(0)?;
        } else {
            let name = |i: u32| {
                if i == 0 {
                    LOG_FILE.to_string()
                } else {
                    format!("{LOG_FILE}.{i}")
                }
            };
            for i in (0..self.max_files - 1).rev() {
                let from = std::ffi::CString::new(name(i)).expect("no NUL");
                let to = std::ffi::CString::new(name(i + 1)).expect("no NUL");
                // SAFETY: two valid NUL-terminated names relative to an open directory fd.
                let r = unsafe { libc::renameat(self.dir, from.as_ptr(), self.dir, to.as_ptr()) };
                if r != 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(e);
                    }
                }
            }
            let fd = crate::sys::openat(
                self.dir,
                Path::new(LOG_FILE),
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_TRUNC,
                0o640,
            )?;
            self.file = File::from(fd);
        }
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.max_size > 0 && self.written > 0 && self.written + buf.len() as u64 > self.max_size
        {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
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
    for old in rotated(path) {
        // A rotated file that went away meanwhile has nothing to add.
        if let Ok(mut f) = File::open(&old) {
            let _ = f.read_to_string(&mut s);
        }
    }
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
    fn the_log_rotates_by_size_and_keeps_max_files() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let d = File::open(dir.path()).unwrap();
        let path = dir.path().join(LOG_FILE);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut log = RotatingLog::new(f, d.as_raw_fd(), 100, 3);
        let mut w = LineWriter::new(Stream::Stdout);
        for i in 0..40 {
            w.feed(format!("line {i}\n").as_bytes(), &mut log).unwrap();
        }
        // Every file stays within max-size (a line is never split), at most three exist.
        for p in [
            path.clone(),
            dir.path().join("container.log.1"),
            dir.path().join("container.log.2"),
        ] {
            assert!(
                std::fs::metadata(&p).unwrap().len() <= 100,
                "{}",
                p.display()
            );
        }
        assert!(!dir.path().join("container.log.3").exists());
        // The newest lines are all there, in order, across the files.
        let all = read_log(&path, None).unwrap();
        assert_eq!(all.last().unwrap().log, "line 39\n");
        let n: Vec<usize> = all
            .iter()
            .map(|e| e.log.trim().trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
        assert!(n.len() < 40, "old lines were dropped");
        // One file: emptied instead of rotated.
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let mut one = RotatingLog::new(f, d.as_raw_fd(), 100, 1);
        for i in 0..10 {
            w.feed(format!("again {i}\n").as_bytes(), &mut one).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
    }

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
