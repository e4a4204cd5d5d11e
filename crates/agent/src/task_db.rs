//! The local task database (`<state-dir>/agent/tasks`): one JSON file per task this node is
//! responsible for, so a restarted agent re-adopts its containers instead of restarting them.
//! It stores what the dispatcher sent; it decides nothing and talks to no manager.

use std::path::PathBuf;
use swarm_api::wire;
use swarm_types::Task;

#[derive(Clone)]
pub struct TaskDb {
    dir: PathBuf,
}

impl TaskDb {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(TaskDb { dir })
    }
    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
    /// Writes atomically (temp file + rename); a failure is logged, not returned: the task
    /// runs on, it only would not be re-adopted after a restart.
    /// Saves a task, without its registry credentials: they stay in memory only (the
    /// dispatcher sends them again with every assignment set).
    pub fn save(&self, t: &Task) {
        let p = self.path(t.id.as_str());
        let tmp = p.with_extension("tmp");
        let bytes = if t.spec.container.registry_auth.is_empty() {
            wire::to_bytes(t)
        } else {
            let mut t = t.clone();
            std::sync::Arc::make_mut(&mut t.spec)
                .container
                .registry_auth = Default::default();
            wire::to_bytes(&t)
        };
        let res = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &p));
        if let Err(e) = res {
            tracing::warn!(task = %t.id, error = %e, "cannot save task to the local task db");
        }
    }
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
    }
    /// Every task saved and not removed (unreadable files are skipped).
    pub fn load_all(&self) -> Vec<Task> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::objects::{Meta, TaskStatus};
    use swarm_types::task::TaskState;
    use swarm_types::{ServiceId, TaskId};

    fn task(id: &str) -> Task {
        Task {
            id: TaskId::new(id),
            meta: Meta::default(),
            service_id: ServiceId::new("svc"),
            slot: 1,
            node_id: None,
            service_name: "web".into(),
            spec_version: 1,
            spec: Default::default(),
            desired_state: TaskState::Running,
            status: TaskStatus::default(),
            restarts: 0,
            networks: Vec::new(),
        }
    }

    #[test]
    fn saved_tasks_load_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = TaskDb::open(dir.path().join("tasks")).unwrap();
        db.save(&task("t1"));
        db.save(&task("t2"));
        std::fs::write(dir.path().join("tasks").join("junk.json"), b"{").unwrap();
        let mut ids: Vec<String> = db
            .load_all()
            .into_iter()
            .map(|t| t.id.to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["t1", "t2"]);
        db.remove("t1");
        let ids: Vec<String> = db
            .load_all()
            .into_iter()
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(ids, ["t2"]);
    }
}
