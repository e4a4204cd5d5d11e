//! Registry credentials from Docker's client configuration, for `--with-registry-auth`:
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), its `auths` entries, and
//! the credential helpers it names (`credHelpers`, `credsStore`: `docker-credential-NAME get`).

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::path::PathBuf;

fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker/config.json"),
    }
}

/// The host part of an `auths` key (`https://host:5000/v1/` → `host:5000`).
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Where the credentials for `host` are in a parsed config.json.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// base64 of `user:password`.
    Auth(String),
    /// A credential helper (`docker-credential-NAME`) holds them.
    Helper(String),
    None,
}

pub fn find(config: &serde_json::Value, host: &str) -> Found {
    if let Some(h) = config["credHelpers"][host].as_str() {
        return Found::Helper(h.to_string());
    }
    if let Some(auths) = config["auths"].as_object() {
        for (k, v) in auths {
            if key_host(k) != host {
                continue;
            }
            if let Some(a) = v["auth"].as_str().filter(|a| !a.is_empty()) {
                return Found::Auth(a.to_string());
            }
            if let (Some(u), Some(p)) = (v["username"].as_str(), v["password"].as_str()) {
                return Found::Auth(STANDARD.encode(format!("{u}:{p}")));
            }
        }
    }
    match config["credsStore"].as_str() {
        Some(s) if !s.is_empty() => Found::Helper(s.to_string()),
        _ => Found::None,
    }
}

fn from_helper(helper: &str, host: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let bin = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&bin)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {bin} (named by the docker configuration)"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(host.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{bin} has no credentials for {host}: {}; run docker login {host}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).with_context(|| format!("{bin} answered non-JSON"))?;
    let (u, s) = (v["Username"].as_str(), v["Secret"].as_str());
    match (u, s) {
        (Some(u), Some(s)) => Ok(STANDARD.encode(format!("{u}:{s}"))),
        _ => bail!("{bin} answered without Username and Secret"),
    }
}

/// The credentials (base64 of `user:password`) for the registry of `image`.
pub fn for_image(image: &str) -> anyhow::Result<String> {
    let r = swarm_types::registry::ImageRef::parse(image).map_err(anyhow::Error::msg)?;
    let host = r.registry.ok_or_else(|| {
        anyhow!(
            "--with-registry-auth: {image} is in the cluster registry, which nodes reach with their own certificates; the flag is for images of other registries (HOST[:PORT]/NAME)"
        )
    })?;
    let path = config_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "--with-registry-auth: cannot read {} (run docker login {host} first, or set DOCKER_CONFIG)",
            path.display()
        )
    })?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    match find(&config, &host) {
        Found::Auth(a) => Ok(a),
        Found::Helper(h) => from_helper(&h, &host),
        Found::None => bail!(
            "--with-registry-auth: {} has no credentials for {host}; run docker login {host} first",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_credentials_as_docker_stores_them() {
        let c = json!({
            "auths": {
                "https://reg.example:5000/v1/": {"auth": "dTpw"},
                "other.example": {"username": "u", "password": "p"},
                "empty.example": {},
            },
            "credHelpers": {"helped.example": "pass"},
        });
        assert_eq!(find(&c, "reg.example:5000"), Found::Auth("dTpw".into()));
        assert_eq!(
            find(&c, "other.example"),
            Found::Auth(STANDARD.encode("u:p"))
        );
        assert_eq!(find(&c, "helped.example"), Found::Helper("pass".into()));
        assert_eq!(find(&c, "empty.example"), Found::None);
        assert_eq!(
            find(&c, "reg.example"),
            Found::None,
            "the port is part of the host"
        );
        let store = json!({"auths": {}, "credsStore": "desktop"});
        assert_eq!(find(&store, "any.example"), Found::Helper("desktop".into()));
    }

    #[test]
    fn cluster_registry_images_need_no_credentials() {
        let e = for_image("team/web:1").unwrap_err().to_string();
        assert!(e.contains("cluster registry"), "{e}");
    }
}
