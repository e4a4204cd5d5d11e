//! Pause and resume: every process of a running container frozen through the freezer cgroup
//! (v1 `freezer.state`, v2 `cgroup.freeze`), as runc does for `docker pause`.

use super::*;

impl Runtime {
    /// Freezes every process of a running container.
    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.set_frozen(id, true)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.set_frozen(id, false)
    }

    fn set_frozen(&self, id: &str, frozen: bool) -> Result<(), RuntimeError> {
        let info = self.inspect(id)?;
        let (want, hint) = if frozen {
            (
                ContainerStatus::Running,
                "only a running container can be paused",
            )
        } else {
            (
                ContainerStatus::Paused,
                "only a paused container can be resumed",
            )
        };
        if info.status != want {
            return Err(RuntimeError::InvalidState {
                id: id.into(),
                status: info.status,
                hint,
            });
        }
        let (_, cfg) = self.existing(id)?;
        self.cgroup(&cfg).freeze(frozen)?;
        Ok(())
    }
}
