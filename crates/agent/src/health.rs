//! Container health checks: which check applies to a task (its own over its image's) and
//! Docker's health state machine that turns probe results into verdicts. It runs no probe
//! and stops no container itself; the controller does both.

use crate::executor::{effective_healthcheck, healthcheck_argv, ExecError, Executor};
use std::time::Duration;
use swarm_types::spec::HealthCheck;
use swarm_types::Task;
use tokio::time::Instant;

/// What one health probe changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Unchanged,
    /// First success: the task now counts as running.
    Healthy,
    /// `retries` consecutive failures after the start period; carries the last output.
    Unhealthy(String),
}

/// Docker's health state machine for one container: probes every `interval`; failures during
/// `start_period` (until the first success) do not count; `retries` consecutive failures
/// make it unhealthy.
#[derive(Debug)]
pub(crate) struct HealthMonitor {
    hc: HealthCheck,
    argv: Vec<String>,
    since: Instant,
    failures: u64,
    healthy: bool,
}

impl HealthMonitor {
    /// `healthy`: the task already counts as running (a re-adopted container).
    pub(crate) fn new(hc: HealthCheck, healthy: bool) -> Self {
        HealthMonitor {
            argv: healthcheck_argv(&hc.test),
            hc,
            since: Instant::now(),
            failures: 0,
            healthy,
        }
    }

    /// Time between the end of one probe and the start of the next.
    pub(crate) fn interval(&self) -> Duration {
        self.hc.interval
    }

    /// The probe's command line and how long it may take.
    pub(crate) fn probe(&self) -> (Vec<String>, Duration) {
        (self.argv.clone(), self.hc.timeout)
    }

    pub(crate) fn record(&mut self, now: Instant, ok: bool, output: &str) -> Verdict {
        if ok {
            self.failures = 0;
            if self.healthy {
                return Verdict::Unchanged;
            }
            self.healthy = true;
            return Verdict::Healthy;
        }
        if !self.healthy && now.duration_since(self.since) < self.hc.start_period {
            return Verdict::Unchanged;
        }
        self.failures += 1;
        if self.failures >= self.hc.retries.max(1) {
            Verdict::Unhealthy(output.trim().to_string())
        } else {
            Verdict::Unchanged
        }
    }
}

/// A probe's outcome as (passed, output to keep): a non-zero exit without output says its
/// code; a probe that could not run fails with the reason.
pub(crate) fn probe_outcome(r: Result<(i32, String), ExecError>) -> (bool, String) {
    match r {
        Ok((0, out)) => (true, out),
        Ok((code, out)) if out.trim().is_empty() => {
            (false, format!("health check exited with {code}"))
        }
        Ok((_, out)) => (false, out),
        Err(e) => (false, format!("health check could not run: {e}")),
    }
}

/// The health check of a task, if one applies (task's over image's).
pub(crate) async fn task_healthcheck<E: Executor>(exec: &E, task: &Task) -> Option<HealthCheck> {
    let own = task.spec.container.healthcheck.as_deref();
    if own.is_some_and(|h| h.disabled()) {
        return None;
    }
    // The image is consulted only when the task's own check leaves something to inherit.
    let image = match own {
        Some(h) if !h.test.is_empty() => None,
        _ => exec.image_healthcheck(task).await,
    };
    effective_healthcheck(own, image.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(interval_ms: u64, retries: u64, start_ms: u64) -> HealthCheck {
        HealthCheck {
            test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_millis(start_ms),
        }
    }

    #[test]
    fn monitor_counts_consecutive_failures_after_start_period() {
        let mut m = HealthMonitor::new(hc(1000, 3, 10_000), false);
        let t0 = m.since;
        assert_eq!(m.record(t0, false, "x"), Verdict::Unchanged);
        assert_eq!(m.failures, 0, "start period");
        let later = t0 + Duration::from_secs(11);
        assert_eq!(m.record(later, false, "a"), Verdict::Unchanged);
        assert_eq!(m.record(later, false, "b"), Verdict::Unchanged);
        assert_eq!(m.record(later, true, ""), Verdict::Healthy);
        assert_eq!(m.record(later, true, ""), Verdict::Unchanged);
        assert_eq!(m.record(later, false, "a"), Verdict::Unchanged);
        assert_eq!(m.record(later, false, "b"), Verdict::Unchanged);
        assert_eq!(
            m.record(later, false, " boom\n"),
            Verdict::Unhealthy("boom".into())
        );
        // Once healthy, the start period no longer shields failures.
        let mut m = HealthMonitor::new(hc(1000, 1, 10_000), false);
        let t0 = m.since;
        assert_eq!(m.record(t0, true, ""), Verdict::Healthy);
        assert_eq!(m.record(t0, false, "x"), Verdict::Unhealthy("x".into()));
    }

    #[test]
    fn probe_outcome_keeps_output_or_says_why() {
        assert_eq!(probe_outcome(Ok((0, "ok".into()))), (true, "ok".into()));
        assert_eq!(
            probe_outcome(Ok((3, " \n".into()))),
            (false, "health check exited with 3".into())
        );
        assert_eq!(probe_outcome(Ok((1, "bad".into()))), (false, "bad".into()));
    }
}
