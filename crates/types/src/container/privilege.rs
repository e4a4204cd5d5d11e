//! What a service's containers may reach beyond the default confinement: `--privileged`,
//! `--device HOST[:CONTAINER[:PERMS]]` and the seccomp profile (`--security-opt
//! seccomp=unconfined|FILE`). The model and the checks that need no host; the runtime checks
//! the rest (that devices exist, the profile's syscall names) when a task starts.

use super::*;

/// Largest seccomp profile a spec may carry (Docker's default profile is about 20 KiB).
pub const MAX_SECCOMP_PROFILE_BYTES: usize = 128 * 1024;

/// The seccomp filter of a service's containers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// The built-in profile, equivalent to Docker's default.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile in Docker's JSON format (the file's content, compacted).
    Profile(String),
}

impl Seccomp {
    pub fn is_default(&self) -> bool {
        *self == Seccomp::Default
    }
}

/// A host device node given to the containers (Docker's `--device`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub path_on_host: String,
    pub path_in_container: String,
    /// Docker's `rwm`; `r` and `w` are required (see the runtime's `DeviceMapping`).
    pub permissions: String,
}

fn device_err(spec: &str, reason: impl Into<String>) -> SpecError {
    SpecError::ContainerOption {
        what: format!("--device {}", limits::echo(spec)),
        reason: reason.into(),
    }
}

fn clean_absolute(p: &str) -> bool {
    p.starts_with('/')
        && p.len() <= 4096
        && !p.contains('\0')
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Device {
    /// `HOST[:CONTAINER[:PERMS]]`, as Docker: the container path defaults to the host's and
    /// the permissions to `rwm`.
    pub fn parse(s: &str) -> Result<Device, SpecError> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, c] if !c.is_empty() && c.chars().all(|x| "rwm".contains(x)) => (*h, *h, *c),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(device_err(
                s,
                "expected HOST[:CONTAINER[:PERMS]], such as /dev/fuse or /dev/sdc:/dev/xvdc:rwm",
            )),
        };
        let d = Device {
            path_on_host: host.to_string(),
            path_in_container: container.to_string(),
            permissions: perms.to_string(),
        };
        d.validate()?;
        Ok(d)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let s = format!(
            "{}:{}:{}",
            self.path_on_host, self.path_in_container, self.permissions
        );
        if !clean_absolute(&self.path_on_host) {
            return Err(device_err(
                &s,
                "the host path must be absolute, without . or .. (such as /dev/fuse)",
            ));
        }
        if !clean_absolute(&self.path_in_container) {
            return Err(device_err(
                &s,
                "the container path must be absolute, without . or .. (such as /dev/fuse)",
            ));
        }
        let p = &self.permissions;
        if p.is_empty() || !p.chars().all(|c| "rwm".contains(c)) {
            return Err(device_err(
                &s,
                "permissions are letters of rwm (such as rwm)",
            ));
        }
        if !(p.contains('r') && p.contains('w')) {
            return Err(device_err(
                &s,
                "permissions must include r and w: devices are bound into the container, which cannot make them read-only or write-only",
            ));
        }
        Ok(())
    }
}

/// Checks the privilege settings of a spec.
pub(super) fn validate(o: &ContainerOptions) -> Result<(), SpecError> {
    let opt = |what: &str, reason: &str| SpecError::ContainerOption {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    if o.devices.len() > MAX_ENTRIES {
        return Err(SpecError::TooMany {
            what: "devices".into(),
            count: o.devices.len(),
            limit: MAX_ENTRIES,
        });
    }
    for d in &o.devices {
        d.validate()?;
    }
    if o.privileged && !o.cap_drop.is_empty() {
        return Err(opt(
            "--privileged",
            "grants every capability: drop --cap-drop or --privileged",
        ));
    }
    if let Seccomp::Profile(json) = &o.seccomp {
        if o.privileged {
            return Err(opt(
                "--privileged",
                "runs without seccomp: drop --security-opt seccomp=FILE or --privileged",
            ));
        }
        if json.len() > MAX_SECCOMP_PROFILE_BYTES {
            return Err(opt(
                "--security-opt seccomp",
                &format!(
                    "the profile is {} bytes, more than {MAX_SECCOMP_PROFILE_BYTES}",
                    json.len()
                ),
            ));
        }
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            opt(
                "--security-opt seccomp",
                &format!("the profile is not JSON: {e}"),
            )
        })?;
        if !v.get("defaultAction").is_some_and(|a| a.is_string()) {
            return Err(opt(
                "--security-opt seccomp",
                "the profile has no defaultAction (Docker's format: {\"defaultAction\": \"SCMP_ACT_ERRNO\", \"syscalls\": [...]})",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_syntax_follows_docker() {
        let d = Device::parse("/dev/fuse").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.permissions.as_str()),
            ("/dev/fuse", "rwm")
        );
        let d = Device::parse("/dev/sdc:/dev/xvdc").unwrap();
        assert_eq!(d.path_in_container, "/dev/xvdc");
        let d = Device::parse("/dev/net/tun:rw").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.permissions.as_str()),
            ("/dev/net/tun", "rw")
        );
        let d = Device::parse("/dev/sdc:/dev/xvdc:rwm").unwrap();
        assert_eq!(d.permissions, "rwm");
        for (bad, says) in [
            ("dev/fuse", "absolute"),
            ("/dev/../etc/shadow", "absolute"),
            ("/dev/fuse:/dev/../x", "container path"),
            ("/dev/fuse:/dev/fuse:r", "r and w"),
            ("/dev/fuse:/dev/fuse:rwx", "letters of rwm"),
            ("/a:/b:rw:x", "HOST[:CONTAINER[:PERMS]]"),
        ] {
            let e = Device::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn privileged_and_profiles_are_checked() {
        let mut o = ContainerOptions {
            privileged: true,
            cap_drop: vec!["NET_RAW".into()],
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("--cap-drop"));
        o.cap_drop.clear();
        o.validate().unwrap();
        o.seccomp = Seccomp::Profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into());
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("without seccomp"));
        o.privileged = false;
        o.validate().unwrap();
        o.seccomp = Seccomp::Profile("{}".into());
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("defaultAction"));
        o.seccomp = Seccomp::Profile("x".repeat(MAX_SECCOMP_PROFILE_BYTES + 1));
        assert!(o.validate().unwrap_err().to_string().contains("more than"));
    }
}
