//! The node's identity file (`<state-dir>/node.json`): written when a node creates or joins a
//! cluster, read on every later start so the same command line resumes.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use swarm_types::spec::NodeRole;
use swarm_types::NodeId;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub role: NodeRole,
    /// 0 for workers.
    pub raft_id: u64,
    pub advertise_addr: String,
    /// Manager addresses last known (agents start from these after a restart).
    pub managers: Vec<String>,
    /// New cluster: the cluster objects are written. Joined manager: it is a Raft voter.
    pub complete: bool,
    /// Join token kept until a joining manager has been promoted (then cleared).
    #[serde(default)]
    pub pending_token: String,
    /// An operator promoted this worker; it becomes a Raft voter on its next start.
    #[serde(default)]
    pub promoting: bool,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("node.json")
}

pub fn load(state_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!(
                "{} is corrupt; restore it or start with an empty state dir",
                p.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
    }
}

/// Writes atomically (temp file + fsync + rename) with mode 0600.
pub fn save(state_dir: &Path, id: &Identity) -> anyhow::Result<()> {
    write_private(&path(state_dir), &serde_json::to_vec_pretty(id)?)
}

/// The node's TLS material in `<state-dir>/certs` (directory 0700, files 0600).
pub struct Certs {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn write_private(p: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = p.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, p).with_context(|| format!("rename to {}", p.display()))?;
    Ok(())
}

fn certs_dir(state_dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let d = state_dir.join("certs");
    std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
    Ok(d)
}

pub fn save_certs(state_dir: &Path, c: &Certs) -> anyhow::Result<()> {
    let d = certs_dir(state_dir)?;
    // Key first: a crash between the two writes leaves the old certificate with a new key,
    // which fails loudly at start rather than silently.
    write_private(&d.join("node.key"), c.key_pem.as_bytes())?;
    write_private(&d.join("node.crt"), c.cert_pem.as_bytes())?;
    write_private(&d.join("ca.crt"), c.ca_pem.as_bytes())?;
    Ok(())
}

pub fn load_certs(state_dir: &Path) -> anyhow::Result<Certs> {
    let d = state_dir.join("certs");
    let read = |n: &str| {
        std::fs::read_to_string(d.join(n)).with_context(|| {
            format!(
                "read {}: this node has no certificate; restore the state dir or join again with an empty one",
                d.join(n).display()
            )
        })
    };
    Ok(Certs {
        ca_pem: read("ca.crt")?,
        cert_pem: read("node.crt")?,
        key_pem: read("node.key")?,
    })
}

/// The CA key of a cluster being bootstrapped (kept only until the cluster object holds it).
pub fn save_bootstrap_ca_key(state_dir: &Path, key_pem: &str) -> anyhow::Result<()> {
    write_private(&certs_dir(state_dir)?.join("ca.key"), key_pem.as_bytes())
}

pub fn load_bootstrap_ca_key(state_dir: &Path) -> anyhow::Result<String> {
    let p = state_dir.join("certs").join("ca.key");
    std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))
}

pub fn remove_bootstrap_ca_key(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join("certs").join("ca.key"));
}
