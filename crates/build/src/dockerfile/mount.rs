//! `RUN --mount=type=...,key=value,...`: the comma-separated field list parsed into a
//! [`Mount`] and checked as BuildKit's runmount does (known keys and types, value
//! formats, which keys each type allows, secret rules, read-only defaults).
//!
//! Mount values may use build variables (`target=${DIR}`): a mount whose text has a `$` is
//! checked for syntax at parse time and resolved by the builder with
//! [`RunMount::resolve`]. `from=` never takes variables, as in BuildKit.

use crate::shell::ExpandError;

/// One `--mount` flag as written, with the mount when it needs no variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// The flag value as written.
    pub spec: String,
    /// The stage or image named by `from=` (never contains variables).
    pub from: Option<String>,
    /// The parsed mount; `None` when `spec` uses variables and needs [`RunMount::resolve`].
    pub mount: Option<Mount>,
}

/// A checked mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub read_only: bool,
    /// Cache, secret or ssh id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size limit in bytes.
    pub size: Option<u64>,
    pub required: bool,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl std::fmt::Display for MountType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        })
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// Why a `--mount` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("malformed field list: {reason}")]
    Csv { reason: &'static str },
    #[error("field {field:?} must be a key=value pair")]
    NotKeyValue { field: String },
    #[error("unknown key {key:?}; keys are {}", KEYS_TEXT)]
    UnknownKey { key: String },
    #[error("unsupported type {value:?}: expected bind, cache, tmpfs, secret or ssh")]
    UnknownType { value: String },
    #[error("invalid {key}={value:?}: expected {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("{key} is not allowed for type={kind} mounts")]
    KeyNotForType { key: &'static str, kind: MountType },
    #[error("from={value:?} cannot use variables: define a stage with FROM ${{VAR}} AS <name> and mount from it")]
    VariableFrom { value: String },
    #[error("secret mount: {reason}")]
    Secret { reason: &'static str },
    #[error("type={kind} mount needs target=<path>")]
    TargetRequired { kind: MountType },
    #[error("{0}")]
    Expand(ExpandError),
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "size",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "env",
];
const KEYS_TEXT: &str = "type, target, source, from, readonly, readwrite, id, sharing, required, size, mode, uid, gid, env";
const BARE_KEYS: &[&str] = &["readonly", "ro", "readwrite", "rw", "required"];

impl RunMount {
    /// Checks a `--mount` value at parse time.
    pub(crate) fn parse(spec: &str) -> Result<Self, MountError> {
        let fields = csv_fields(spec)?;
        let mut from = None;
        for field in &fields {
            precheck(field, &mut from)?;
        }
        let mount = if spec.contains('$') {
            None
        } else {
            Some(build(&fields, &mut |value: &str| Ok(value.to_string()))?)
        };
        Ok(RunMount {
            spec: spec.to_string(),
            from,
            mount,
        })
    }

    /// The mount with every value passed through `expand` (the builder's variables).
    pub fn resolve<F>(&self, mut expand: F) -> Result<Mount, MountError>
    where
        F: FnMut(&str) -> Result<String, ExpandError>,
    {
        build(&csv_fields(&self.spec)?, &mut expand)
    }
}

/// Syntax checks that need no variables: key names, bare keys, a literal `from=`.
fn precheck(field: &str, from: &mut Option<String>) -> Result<(), MountError> {
    let Some((key, value)) = field.split_once('=') else {
        if BARE_KEYS.contains(&field.to_ascii_lowercase().as_str()) {
            return Ok(());
        }
        return Err(MountError::NotKeyValue {
            field: crate::snippet(field),
        });
    };
    let key = key.to_ascii_lowercase();
    if !KEYS.contains(&key.as_str()) {
        return Err(MountError::UnknownKey {
            key: crate::snippet(&key),
        });
    }
    if key == "from" {
        if value.find('$').is_some_and(|i| i + 1 != value.len()) {
            return Err(MountError::VariableFrom {
                value: crate::snippet(value),
            });
        }
        *from = Some(value.to_string());
    }
    Ok(())
}

type Expander<'a> = dyn FnMut(&str) -> Result<String, ExpandError> + 'a;

fn build(fields: &[String], expand: &mut Expander<'_>) -> Result<Mount, MountError> {
    let mut draft = Draft::default();
    for field in fields {
        match field.split_once('=') {
            None => draft.bare(&field.to_ascii_lowercase(), field)?,
            Some((key, value)) => {
                let value = expand(value).map_err(MountError::Expand)?;
                draft.set(&key.to_ascii_lowercase(), value)?;
            }
        }
    }
    draft.finish()
}

/// A mount being assembled; `read_only` stays `None` until set explicitly.
#[derive(Default)]
struct Draft {
    kind: Option<MountType>,
    target: Option<String>,
    source: Option<String>,
    from: Option<String>,
    read_only: Option<bool>,
    id: Option<String>,
    sharing: Option<Sharing>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    required: Option<bool>,
    env: Option<String>,
}

impl Draft {
    fn bare(&mut self, key: &str, field: &str) -> Result<(), MountError> {
        match key {
            "readonly" | "ro" => self.read_only = Some(true),
            "readwrite" | "rw" => self.read_only = Some(false),
            "required" => self.required = Some(true),
            _ => {
                return Err(MountError::NotKeyValue {
                    field: crate::snippet(field),
                })
            }
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), MountError> {
        match key {
            "type" => self.kind = Some(mount_type(&value)?),
            "from" => self.from = Some(value),
            "source" | "src" => self.source = Some(value),
            "target" | "dst" | "destination" => self.target = Some(value),
            "readonly" | "ro" => self.read_only = Some(parse_bool(key, &value)?),
            "readwrite" | "rw" => self.read_only = Some(!parse_bool(key, &value)?),
            "required" => self.required = Some(parse_bool(key, &value)?),
            "size" => self.size = Some(parse_size(&value)?),
            "id" => self.id = Some(value),
            "sharing" => self.sharing = Some(sharing(&value)?),
            "mode" => self.mode = Some(parse_u32(key, &value, 8, "an octal mode such as 0755")?),
            "uid" => self.uid = Some(parse_u32(key, &value, 10, "a numeric user id")?),
            "gid" => self.gid = Some(parse_u32(key, &value, 10, "a numeric group id")?),
            "env" => self.env = Some(value),
            _ => {
                return Err(MountError::UnknownKey {
                    key: crate::snippet(key),
                })
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Mount, MountError> {
        let kind = self.kind.unwrap_or(MountType::Bind);
        self.check_keys(kind)?;
        let read_only = self
            .read_only
            .unwrap_or(!matches!(kind, MountType::Cache | MountType::Tmpfs));
        Ok(Mount {
            kind,
            target: self.target,
            source: self.source,
            from: self.from,
            read_only,
            id: self.id,
            sharing: self.sharing,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            required: self.required.unwrap_or(false),
            env: self.env,
        })
    }

    fn check_keys(&self, kind: MountType) -> Result<(), MountError> {
        let file_info = matches!(kind, MountType::Secret | MountType::Ssh | MountType::Cache);
        let refused = [
            (
                "required",
                self.required.is_some() && !matches!(kind, MountType::Secret | MountType::Ssh),
            ),
            ("size", self.size.is_some() && kind != MountType::Tmpfs),
            (
                "sharing",
                self.sharing.is_some() && kind != MountType::Cache,
            ),
            ("mode", self.mode.is_some() && !file_info),
            ("uid", self.uid.is_some() && !file_info),
            ("gid", self.gid.is_some() && !file_info),
        ];
        if let Some((key, _)) = refused.iter().find(|(_, bad)| *bad) {
            return Err(MountError::KeyNotForType { key, kind });
        }
        match kind {
            MountType::Secret => self.check_secret(),
            MountType::Bind | MountType::Cache | MountType::Tmpfs if self.target.is_none() => {
                Err(MountError::TargetRequired { kind })
            }
            _ => Ok(()),
        }
    }

    fn check_secret(&self) -> Result<(), MountError> {
        let reason = if self.from.is_some() {
            "a secret cannot have from="
        } else if self.source.is_none() && self.target.is_none() && self.id.is_none() {
            "give id=, source= or target="
        } else if self.source.is_some() && self.id.is_some() {
            "give either source= or id=, not both"
        } else {
            return Ok(());
        };
        Err(MountError::Secret { reason })
    }
}

fn mount_type(value: &str) -> Result<MountType, MountError> {
    match value.to_ascii_lowercase().as_str() {
        "bind" => Ok(MountType::Bind),
        "cache" => Ok(MountType::Cache),
        "tmpfs" => Ok(MountType::Tmpfs),
        "secret" => Ok(MountType::Secret),
        "ssh" => Ok(MountType::Ssh),
        _ => Err(MountError::UnknownType {
            value: crate::snippet(value),
        }),
    }
}

fn sharing(value: &str) -> Result<Sharing, MountError> {
    match value.to_ascii_lowercase().as_str() {
        "shared" => Ok(Sharing::Shared),
        "private" => Ok(Sharing::Private),
        "locked" => Ok(Sharing::Locked),
        _ => Err(invalid("sharing", value, "shared, private or locked")),
    }
}

fn invalid(key: &str, value: &str, expected: &'static str) -> MountError {
    MountError::InvalidValue {
        key: key.to_string(),
        value: crate::snippet(value),
        expected,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(key: &str, value: &str) -> Result<bool, MountError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(invalid(key, value, "true or false")),
    }
}

fn parse_u32(
    key: &str,
    value: &str,
    radix: u32,
    expected: &'static str,
) -> Result<u32, MountError> {
    let digits_only = !value.is_empty() && value.chars().all(|c| c.is_digit(radix));
    digits_only
        .then(|| u32::from_str_radix(value, radix).ok())
        .flatten()
        .ok_or_else(|| invalid(key, value, expected))
}

/// A size such as `64m`, `1.5g` or `1024` (binary multiples, as Docker's `RAMInBytes`).
fn parse_size(value: &str) -> Result<u64, MountError> {
    let fail = || invalid("size", value, "a size such as 512k, 64m or 1g");
    let number_len = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(number_len);
    let number: f64 = number.parse().map_err(|_| fail())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(fail()),
    };
    let bytes = number * 1024f64.powi(power);
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(fail());
    }
    Ok(bytes as u64)
}

/// Splits a CSV record (Go's `encoding/csv` rules: `"` quotes a field, `""` is a quote).
fn csv_fields(text: &str) -> Result<Vec<String>, MountError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            quoted_field(&mut chars, &mut field)?;
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if c == '"' {
                    return Err(MountError::Csv {
                        reason: "a '\"' inside an unquoted field",
                    });
                }
                field.push(c);
            }
        }
        fields.push(field);
        match chars.next() {
            None => return Ok(fields),
            Some(',') => {}
            Some(_) => {
                return Err(MountError::Csv {
                    reason: "text after a closing '\"'",
                })
            }
        }
    }
}

fn quoted_field(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    field: &mut String,
) -> Result<(), MountError> {
    while let Some(c) = chars.next() {
        if c != '"' {
            field.push(c);
        } else if chars.next_if_eq(&'"').is_some() {
            field.push('"');
        } else {
            return Ok(());
        }
    }
    Err(MountError::Csv {
        reason: "a quoted field is not closed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(spec: &str) -> Result<Mount, MountError> {
        RunMount::parse(spec).map(|m| m.mount.expect("no variables, so resolved"))
    }

    #[test]
    fn parses_each_type_with_defaults() {
        let cache =
            mount("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000")
                .unwrap();
        assert_eq!(cache.kind, MountType::Cache);
        assert_eq!(cache.target.as_deref(), Some("/root/.cache"));
        assert_eq!(cache.sharing, Some(Sharing::Locked));
        assert_eq!(
            (cache.mode, cache.uid, cache.read_only),
            (Some(0o755), Some(1000), false)
        );
        let bind = mount("target=/src,from=builder,source=/out,rw").unwrap();
        assert_eq!(
            (bind.kind, bind.read_only, bind.from.as_deref()),
            (MountType::Bind, false, Some("builder"))
        );
        assert!(mount("type=bind,dst=/x").unwrap().read_only);
        let tmpfs = mount("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(tmpfs.size, Some(64 << 20));
        let secret = mount("type=secret,id=npmrc,env=NPM_TOKEN,required").unwrap();
        assert!(secret.required && secret.read_only);
        assert_eq!(mount("type=ssh").unwrap().kind, MountType::Ssh);
        assert_eq!(
            mount("\"type=bind\",\"target=/a,b\"")
                .unwrap()
                .target
                .as_deref(),
            Some("/a,b")
        );
    }

    #[test]
    fn refuses_bad_mounts_with_reasons() {
        let cases = [
            ("type=volume,target=/x", "unsupported type \"volume\": expected bind, cache, tmpfs, secret or ssh"),
            ("type=cache", "type=cache mount needs target=<path>"),
            ("type=cache,target=/x,size=1m", "size is not allowed for type=cache mounts"),
            ("type=bind,target=/x,mode=0644", "mode is not allowed for type=bind mounts"),
            ("type=cache,target=/x,mode=999", "invalid mode=\"999\": expected an octal mode such as 0755"),
            ("type=cache,target=/x,sharing=all", "invalid sharing=\"all\": expected shared, private or locked"),
            ("type=secret", "secret mount: give id=, source= or target="),
            ("type=secret,id=a,from=b", "secret mount: a secret cannot have from="),
            ("type=cache,target", "field \"target\" must be a key=value pair"),
            ("type=cache,tagret=/x", "unknown key \"tagret\"; keys are type, target, source, from, readonly, readwrite, id, sharing, required, size, mode, uid, gid, env"),
            ("type=bind,target=/x,from=$STAGE", "from=\"$STAGE\" cannot use variables: define a stage with FROM ${VAR} AS <name> and mount from it"),
            ("type=bind,\"target=/x", "malformed field list: a quoted field is not closed"),
            ("type=bind,ta\"rget=/x", "malformed field list: a '\"' inside an unquoted field"),
            ("type=tmpfs,target=/x,size=lots", "invalid size=\"lots\": expected a size such as 512k, 64m or 1g"),
        ];
        for (spec, want) in cases {
            assert_eq!(mount(spec).unwrap_err().to_string(), want, "spec {spec:?}");
        }
    }

    #[test]
    fn variables_are_resolved_later_per_value() {
        let flag = RunMount::parse("type=cache,target=${DIR},id=a").unwrap();
        assert_eq!(flag.mount, None);
        let resolved = flag.resolve(|v| Ok(v.replace("${DIR}", "/cache"))).unwrap();
        assert_eq!(resolved.target.as_deref(), Some("/cache"));
    }
}
