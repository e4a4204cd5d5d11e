//! The restart supervisor: whether and when a dead task is replaced, per the restart policy
//! (condition, delay with back-off, attempts in a window).

use super::*;

/// Decision of the restart supervisor for a dead task.
pub(super) enum Restart {
    /// Replace it now.
    Now,
    /// Replace it once the restart delay has passed.
    Later,
    /// Leave the slot with the dead task (policy says no more restarts).
    Never,
}

pub(super) fn restart_decision(svc: &Service, t: &Task, cfg: &Config) -> Restart {
    let p = &t.spec.restart_policy;
    let job = matches!(
        svc.spec.mode,
        ServiceMode::ReplicatedJob { .. } | ServiceMode::GlobalJob
    );
    let failed = matches!(t.status.state, TaskState::Failed | TaskState::Rejected)
        || (t.status.state == TaskState::Orphaned);
    let wanted = match p.condition {
        RestartCondition::None => false,
        RestartCondition::OnFailure => failed,
        // A job that completed is done even under "any".
        RestartCondition::Any => failed || !job,
    };
    if !wanted {
        return Restart::Never;
    }
    if p.max_attempts > 0 && t.restarts >= p.max_attempts {
        let window = p.window.as_millis() as u64;
        // With a window, attempts older than the window no longer count.
        let expired = window > 0 && cfg.now_ms.saturating_sub(t.meta.created_at) > window;
        if !expired {
            return Restart::Never;
        }
    }
    let delay = restart_delay(p.delay.as_millis() as u64, t.restarts);
    if cfg.now_ms >= t.status.timestamp.saturating_add(delay) {
        Restart::Now
    } else {
        Restart::Later
    }
}

/// Exponential backoff on the restart delay: the delay doubles with each restart of the slot
/// (up to 32×), and never grows past one minute unless the configured delay itself is longer.
pub fn restart_delay(delay_ms: u64, restarts: u64) -> u64 {
    let backed_off = delay_ms.saturating_mul(1u64 << restarts.min(5));
    backed_off.min(delay_ms.max(60_000))
}
