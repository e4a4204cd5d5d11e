//! The state machine's snapshot as one file beside the sled database; owns the file format and
//! its atomic replacement, and knows nothing of Raft or of the store it holds.
//!
//! The snapshot used to be a value in sled. sled writes a value that large as a blob inside its
//! write path and flushes it with everything else, so every log append that waited for a flush
//! while a snapshot of ~55,000 services (tens of MiB) was stored waited behind it: writes stalled
//! for seconds and timed out (BENCHMARKS 2026-12-04). A plain file, written on a blocking thread
//! and renamed into place, keeps the log's flushes independent of the snapshot's size.
//!
//! Format: `SWSMSNP1` | meta length (u32 LE) | data length (u64 LE) | CRC-32 of meta and data
//! (u32 LE) | meta | data. A torn write never replaces the previous file (write to a temporary
//! name, sync, rename, sync the directory); a file that fails its checksum is an error, never
//! silently skipped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SWSMSNP1";
const HEADER: usize = 8 + 4 + 8 + 4;

/// Where one manager keeps its snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    pub fn in_dir(dir: &Path) -> Self {
        SnapshotFile {
            path: dir.join("state-machine.snapshot"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the snapshot with `meta` and `data`, durably, or leaves the old one in place.
    /// Blocking: call it from a blocking thread.
    pub fn write(&self, meta: &[u8], data: &[u8]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("snapshot.tmp");
        let meta_len = u32::try_from(meta.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "snapshot meta over 4 GiB")
        })?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(meta);
        crc.update(data);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&meta_len.to_le_bytes());
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        header.extend_from_slice(&crc.finalize().to_le_bytes());
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&header)?;
            f.write_all(meta)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The stored meta and data, `None` when no snapshot was ever written here.
    pub fn read(&self) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let corrupt = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {what}", self.path.display()),
            )
        };
        let mut header = [0u8; HEADER];
        f.read_exact(&mut header)
            .map_err(|_| corrupt("shorter than a snapshot header"))?;
        if &header[..8] != MAGIC {
            return Err(corrupt("not a snapshot file (bad magic)"));
        }
        let meta_len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let data_len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        let want_crc = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
        let file_len = f.metadata()?.len();
        if file_len != HEADER as u64 + meta_len as u64 + data_len {
            return Err(corrupt("length does not match its header (torn write?)"));
        }
        let mut meta = vec![0u8; meta_len];
        f.read_exact(&mut meta)?;
        let mut data = vec![0u8; data_len as usize];
        f.read_exact(&mut data)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&meta);
        crc.update(&data);
        if crc.finalize() != want_crc {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(Some((meta, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_and_replaces_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = SnapshotFile::in_dir(dir.path());
        assert!(f.read().unwrap().is_none(), "nothing written yet");
        f.write(b"{\"m\":1}", &[7u8; 100_000]).unwrap();
        f.write(b"{\"m\":2}", b"second").unwrap();
        let (meta, data) = f.read().unwrap().unwrap();
        assert_eq!(
            (meta.as_slice(), data.as_slice()),
            (&b"{\"m\":2}"[..], &b"second"[..])
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let f = SnapshotFile::in_dir(dir.path());
        f.write(b"meta", b"some data").unwrap();
        let mut bytes = std::fs::read(f.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(f.path(), &bytes).unwrap();
        let e = f.read().unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        std::fs::write(f.path(), &bytes[..bytes.len() - 3]).unwrap();
        let e = f.read().unwrap_err().to_string();
        assert!(e.contains("torn write"), "{e}");
        std::fs::write(f.path(), b"garbage that is long enough to be a header").unwrap();
        let e = f.read().unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
    }
}
