//! Mounts and process knobs of a service's containers (Docker's `--mount`, `--ulimit`,
//! `--sysctl`, `--cap-add/--cap-drop`, `--read-only`, `--group`, `--stop-signal`,
//! `--oom-score-adj`, `--limit-pids`, `--tty`, `--privileged`, `--device`, `--security-opt`):
//! the model, the `--mount` syntax and the checks
//! run before a spec is written. Pure: the agent maps these onto the runtime.

use crate::error::SpecError;
use crate::limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most mounts, ulimits, sysctls, capabilities or groups in one spec.
pub const MAX_ENTRIES: usize = 128;

mod mounts;
mod privilege;
mod process;
pub use mounts::*;
pub use privilege::*;
pub use process::*;

fn bad(spec: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Mount {
        mount: limits::echo(spec),
        reason: reason.into(),
    }
}

fn parse_bool(spec: &str, key: &str, v: Option<&str>) -> Result<bool, SpecError> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(bad(spec, format!("{key}={o}: expected true or false"))),
    }
}

/// `64m`, `1g`, `1024` → bytes (1024-based).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_syntax_follows_docker() {
        let m =
            Mount::parse("type=bind,src=/srv/data,dst=/data,ro,bind-propagation=rslave").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(
            (m.source.as_str(), m.target.as_str()),
            ("/srv/data", "/data")
        );
        assert!(m.readonly);
        assert_eq!(m.bind_propagation, "rslave");
        let m = Mount::parse(
            "source=db,target=/var/lib/db,volume-nocopy,volume-label=a=b,volume-driver=local",
        )
        .unwrap();
        assert_eq!(m.kind, MountType::Volume);
        assert!(m.volume_nocopy);
        assert_eq!(m.volume_labels.get("a").map(String::as_str), Some("b"));
        let m = Mount::parse(
            "type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770,readonly=false",
        )
        .unwrap();
        assert_eq!(
            (m.tmpfs_size_bytes, m.tmpfs_mode, m.readonly),
            (64 << 20, 0o1770, false)
        );
        let m = Mount::parse("type=volume,source=t,target=/t,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=1m").unwrap();
        assert_eq!(
            m.volume_options.get("o").map(String::as_str),
            Some("size=1m")
        );
    }

    #[test]
    fn bad_mounts_say_what_is_wrong() {
        let cases = [
            ("type=nfs,target=/x", "bind, volume or tmpfs"),
            ("type=bind,source=rel,target=/x", "absolute host path"),
            ("type=bind,source=/a,target=x", "absolute container path"),
            ("type=bind,source=/a,target=/", "other than /"),
            ("type=bind,source=/a,target=/a/../b", "'..'"),
            (
                "type=bind,source=/a,target=/b,volume-nocopy",
                "volume-* options",
            ),
            (
                "type=bind,source=/a,target=/b,bind-propagation=weird",
                "rshared",
            ),
            (
                "type=volume,target=/b",
                "anonymous volumes are not supported",
            ),
            ("type=volume,source=../x,target=/b", "invalid volume name"),
            (
                "type=volume,source=v,target=/b,volume-driver=nfs",
                "only the local driver",
            ),
            (
                "type=volume,source=v,target=/b,volume-opt=foo=bar",
                "type, device or o",
            ),
            (
                "type=volume,source=v,target=/b,volume-opt=type=tmpfs",
                "both type and device",
            ),
            (
                "type=volume,source=v,target=/b,tmpfs-size=1m",
                "tmpfs-* options",
            ),
            ("type=tmpfs,source=x,target=/b", "no source"),
            ("type=tmpfs,target=/b,tmpfs-size=lots", "64m"),
            ("type=tmpfs,target=/b,tmpfs-mode=999", "octal"),
            ("type=tmpfs,target=/b,colour=red", "unknown field"),
            ("type=tmpfs,target=/b,readonly=maybe", "true or false"),
            ("type=tmpfs,target", "needs a value"),
        ];
        for (s, want) in cases {
            let e = Mount::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
        let a = Mount::parse("type=tmpfs,target=/x").unwrap();
        let e = validate_mounts(&[a.clone(), a]).unwrap_err().to_string();
        assert!(e.contains("already uses target /x"), "{e}");
    }

    #[test]
    fn knobs_are_checked() {
        assert_eq!(
            Ulimit::parse("nofile=1024:2048").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(Ulimit::parse("core=-1").unwrap().hard, u64::MAX);
        for bad in ["nofile", "files=1", "nofile=2:1", "nofile=x"] {
            assert!(Ulimit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(signal_number("SIGQUIT"), Some(3));
        assert_eq!(signal_number("int"), Some(2));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGRTMIN+3"), Some(37));
        assert_eq!(signal_number("SIGNOPE"), None);
        let ok = ContainerOptions {
            stop_signal: "SIGINT".into(),
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            cap_add: vec!["cap_net_admin".into()],
            cap_drop: vec!["ALL".into()],
            oom_score_adj: -500,
            ..Default::default()
        };
        ok.validate().unwrap();
        let with = |f: &dyn Fn(&mut ContainerOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert!(with(&|o| o.stop_signal = "NOPE".into()).contains("unknown signal"));
        assert!(with(&|o| {
            o.sysctls.insert("kernel.panic".into(), "1".into());
        })
        .contains("not namespaced"));
        assert!(with(&|o| o.cap_add = vec!["FLY".into()]).contains("unknown capability"));
        assert!(with(&|o| o.cap_add = vec!["ALL".into()]).contains("ALL in both"));
        assert!(with(&|o| o.oom_score_adj = 2000).contains("-1000 to 1000"));
        assert!(with(&|o| o.pids_limit = -1).contains("negative"));
        assert!(with(&|o| o.groups = vec!["a:b".into()]).contains("invalid group"));
    }
}
