//! Changing a container's limits while it exists (`runc update`, `docker update`): the new
//! limits are written to its cgroup, then recorded in its stored config.

use super::*;
use crate::spec::Resources;

impl Runtime {
    /// Applies `res` (the limits it sets; `None` fields stay as they are) to a created,
    /// running or paused container.
    pub fn update(&self, id: &str, res: &Resources) -> Result<Resources, RuntimeError> {
        let info = self.inspect(id)?;
        if !matches!(
            info.status,
            ContainerStatus::Created | ContainerStatus::Running | ContainerStatus::Paused
        ) {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: info.status,
                hint: "only a container that has not stopped can be updated",
            });
        }
        let (sd, mut cfg) = self.existing(id)?;
        let cur = cfg.spec.resources;
        let merged = Resources {
            memory_bytes: res.memory_bytes.or(cur.memory_bytes),
            cpu_quota_us: res.cpu_quota_us.or(cur.cpu_quota_us),
            cpu_period_us: res.cpu_period_us.or(cur.cpu_period_us),
            pids_max: res.pids_max.or(cur.pids_max),
        };
        // The cgroup takes only what changes; quota and period are written together (cpu.max,
        // or the v1 pair).
        let mut apply = *res;
        if res.cpu_quota_us.is_some() || res.cpu_period_us.is_some() {
            apply.cpu_quota_us = merged.cpu_quota_us;
            apply.cpu_period_us = merged.cpu_period_us;
            if apply.cpu_quota_us.is_none() {
                return Err(RuntimeError::Spec(SpecError::Update(
                    "a CPU period alone limits nothing: give a CPU quota with it",
                )));
            }
        }
        self.cgroup(&cfg).apply(&apply)?;
        cfg.spec.resources = merged;
        state::write_json(&sd.config(), &cfg)?;
        Ok(merged)
    }
}
