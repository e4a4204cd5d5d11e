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
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = path(state_dir);
    let tmp = p.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(id)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p).with_context(|| format!("rename to {}", p.display()))?;
    Ok(())
}
