//! A container's changes as an OCI layer: the overlayfs upper directory of a container (what a
//! build step's `RUN` wrote, deleted and replaced) written as an uncompressed layer tar, the
//! inverse of `unpack.rs`.
//!
//! overlayfs records a deletion as a whiteout (a character device 0/0 named like the deleted
//! entry) and a directory that replaced a lower one as opaque (`trusted.overlay.opaque=y`, or
//! `user.overlay.opaque` in a user namespace); OCI layers say the same with `.wh.NAME` and
//! `DIR/.wh..wh..opq` entries. Everything else goes in as it is: regular files (hard links
//! inside the layer as tar links), directories, symlinks, devices and FIFOs, with owner, mode,
//! modification time and the extended attributes an image keeps (`security.capability`,
//! `user.*`). Entries are written in name order, so the same upper directory always gives the
//! same bytes (a layer's digest is its cache key).
//!
//! An upper directory written with overlayfs' `metacopy` or `redirect_dir` features holds
//! entries that only make sense with their lower layers; those are refused, not written wrong.

use crate::sys;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {what}; mount the container's overlay with metacopy=off,redirect_dir=off to diff it")]
    Unsupported { path: PathBuf, what: &'static str },
}

/// What [`write_layer`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub bytes: u64,
}

/// Writes the changes held by the overlayfs upper directory `upper` to `w` as an uncompressed
/// OCI layer tar.
pub fn write_layer<W: Write>(upper: &Path, w: W) -> Result<DiffStats, DiffError> {
    let mut d = Differ {
        upper,
        tar: tar::Builder::new(w),
        links: HashMap::new(),
        stats: DiffStats::default(),
    };
    d.dir(Path::new(""))?;
    d.tar.finish().map_err(|source| DiffError::Io {
        path: upper.to_path_buf(),
        source,
    })?;
    Ok(d.stats)
}

struct Differ<'a, W: Write> {
    upper: &'a Path,
    tar: tar::Builder<W>,
    /// (device, inode) → the first path of a file with several links.
    links: HashMap<(u64, u64), PathBuf>,
    stats: DiffStats,
}

impl<W: Write> Differ<'_, W> {
    /// The entries of directory `rel` (relative to the upper directory), in name order.
    fn dir(&mut self, rel: &Path) -> Result<(), DiffError> {
        let full = self.upper.join(rel);
        let io = |source| DiffError::Io {
            path: full.clone(),
            source,
        };
        let mut names: Vec<_> = fs::read_dir(&full)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        names.sort();
        for name in names {
            self.entry(&rel.join(name))?;
        }
        Ok(())
    }

    fn entry(&mut self, rel: &Path) -> Result<(), DiffError> {
        let full = self.upper.join(rel);
        let io = |source| DiffError::Io {
            path: full.clone(),
            source,
        };
        let md = fs::symlink_metadata(&full).map_err(io)?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            return self.whiteout(rel, &md);
        }
        self.refuse_lower_references(&full)?;
        let mut h = header(&md);
        self.xattrs(&full)?;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.append(&mut h, &dir_name(rel), io::empty(), &full)?;
            if is_opaque(&full).map_err(io)? {
                let mut o = header(&md);
                o.set_mode(0o644);
                self.append(&mut o, &rel.join(".wh..wh..opq"), io::empty(), &full)?;
                self.stats.whiteouts += 1;
            }
            return self.dir(rel);
        }
        if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io)?;
            h.set_entry_type(tar::EntryType::Symlink);
            return self.link(&mut h, rel, &target, &full);
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.links.get(&(md.dev(), md.ino())).cloned() {
                    h.set_entry_type(tar::EntryType::Link);
                    return self.link(&mut h, rel, &first, &full);
                }
                self.links.insert((md.dev(), md.ino()), rel.to_path_buf());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            let f = fs::File::open(&full).map_err(io)?;
            self.stats.bytes += md.len();
            return self.append(&mut h, rel, f, &full);
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            // A socket: tar has no such entry (Docker leaves them out too).
            return Ok(());
        };
        h.set_entry_type(kind);
        let dev = md.rdev();
        h.set_device_major(libc::major(dev)).map_err(io)?;
        h.set_device_minor(libc::minor(dev)).map_err(io)?;
        self.append(&mut h, rel, io::empty(), &full)
    }

    /// A deleted entry: `.wh.NAME` beside where it was.
    fn whiteout(&mut self, rel: &Path, md: &fs::Metadata) -> Result<(), DiffError> {
        let name = rel.file_name().unwrap_or(OsStr::new(""));
        let mut wh = std::ffi::OsString::from(".wh.");
        wh.push(name);
        let path = rel.with_file_name(wh);
        let mut h = header(md);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        self.stats.whiteouts += 1;
        let full = self.upper.join(rel);
        self.append(&mut h, &path, io::empty(), &full)
    }

    /// overlayfs entries that point into the lower layers (metacopy: metadata only, the data
    /// below; redirect: a renamed directory) cannot stand alone in a layer.
    fn refuse_lower_references(&self, full: &Path) -> Result<(), DiffError> {
        for (attr, what) in [
            (
                "overlay.metacopy",
                "a metadata-only copy (overlayfs metacopy)",
            ),
            (
                "overlay.redirect",
                "a renamed directory (overlayfs redirect_dir)",
            ),
        ] {
            for ns in ["trusted.", "user."] {
                let found = sys::lgetxattr(full, &format!("{ns}{attr}")).map_err(|source| {
                    DiffError::Io {
                        path: full.to_path_buf(),
                        source,
                    }
                })?;
                if found.is_some() {
                    return Err(DiffError::Unsupported {
                        path: full.to_path_buf(),
                        what,
                    });
                }
            }
        }
        Ok(())
    }

    /// The extended attributes an image keeps, as a PAX header before the entry.
    fn xattrs(&mut self, full: &Path) -> Result<(), DiffError> {
        let io = |source| DiffError::Io {
            path: full.to_path_buf(),
            source,
        };
        let mut kept = Vec::new();
        for name in sys::llistxattr(full).map_err(io)? {
            let keep = name == "security.capability"
                || (name.starts_with("user.") && !name.starts_with("user.overlay."));
            if keep {
                if let Some(v) = sys::lgetxattr(full, &name).map_err(io)? {
                    kept.push((format!("SCHILY.xattr.{name}"), v));
                }
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        self.tar
            .append_pax_extensions(kept.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(io)
    }

    fn append(
        &mut self,
        h: &mut tar::Header,
        path: &Path,
        data: impl io::Read,
        full: &Path,
    ) -> Result<(), DiffError> {
        self.stats.entries += 1;
        self.tar
            .append_data(h, path, data)
            .map_err(|source| DiffError::Io {
                path: full.to_path_buf(),
                source,
            })
    }

    fn link(
        &mut self,
        h: &mut tar::Header,
        path: &Path,
        target: &Path,
        full: &Path,
    ) -> Result<(), DiffError> {
        self.stats.entries += 1;
        self.tar
            .append_link(h, path, target)
            .map_err(|source| DiffError::Io {
                path: full.to_path_buf(),
                source,
            })
    }
}

/// A GNU header with the entry's owner, permission bits and modification time.
fn header(md: &fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid().into());
    h.set_gid(md.gid().into());
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Directories are written as `NAME/`, as Docker writes them.
fn dir_name(rel: &Path) -> PathBuf {
    let mut s = rel.as_os_str().as_bytes().to_vec();
    s.push(b'/');
    PathBuf::from(OsStr::from_bytes(&s))
}

fn is_opaque(dir: &Path) -> io::Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if sys::lgetxattr(dir, name)?.is_some_and(|v| v == b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
