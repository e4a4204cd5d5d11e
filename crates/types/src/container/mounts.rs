//! `--mount`: the model (bind, volume, tmpfs with their options), Docker's field syntax, volume
//! names and the checks on a list of mounts.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    Bind,
    /// A named volume local to the node that runs the task.
    #[default]
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// Docker's bind propagation modes.
pub const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// One mount of a service's containers (`--mount`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Host path (bind), volume name (volume), empty (tmpfs).
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Bind only; empty = `rprivate`.
    pub bind_propagation: String,
    /// Volume only: do not populate a new volume from the image's content at the target.
    pub volume_nocopy: bool,
    /// Volume only: labels of the volume when this mount creates it.
    pub volume_labels: BTreeMap<String, String>,
    /// Volume only: `local` (the only driver).
    pub volume_driver: String,
    /// Volume only: options of the local driver (`type`, `device`, `o`).
    pub volume_options: BTreeMap<String, String>,
    /// Tmpfs only: size in bytes (0 = the kernel's default, half the memory).
    pub tmpfs_size_bytes: u64,
    /// Tmpfs only: permission bits (0 = 1777).
    pub tmpfs_mode: u32,
}

/// The options of Docker's `local` volume driver.
pub const LOCAL_VOLUME_OPTIONS: &[&str] = &["type", "device", "o"];

impl Mount {
    /// Parses Docker's `--mount` value: comma-separated `key=value` fields (`type`,
    /// `source|src`, `target|dst|destination`, `readonly|ro`, `bind-propagation`,
    /// `volume-nocopy`, `volume-label`, `volume-driver`, `volume-opt`, `tmpfs-size`,
    /// `tmpfs-mode`). The type defaults to `volume`, as in Docker.
    pub fn parse(spec: &str) -> Result<Mount, SpecError> {
        let mut m = Mount::default();
        if spec.len() > limits::MAX_VALUE_BYTES {
            return Err(bad(spec, "too long"));
        }
        for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.to_ascii_lowercase(), None),
            };
            let need = |v: Option<&str>| {
                v.map(str::to_string)
                    .ok_or_else(|| bad(spec, format!("{k} needs a value ({k}=...)")))
            };
            match k.as_str() {
                "type" => {
                    m.kind = match need(v)?.as_str() {
                        "bind" => MountType::Bind,
                        "volume" => MountType::Volume,
                        "tmpfs" => MountType::Tmpfs,
                        o => {
                            return Err(bad(
                                spec,
                                format!("type {o:?} is not supported: use bind, volume or tmpfs"),
                            ))
                        }
                    }
                }
                "source" | "src" => m.source = need(v)?,
                "target" | "dst" | "destination" => m.target = need(v)?,
                "readonly" | "ro" => m.readonly = parse_bool(spec, &k, v)?,
                "bind-propagation" => m.bind_propagation = need(v)?,
                "volume-nocopy" => m.volume_nocopy = parse_bool(spec, &k, v)?,
                "volume-driver" => m.volume_driver = need(v)?,
                "volume-label" | "volume-opt" => {
                    let kv = need(v)?;
                    let (a, b) = kv.split_once('=').ok_or_else(|| {
                        bad(spec, format!("{k} needs KEY=VALUE ({k}={kv} has no '=')"))
                    })?;
                    let map = if k == "volume-label" {
                        &mut m.volume_labels
                    } else {
                        &mut m.volume_options
                    };
                    map.insert(a.to_string(), b.to_string());
                }
                "tmpfs-size" => {
                    let s = need(v)?;
                    m.tmpfs_size_bytes = parse_size(&s).ok_or_else(|| {
                        bad(spec, format!("tmpfs-size {s:?}: expected bytes such as 64m or 1g"))
                    })?;
                }
                "tmpfs-mode" => {
                    let s = need(v)?;
                    m.tmpfs_mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            bad(spec, format!("tmpfs-mode {s:?}: expected octal bits such as 1770"))
                        })?;
                }
                o => {
                    return Err(bad(
                        spec,
                        format!("unknown field {o:?} (known: type, source, target, readonly, bind-propagation, volume-nocopy, volume-label, volume-driver, volume-opt, tmpfs-size, tmpfs-mode)"),
                    ))
                }
            }
        }
        m.validate()?;
        Ok(m)
    }

    /// The `--mount` syntax of this mount (for messages and `service inspect`'s readers).
    pub fn describe(&self) -> String {
        let mut s = format!("type={},target={}", self.kind.as_str(), self.target);
        if !self.source.is_empty() {
            s = format!("{s},source={}", self.source);
        }
        if self.readonly {
            s.push_str(",readonly");
        }
        s
    }

    /// Checks one mount on its own.
    pub fn validate(&self) -> Result<(), SpecError> {
        let me = self.describe();
        let target_ok = self.target.starts_with('/')
            && self.target != "/"
            && self.target.len() <= 4096
            && !self.target.split('/').any(|c| c == "..")
            && !self.target.contains('\0');
        if !target_ok {
            return Err(bad(
                &me,
                "target must be an absolute container path other than / and without '..' (target=/data)",
            ));
        }
        let bind_opts = !self.bind_propagation.is_empty();
        let vol_opts = self.volume_nocopy
            || !self.volume_labels.is_empty()
            || !self.volume_driver.is_empty()
            || !self.volume_options.is_empty();
        let tmpfs_opts = self.tmpfs_size_bytes != 0 || self.tmpfs_mode != 0;
        let kind = self.kind.as_str();
        let not = |what: &str| {
            Err(bad(
                &me,
                format!("{what} options do not apply to a {kind} mount"),
            ))
        };
        match self.kind {
            MountType::Bind => {
                if vol_opts {
                    return not("volume-*");
                }
                if tmpfs_opts {
                    return not("tmpfs-*");
                }
                if !self.source.starts_with('/') || self.source.contains('\0') {
                    return Err(bad(
                        &me,
                        "a bind mount needs an absolute host path as source (source=/srv/data)",
                    ));
                }
                if bind_opts && !PROPAGATIONS.contains(&self.bind_propagation.as_str()) {
                    return Err(bad(
                        &me,
                        format!(
                            "bind-propagation {:?}: use one of {}",
                            limits::echo(&self.bind_propagation),
                            PROPAGATIONS.join(", ")
                        ),
                    ));
                }
            }
            MountType::Volume => {
                if bind_opts {
                    return not("bind-*");
                }
                if tmpfs_opts {
                    return not("tmpfs-*");
                }
                validate_volume_name(&self.source).map_err(|r| bad(&me, r))?;
                if !self.volume_driver.is_empty() && self.volume_driver != "local" {
                    return Err(bad(
                        &me,
                        format!(
                            "volume driver {:?} is not available: only the local driver exists (volume-driver=local)",
                            limits::echo(&self.volume_driver)
                        ),
                    ));
                }
                for k in self.volume_options.keys() {
                    if !LOCAL_VOLUME_OPTIONS.contains(&k.as_str()) {
                        return Err(bad(
                            &me,
                            format!(
                                "volume-opt {:?} is not an option of the local driver: use type, device or o",
                                limits::echo(k)
                            ),
                        ));
                    }
                }
                let o = &self.volume_options;
                let complete = o.contains_key("type") && o.contains_key("device");
                if !o.is_empty() && !complete {
                    return Err(bad(
                        &me,
                        "volume-opt needs both type and device (e.g. volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=64m)",
                    ));
                }
                for k in self.volume_labels.keys() {
                    if k.is_empty() || k.contains('=') || k.chars().any(char::is_whitespace) {
                        return Err(SpecError::Label(limits::echo(k)));
                    }
                }
                limits::check_labels("volume", &self.volume_labels)?;
            }
            MountType::Tmpfs => {
                if bind_opts {
                    return not("bind-*");
                }
                if vol_opts {
                    return not("volume-*");
                }
                if !self.source.is_empty() {
                    return Err(bad(&me, "a tmpfs mount has no source: remove source="));
                }
            }
        }
        Ok(())
    }
}

/// Docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters here (a
/// directory name under the node's state dir).
pub fn validate_volume_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a volume mount needs a volume name as source (source=NAME); anonymous volumes are not supported".into());
    }
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid volume name {:?}: use 1-64 characters from [a-zA-Z0-9_.-], starting with a letter or digit",
            limits::echo(name)
        ))
    }
}

/// Checks a list of mounts: each one, their count, and no two on the same target.
pub fn validate_mounts(mounts: &[Mount]) -> Result<(), SpecError> {
    if mounts.len() > MAX_ENTRIES {
        return Err(SpecError::TooMany {
            what: "mounts".into(),
            count: mounts.len(),
            limit: MAX_ENTRIES,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in mounts {
        m.validate()?;
        let t = m.target.trim_end_matches('/').to_string();
        if !seen.insert(t.clone()) {
            return Err(bad(
                &m.describe(),
                format!("another mount already uses target {t}"),
            ));
        }
    }
    Ok(())
}
