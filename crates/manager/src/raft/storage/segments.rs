//! The Raft log's entries as append-only segment files; knows records and files, not Raft.
//!
//! sled held the log between snapshots in the manager's heap: the 8 MiB kept behind every
//! snapshot for lagging followers, plus everything appended since, stayed resident (the soak's
//! step from round 2 to 3 and ~5 MB of its later growth, BENCHMARKS 2026-12-05). Here the
//! entries live in files and the kernel's page cache; memory holds one offset per entry.
//!
//! Layout: `<dir>/<first index, 20 digits>.seg`, each starting with [`MAGIC`] and the index of
//! the entry before it (u64 LE, `u64::MAX` for none), then records `payload length (u32 LE) |
//! CRC-32 of index and payload (u32 LE) | index (u64 LE) | payload` with consecutive indexes. A
//! new segment is started once the active one holds [`SEGMENT_BYTES`], or when an append does
//! not follow the last entry (openraft starts anew after a snapshot that covers the whole log;
//! its storage suite appends with gaps), so the entry-before index tells a recorded gap from a
//! lost file. Crash safety:
//! - an append is written at the end of the active segment and synced before it is
//!   acknowledged; a torn record at the end of the *last* segment is cut off when opening;
//! - a truncation deletes whole segments newest first, then shortens one and syncs it;
//!   a purge deletes whole segments oldest first: at every step the files hold one
//!   contiguous run of entries;
//! - anything else that does not check out (a bad record before the last one, a gap between
//!   segments) is an error that names the file, never skipped.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SWRLOG01";
const HEADER: u64 = 8 + 8;
const RECORD_HEADER: u64 = 4 + 4 + 8;
const NO_PREV: u64 = u64::MAX;

/// Bytes after which the next append starts a new segment (purges free whole segments).
pub(super) const SEGMENT_BYTES: u64 = 8 << 20;

struct Segment {
    first: u64,
    /// The last entry of the log when this segment was started.
    prev: Option<u64>,
    path: PathBuf,
    file: Arc<File>,
    /// Where the record of entry `first + i` starts.
    offsets: Vec<u64>,
    /// End of the last whole record.
    end: u64,
}

impl Segment {
    fn last(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first + self.offsets.len() as u64 - 1)
    }

    /// Byte range of the records of entries `[from, to)` (all inside this segment).
    fn span(&self, from: u64, to: u64) -> (u64, u64) {
        let i = (from - self.first) as usize;
        let j = (to - self.first) as usize;
        let end = self.offsets.get(j).copied().unwrap_or(self.end);
        (self.offsets[i], end)
    }
}

/// Admits items while their sizes fit a byte budget; the first is always admitted.
pub(super) struct Budget {
    left: usize,
    first: bool,
}

impl Budget {
    pub(super) fn new(bytes: usize) -> Self {
        Budget {
            left: bytes,
            first: true,
        }
    }

    pub(super) fn admit(&mut self, size: usize) -> bool {
        if std::mem::take(&mut self.first) {
            self.left = self.left.saturating_sub(size);
            return true;
        }
        match self.left.checked_sub(size) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }
}

/// The segment files of one log, and where each entry is in them.
pub(super) struct Segments {
    dir: PathBuf,
    segs: Vec<Segment>,
    /// Entries up to here are purged, even where their segment stays (it holds later ones).
    purged: Option<u64>,
}

fn corrupt(path: &Path, at: u64, what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "raft log segment {} is damaged at byte {at}: {what}; this manager cannot trust its \
             log: remove it from the cluster and join it again with an empty state dir",
            path.display()
        ),
    )
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// What scanning one segment file found.
enum Scan {
    /// Every record checked out.
    Whole(Segment),
    /// A bad record at `at`, with what was wrong; `seg` holds the records before it.
    Damaged { seg: Segment, at: u64, what: String },
}

fn scan(path: PathBuf, first: u64) -> std::io::Result<Scan> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?;
    let len = file.metadata()?.len();
    let mut r = std::io::BufReader::with_capacity(256 * 1024, &file);
    let mut header = [0u8; HEADER as usize];
    let mut seg = Segment {
        first,
        prev: None,
        path,
        file: Arc::new(file.try_clone()?),
        offsets: Vec::new(),
        end: 0,
    };
    if len < HEADER {
        let what = "shorter than its header".to_string();
        return Ok(Scan::Damaged { seg, at: 0, what });
    }
    r.read_exact(&mut header)?;
    if &header[..8] != MAGIC {
        return Err(corrupt(&seg.path, 0, "not a swarm raft log segment"));
    }
    let prev = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    seg.prev = (prev != NO_PREV).then_some(prev);
    seg.end = HEADER;
    let mut payload = Vec::new();
    loop {
        let at = seg.end;
        if at == len {
            return Ok(Scan::Whole(seg));
        }
        if len - at < RECORD_HEADER {
            let what = "a record header cut short".to_string();
            return Ok(Scan::Damaged { seg, at, what });
        }
        let mut header = [0u8; RECORD_HEADER as usize];
        r.read_exact(&mut header)?;
        let size = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as u64;
        let sum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let index = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let want = first + seg.offsets.len() as u64;
        if index != want {
            let what = format!("entry {index} where entry {want} belongs");
            return Ok(Scan::Damaged { seg, at, what });
        }
        if len - at - RECORD_HEADER < size {
            let what = format!("entry {index} cut short");
            return Ok(Scan::Damaged { seg, at, what });
        }
        payload.resize(size as usize, 0);
        r.read_exact(&mut payload)?;
        if crc(index, &payload) != sum {
            let what = format!("entry {index} fails its checksum");
            return Ok(Scan::Damaged { seg, at, what });
        }
        seg.offsets.push(at);
        seg.end = at + RECORD_HEADER + size;
    }
}

impl Segments {
    /// Opens the log in `dir` (created if missing), cutting off a torn end of the last segment.
    pub(super) fn open(dir: &Path) -> std::io::Result<Segments> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            found.push(first);
        }
        found.sort_unstable();
        let mut segs: Vec<Segment> = Vec::with_capacity(found.len());
        let count = found.len();
        for (n, first) in found.into_iter().enumerate() {
            let path = dir.join(format!("{first:020}.seg"));
            let last_file = n + 1 == count;
            let seg = match scan(path, first)? {
                Scan::Whole(seg) => seg,
                Scan::Damaged { seg, at, what } if last_file => {
                    // A crash while appending: what was never acknowledged goes.
                    tracing::warn!(segment = %seg.path.display(), at, %what,
                        "cutting off the torn end of the raft log");
                    if at == 0 {
                        std::fs::remove_file(&seg.path)?;
                        sync_dir(dir)?;
                        continue;
                    }
                    seg.file.set_len(at)?;
                    seg.file.sync_all()?;
                    seg
                }
                Scan::Damaged { seg, at, what } => return Err(corrupt(&seg.path, at, what)),
            };
            // The first segment may follow purged ones; every later one follows the one before.
            let before = segs.iter().rev().find_map(Segment::last);
            if !segs.is_empty() && seg.prev != before {
                let at = |i: Option<u64>| i.map_or("none".to_string(), |i| format!("entry {i}"));
                return Err(corrupt(
                    &seg.path,
                    0,
                    format!(
                        "it was started after {} but the segment before it ends at {}",
                        at(seg.prev),
                        at(before)
                    ),
                ));
            }
            segs.push(seg);
        }
        Ok(Segments {
            dir: dir.to_path_buf(),
            segs,
            purged: None,
        })
    }

    #[cfg(test)]
    pub(super) fn first_index(&self) -> Option<u64> {
        let after = self.purged.map_or(0, |p| p + 1);
        self.segs
            .iter()
            .find(|s| s.last().is_some_and(|l| l >= after))
            .map(|s| s.first.max(after))
    }

    pub(super) fn last_index(&self) -> Option<u64> {
        self.segs.iter().rev().find_map(Segment::last)
    }

    /// Entry payloads from `start` (or the first held and not purged, if later) up to `end` exclusive,
    /// stopping before the one that would take them past `budget` bytes (the first is always
    /// taken).
    pub(super) fn read(
        &self,
        start: u64,
        end: u64,
        budget: usize,
    ) -> std::io::Result<Vec<bytes::Bytes>> {
        let start = start.max(self.purged.map_or(0, |p| p + 1));
        let mut out = Vec::new();
        let mut fit = Budget::new(budget);
        for seg in &self.segs {
            let Some(last) = seg.last() else { continue };
            let from = start.max(seg.first);
            let to = end.min(last + 1);
            if from >= to {
                continue;
            }
            // Cut the run where the budget ends, from the offsets alone.
            let mut stop = from;
            while stop < to {
                let (a, b) = seg.span(stop, stop + 1);
                if !fit.admit((b - a - RECORD_HEADER) as usize) {
                    break;
                }
                stop += 1;
            }
            if stop > from {
                let (a, b) = seg.span(from, stop);
                let mut buf = vec![0u8; (b - a) as usize];
                seg.file.read_exact_at(&mut buf, a)?;
                // One read for the run; the payloads are slices of it, not copies.
                let buf = bytes::Bytes::from(buf);
                let mut at = 0usize;
                for index in from..stop {
                    let h = &buf[at..at + RECORD_HEADER as usize];
                    let size = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
                    let sum = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
                    let body = at + RECORD_HEADER as usize;
                    let payload = buf.get(body..body + size).ok_or_else(|| {
                        corrupt(&seg.path, a + at as u64, format!("entry {index} cut short"))
                    })?;
                    if crc(index, payload) != sum {
                        return Err(corrupt(
                            &seg.path,
                            a + at as u64,
                            format!("entry {index} fails its checksum"),
                        ));
                    }
                    out.push(buf.slice(body..body + size));
                    at = body + size;
                }
            }
            if stop < to {
                break;
            }
        }
        Ok(out)
    }

    /// Writes `records` (consecutive indexes following the last entry, or starting a log that
    /// holds none) at the end of the log; returns the file to sync before acknowledging them.
    pub(super) fn append(&mut self, records: &[(u64, Vec<u8>)]) -> std::io::Result<Arc<File>> {
        let Some(&(first, _)) = records.first() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "nothing to append",
            ));
        };
        let last = self.last_index();
        if let Some(last) = last.filter(|l| first <= *l) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "append of entry {first} over entry {last}: the log must be truncated first"
                ),
            ));
        }
        // An empty segment (its first append failed) is named after an entry it never got.
        if self
            .segs
            .last()
            .is_some_and(|s| s.offsets.is_empty() && s.first != first)
        {
            let empty = self.segs.pop().expect("checked");
            std::fs::remove_file(&empty.path)?;
            sync_dir(&self.dir)?;
        }
        let follows = last.is_none_or(|l| first == l + 1);
        let rotate = match self.segs.last() {
            None => true,
            Some(s) => !follows || (s.end >= SEGMENT_BYTES && !s.offsets.is_empty()),
        };
        if rotate {
            self.start_segment(first, last)?;
        }
        let seg = self.segs.last_mut().expect("a segment was just ensured");
        let mut buf = Vec::with_capacity(
            records
                .iter()
                .map(|(_, p)| p.len() + RECORD_HEADER as usize)
                .sum(),
        );
        let mut offsets = Vec::with_capacity(records.len());
        for (n, (index, payload)) in records.iter().enumerate() {
            if *index != first + n as u64 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("append of entries not in sequence at entry {index}"),
                ));
            }
            let size = u32::try_from(payload.len()).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "log entry over 4 GiB")
            })?;
            offsets.push(seg.end + buf.len() as u64);
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&crc(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
        }
        if let Err(e) = seg.file.write_all_at(&buf, seg.end) {
            // Nothing half-written stays behind the last whole record.
            let _ = seg.file.set_len(seg.end);
            return Err(e);
        }
        seg.end += buf.len() as u64;
        seg.offsets.extend(offsets);
        Ok(seg.file.clone())
    }

    fn start_segment(&mut self, first: u64, prev: Option<u64>) -> std::io::Result<()> {
        let path = self.dir.join(format!("{first:020}.seg"));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        f.write_all(MAGIC)?;
        f.write_all(&prev.unwrap_or(NO_PREV).to_le_bytes())?;
        f.sync_all()?;
        sync_dir(&self.dir)?;
        self.segs.push(Segment {
            first,
            prev,
            path,
            file: Arc::new(f),
            offsets: Vec::new(),
            end: HEADER,
        });
        Ok(())
    }

    /// Removes entry `index` and every later one, durably.
    pub(super) fn truncate_from(&mut self, index: u64) -> std::io::Result<()> {
        let mut removed = false;
        while let Some(seg) = self.segs.last() {
            if seg.first < index {
                break;
            }
            std::fs::remove_file(&seg.path)?;
            self.segs.pop();
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        if let Some(seg) = self.segs.last_mut() {
            if seg.last().is_some_and(|l| l >= index) {
                let at = seg.offsets[(index - seg.first) as usize];
                seg.file.set_len(at)?;
                seg.file.sync_all()?;
                seg.offsets.truncate((index - seg.first) as usize);
                seg.end = at;
            }
        }
        Ok(())
    }

    /// Purges the entries up to `index`: deletes the segments that hold only those (a purged
    /// entry in a segment that also holds later ones stays on disk, unread, until the whole
    /// segment goes).
    pub(super) fn purge_through(&mut self, index: u64) -> std::io::Result<()> {
        self.purged = self.purged.max(Some(index));
        let mut removed = 0;
        for seg in &self.segs {
            match seg.last() {
                Some(l) if l <= index => {}
                // An empty segment goes with the rest only when it is the last one left.
                None if removed + 1 == self.segs.len() => {}
                _ => break,
            }
            std::fs::remove_file(&seg.path)?;
            removed += 1;
        }
        if removed > 0 {
            self.segs.drain(..removed);
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Segment files on disk (for tests and the log).
    #[cfg(test)]
    pub(super) fn files(&self) -> Vec<PathBuf> {
        self.segs.iter().map(|s| s.path.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64, n: usize) -> (u64, Vec<u8>) {
        (i, vec![(i % 251) as u8; n])
    }

    fn fill(s: &mut Segments, from: u64, to: u64, n: usize) {
        for i in from..=to {
            s.append(&[rec(i, n)]).expect("append");
        }
    }

    #[test]
    fn entries_survive_reopening_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::open(dir.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (None, None));
        // 1 MiB entries: a new segment every 8.
        fill(&mut s, 5, 30, 1 << 20);
        assert_eq!(s.files().len(), 4);
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (Some(5), Some(30)));
        let got = s.read(7, 20, usize::MAX).unwrap();
        assert_eq!(got.len(), 13);
        assert!(got.iter().zip(7..).all(|(p, i)| *p == rec(i, 1 << 20).1));
        // The budget: the first always, then only what fits.
        assert_eq!(s.read(7, 20, 0).unwrap().len(), 1);
        assert_eq!(s.read(7, 20, (3 << 20) + 10).unwrap().len(), 3);
        // Before the first entry: from the first held.
        assert_eq!(s.read(0, 7, usize::MAX).unwrap().len(), 2);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_appending_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::open(dir.path()).unwrap();
        fill(&mut s, 1, 10, 100);
        let path = s.files()[0].clone();
        drop(s);
        // Half a record: a crash in the middle of an append.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let (i, p) = rec(11, 100);
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(&crc(i, &p).to_le_bytes()).unwrap();
        f.write_all(&i.to_le_bytes()).unwrap();
        f.write_all(&p[..40]).unwrap();
        drop(f);
        let mut s = Segments::open(dir.path()).unwrap();
        assert_eq!(s.last_index(), Some(10));
        s.append(&[rec(11, 100)]).unwrap();
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!(s.last_index(), Some(11));
        assert_eq!(s.read(11, 12, usize::MAX).unwrap()[0], rec(11, 100).1);
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::open(dir.path()).unwrap();
        fill(&mut s, 1, 12, 1 << 20);
        let first = s.files()[0].clone();
        drop(s);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap();
        f.write_all_at(b"x", HEADER + RECORD_HEADER + 10).unwrap();
        let err = Segments::open(dir.path()).err().expect("refused");
        let msg = err.to_string();
        assert!(msg.contains(&first.display().to_string()), "{msg}");
        assert!(msg.contains("entry 1 fails its checksum"), "{msg}");
        // A gap between segments is refused too.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::open(dir.path()).unwrap();
        fill(&mut s, 1, 20, 1 << 20);
        let middle = s.files()[1].clone();
        drop(s);
        std::fs::remove_file(middle).unwrap();
        let msg = Segments::open(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains("started after entry 16 but the segment before it ends at entry 8"),
            "{msg}"
        );
    }

    #[test]
    fn truncation_and_purge_remove_whole_segments_and_keep_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::open(dir.path()).unwrap();
        fill(&mut s, 1, 30, 1 << 20);
        assert_eq!(s.files().len(), 4);
        s.truncate_from(12).unwrap();
        assert_eq!((s.files().len(), s.last_index()), (2, Some(11)));
        // The next append follows the cut; nothing is written over.
        assert!(s.append(&[rec(11, 10)]).is_err(), "an overlap is refused");
        s.append(&[rec(12, 10)]).unwrap();
        s.purge_through(9).unwrap();
        assert_eq!(s.files().len(), 1, "entry 9 shares a segment with 10..");
        assert_eq!(s.first_index(), Some(10));
        assert_eq!(s.read(0, 11, usize::MAX).unwrap(), vec![rec(10, 1 << 20).1]);
        s.purge_through(12).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (None, None));
        assert!(s.files().is_empty());
        // A log purged past its end starts again anywhere (a snapshot was installed).
        s.append(&[rec(100, 10), rec(101, 10)]).unwrap();
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (Some(100), Some(101)));
        assert_eq!(s.read(0, 1000, usize::MAX).unwrap().len(), 2);
    }

    #[test]
    fn an_empty_segment_is_not_written_under_another_entrys_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::open(dir.path()).unwrap();
        fill(&mut s, 1, 3, 10);
        // A segment started for entry 4 whose write failed, then entry 4 truncated away and
        // a gap after it: what comes next must not land in the file named for entry 4.
        s.start_segment(4, Some(3)).unwrap();
        s.append(&[rec(6, 10)]).unwrap();
        drop(s);
        let s = Segments::open(dir.path()).unwrap();
        assert_eq!(s.files().len(), 2);
        assert_eq!(s.read(0, 10, usize::MAX).unwrap().len(), 4);
        assert_eq!(s.last_index(), Some(6));
    }

    #[test]
    fn an_append_after_a_gap_starts_a_segment_that_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segments::open(dir.path()).unwrap();
        fill(&mut s, 0, 1, 10);
        s.append(&[rec(3, 10), rec(4, 10)]).unwrap();
        assert_eq!(s.files().len(), 2);
        drop(s);
        let mut s = Segments::open(dir.path()).unwrap();
        let got = s.read(0, 10, usize::MAX).unwrap();
        assert_eq!(
            got,
            vec![rec(0, 10).1, rec(1, 10).1, rec(3, 10).1, rec(4, 10).1]
        );
        // Truncating into the gap removes the later run only.
        s.truncate_from(2).unwrap();
        assert_eq!((s.files().len(), s.last_index()), (1, Some(1)));
    }
}
