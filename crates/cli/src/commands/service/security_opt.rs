//! `--device` and `--security-opt` values of `service create` / `service update`, parsed as
//! Docker's: a seccomp profile file is read, checked with the runtime's own parser and
//! compacted into the spec here, so a mistake is reported before anything is sent.

use swarm_types::container::{Device, Seccomp};

/// One `--security-opt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityOpt {
    Seccomp(Seccomp),
    /// `no-new-privileges`: accepted, containers always run with it.
    NoNewPrivileges,
}

pub fn device(s: &str) -> Result<Device, String> {
    Device::parse(s).map_err(|e| e.to_string())
}

pub fn security_opt(s: &str) -> Result<SecurityOpt, String> {
    let (key, value) = match s.split_once(['=', ':']) {
        Some((k, v)) => (k, Some(v)),
        None => (s, None),
    };
    match (key, value) {
        ("seccomp", Some("unconfined")) => Ok(SecurityOpt::Seccomp(Seccomp::Unconfined)),
        ("seccomp", Some("default")) => Ok(SecurityOpt::Seccomp(Seccomp::Default)),
        ("seccomp", Some(path)) if !path.is_empty() => seccomp_file(path),
        ("no-new-privileges", None | Some("true")) => Ok(SecurityOpt::NoNewPrivileges),
        ("no-new-privileges", Some("false")) => Err(
            "containers always run with no_new_privs (setuid binaries cannot raise privileges); it cannot be turned off".into(),
        ),
        ("apparmor", _) => Err(
            "AppArmor profiles are not supported: containers are confined by capabilities, the seccomp profile and their mount namespace".into(),
        ),
        ("label", _) => Err("SELinux labels are not supported".into()),
        ("systempaths", _) => Err(
            "systempaths=unconfined is not supported: --privileged unmasks /proc and /sys (with every capability)".into(),
        ),
        _ => Err(format!(
            "unknown security option {s:?}: use seccomp=unconfined, seccomp=FILE (a profile in Docker's JSON format), seccomp=default or no-new-privileges"
        )),
    }
}

/// Reads a Docker seccomp profile, checks it as the runtime will, and keeps it compacted.
fn seccomp_file(path: &str) -> Result<SecurityOpt, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the seccomp profile {path}: {e}"))?;
    let profile =
        swarm_runtime::seccomp::Profile::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    let compiled = profile
        .compile(u64::MAX >> 23, swarm_runtime::seccomp::running_kernel())
        .map_err(|e| format!("{path}: {e}"))?;
    if !compiled.unknown.is_empty() {
        eprintln!(
            "warning: {path} names syscalls this host does not know (skipped, as runc does): {}",
            compiled.unknown.join(", ")
        );
    }
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(SecurityOpt::Seccomp(Seccomp::Profile(value.to_string())))
}

/// The seccomp setting a list of options asks for (None: they name none); one at most.
pub fn seccomp_of(opts: &[SecurityOpt]) -> Result<Option<Seccomp>, String> {
    let mut found = None;
    for o in opts {
        if let SecurityOpt::Seccomp(s) = o {
            if found.is_some() {
                return Err("--security-opt seccomp=... is given twice: keep one".into());
            }
            found = Some(s.clone());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_options_follow_docker() {
        assert_eq!(
            security_opt("seccomp=unconfined"),
            Ok(SecurityOpt::Seccomp(Seccomp::Unconfined))
        );
        assert_eq!(
            security_opt("seccomp:unconfined"),
            Ok(SecurityOpt::Seccomp(Seccomp::Unconfined))
        );
        assert_eq!(
            security_opt("no-new-privileges"),
            Ok(SecurityOpt::NoNewPrivileges)
        );
        for (bad, says) in [
            ("no-new-privileges=false", "cannot be turned off"),
            ("apparmor=docker-default", "AppArmor"),
            ("label=disable", "SELinux"),
            ("seccomp=/no/such/profile.json", "cannot read"),
            ("fly", "unknown security option"),
        ] {
            let e = security_opt(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_profile_file_is_checked_and_compacted() {
        let dir = std::env::temp_dir().join(format!("swarmctl-seccomp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [\n    {\"names\": [\"mkdir\", \"mkdirat\"], \"action\": \"SCMP_ACT_ERRNO\"}\n  ]\n}\n",
        )
        .unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_PERHAPS"}"#).unwrap();
        let Ok(SecurityOpt::Seccomp(Seccomp::Profile(json))) =
            security_opt(&format!("seccomp={}", good.display()))
        else {
            panic!("profile not read");
        };
        assert!(!json.contains('\n'), "compacted: {json}");
        let e = security_opt(&format!("seccomp={}", bad.display())).unwrap_err();
        assert!(e.contains("unknown action"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let two = [
            SecurityOpt::Seccomp(Seccomp::Unconfined),
            SecurityOpt::Seccomp(Seccomp::Default),
        ];
        assert!(seccomp_of(&two).unwrap_err().contains("twice"));
        assert_eq!(seccomp_of(&[SecurityOpt::NoNewPrivileges]), Ok(None));
    }
}
