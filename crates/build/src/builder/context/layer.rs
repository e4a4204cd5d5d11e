//! The tar a COPY or ADD becomes: parent directories with the image's attributes, files,
//! directories (`.dockerignore` and `--exclude` applied), archives unpacked at the destination,
//! owners and modes from `--chown`/`--chmod`.

use super::*;

pub(super) struct LayerWriter<'a> {
    pub(super) tar: &'a mut tar::Builder<fs::File>,
    pub(super) ignore: &'a IgnoreMatcher,
    /// `--exclude` patterns.
    pub(super) exclude: &'a IgnoreMatcher,
    /// `COPY --parents`: each source keeps its path under the destination.
    pub(super) parents: bool,
    pub(super) context: &'a Path,
    pub(super) owner: &'a Owner,
}

impl LayerWriter<'_> {
    /// The directories above the destination, with the image's attributes where it has them.
    pub(super) fn parents(
        &mut self,
        dest: &str,
        into_dir: bool,
        lower: &[PathBuf],
    ) -> std::io::Result<()> {
        let path = Path::new(dest.trim_start_matches('/'));
        let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
        dirs.pop(); // the root itself
        dirs.reverse();
        if into_dir && !path.as_os_str().is_empty() {
            dirs.push(path);
        }
        for d in dirs {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            match lower
                .iter()
                .rev()
                .find_map(|l| fs::symlink_metadata(l.join(d)).ok())
            {
                Some(md) if md.is_dir() => {
                    h.set_mode(md.mode() & 0o7777);
                    h.set_uid(md.uid().into());
                    h.set_gid(md.gid().into());
                    h.set_mtime(md.mtime().max(0) as u64);
                }
                _ => {
                    h.set_mode(0o755);
                    h.set_uid(self.owner.uid);
                    h.set_gid(self.owner.gid);
                }
            }
            self.tar
                .append_data(&mut h, format!("{}/", d.display()), std::io::empty())?;
        }
        Ok(())
    }

    pub(super) fn item(&mut self, item: &Item, dest: &str, into_dir: bool) -> std::io::Result<()> {
        let d = dest.trim_start_matches('/');
        match item {
            Item::Data { bytes, dest: name } => {
                let at = if into_dir {
                    under(d, name)
                } else {
                    d.to_string()
                };
                let mut h = self.header(None, 0o644);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(bytes.len() as u64);
                self.tar.append_data(&mut h, at, &bytes[..])
            }
            Item::Archive { src, gzip } => self.archive(src, *gzip, d),
            Item::Path { src, dest: name } => {
                let md = fs::metadata(src)?;
                if self.parents {
                    self.ancestors(d, name)?;
                }
                if md.is_dir() {
                    let rel = src
                        .strip_prefix(self.context)
                        .unwrap_or(Path::new(""))
                        .to_path_buf();
                    if self.parents {
                        self.entry(src, &under(d, name), &md)?;
                        return self.dir(src, &rel, &under(d, name));
                    }
                    return self.dir(src, &rel, d);
                }
                let at = if into_dir {
                    under(d, name)
                } else {
                    d.to_string()
                };
                self.entry(src, &at, &md)
            }
        }
    }

    /// `--parents`: the directories between the destination and a source (`a`, `a/b` for
    /// `a/b/file`), with the attributes they have in the source root.
    pub(super) fn ancestors(&mut self, d: &str, name: &str) -> std::io::Result<()> {
        let mut prefix = PathBuf::new();
        let comps: Vec<_> = Path::new(name).components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            prefix.push(c);
            if let Ok(md) = fs::metadata(self.context.join(&prefix)) {
                self.entry(
                    &self.context.join(&prefix),
                    &under(d, &prefix.display().to_string()),
                    &md,
                )?;
            }
        }
        Ok(())
    }

    /// The contents of context directory `src` (context-relative `rel`) under `at`.
    pub(super) fn dir(&mut self, src: &Path, rel: &Path, at: &str) -> std::io::Result<()> {
        let mut entries = Vec::new();
        walk(src, Path::new(""), &mut |r, md| {
            let in_ctx = rel.join(r);
            let in_ctx = in_ctx.to_string_lossy();
            if self.ignore.excluded(&in_ctx)
                || self.exclude.excluded(&in_ctx)
                || self.exclude.excluded(&r.to_string_lossy())
            {
                return false;
            }
            entries.push((r.to_path_buf(), md.clone()));
            true
        })?;
        for (r, md) in entries {
            self.entry(&src.join(&r), &under(at, &r.display().to_string()), &md)?;
        }
        Ok(())
    }

    /// The entries of a tar archive (plain or gzip) under `at`, with their modes and (unless
    /// `--chown`) owners; a path or hard link that would leave `at` is refused.
    pub(super) fn archive(&mut self, src: &Path, gzip: bool, at: &str) -> std::io::Result<()> {
        let f = std::io::BufReader::new(fs::File::open(src)?);
        let r: Box<dyn Read> = if gzip {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        };
        let mut a = tar::Archive::new(r);
        let inside = |p: &Path| -> std::io::Result<String> {
            let rel = clean(&p.to_string_lossy(), &Origin::Archive).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", src.display()),
                )
            })?;
            Ok(under(at, &rel.display().to_string()))
        };
        for e in a.entries()? {
            let mut e = e?;
            let path = e.path()?.into_owned();
            if path.components().all(|c| matches!(c, Component::CurDir)) {
                continue; // the archive's "./"
            }
            let to = inside(&path)?;
            let mut h = e.header().clone();
            if self.owner.chown {
                h.set_uid(self.owner.uid);
                h.set_gid(self.owner.gid);
            }
            match h.entry_type() {
                tar::EntryType::Directory => {
                    self.tar
                        .append_data(&mut h, format!("{to}/"), std::io::empty())?
                }
                tar::EntryType::Symlink => {
                    let target = e.link_name()?.unwrap_or_default().into_owned();
                    self.tar.append_link(&mut h, &to, target)?
                }
                tar::EntryType::Link => {
                    let target = e.link_name()?.unwrap_or_default().into_owned();
                    let target = inside(&target)?;
                    self.tar.append_link(&mut h, &to, target)?
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.tar.append_data(&mut h, &to, &mut e)?
                }
                // Devices and FIFOs need privileges a layer carries fine; GNU/PAX headers are
                // read by `entries()`; anything else is left out as Docker's untar does.
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    self.tar.append_data(&mut h, &to, std::io::empty())?
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn entry(&mut self, src: &Path, at: &str, md: &fs::Metadata) -> std::io::Result<()> {
        let mut h = self.header(Some(md), md.mode() & 0o7777);
        let ft = md.file_type();
        if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            return self.tar.append_link(&mut h, at, fs::read_link(src)?);
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            return self
                .tar
                .append_data(&mut h, format!("{at}/"), std::io::empty());
        }
        if !ft.is_file() {
            return Ok(()); // devices, sockets and FIFOs of a context are not copied
        }
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        self.tar.append_data(&mut h, at, fs::File::open(src)?)
    }

    pub(super) fn header(&self, md: Option<&fs::Metadata>, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_mode(self.owner.mode.unwrap_or(mode));
        h.set_uid(self.owner.uid);
        h.set_gid(self.owner.gid);
        h.set_mtime(md.map(|m| m.mtime().max(0) as u64).unwrap_or(0));
        h.set_size(0);
        h
    }
}
