//! Service-level flags shared by `service create` and `service update` (docker's names and
//! defaults): health check, update config and rollback config.

use crate::parse;
use anyhow::bail;
use clap::Args;
use std::time::Duration;
use swarm_types::spec::{FailureAction, HealthCheck, ServiceSpec, UpdateConfig, UpdateOrder};

#[derive(Args, Debug, Clone, Default)]
pub struct ServiceFlags {
    /// Command to run to check health (run with /bin/sh -c inside the container).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s).
    #[arg(long, value_parser = parse::duration)]
    pub health_interval: Option<Duration>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s).
    #[arg(long, value_parser = parse::duration)]
    pub health_timeout: Option<Duration>,
    /// Consecutive failures needed to report unhealthy (default 3).
    #[arg(long, value_parser = parse_count)]
    pub health_retries: Option<u64>,
    /// Start period for the container to initialize before counting retries towards unstable (ms|s|m|h).
    #[arg(long, value_parser = parse::duration)]
    pub health_start_period: Option<Duration>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,

    /// Maximum number of tasks updated simultaneously (0 to update all at once) (default 1).
    #[arg(long, value_parser = parse_count)]
    pub update_parallelism: Option<u64>,
    /// Delay between updates (ns|us|ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse::duration)]
    pub update_delay: Option<Duration>,
    /// Action on update failure ("pause", "continue", "rollback") (default "pause").
    #[arg(long, value_parser = parse_update_failure_action)]
    pub update_failure_action: Option<FailureAction>,
    /// Duration after each task update to monitor for failure (ns|us|ms|s|m|h) (default 5s).
    #[arg(long, value_parser = parse::duration)]
    pub update_monitor: Option<Duration>,
    /// Failure rate to tolerate during an update (0 to 1) (default 0).
    #[arg(long, value_parser = parse_ratio)]
    pub update_max_failure_ratio: Option<f32>,
    /// Update order ("start-first", "stop-first") (default "stop-first"); start-first needs a
    /// replicated service.
    #[arg(long, value_parser = parse_order)]
    pub update_order: Option<UpdateOrder>,

    /// Maximum number of tasks rolled back simultaneously (0 to roll back all at once) (default 1).
    #[arg(long, value_parser = parse_count)]
    pub rollback_parallelism: Option<u64>,
    /// Delay between task rollbacks (ns|us|ms|s|m|h) (default 0s).
    #[arg(long, value_parser = parse::duration)]
    pub rollback_delay: Option<Duration>,
    /// Action on rollback failure ("pause", "continue") (default "pause").
    #[arg(long, value_parser = parse_rollback_failure_action)]
    pub rollback_failure_action: Option<FailureAction>,
    /// Duration after each task rollback to monitor for failure (ns|us|ms|s|m|h) (default 5s).
    #[arg(long, value_parser = parse::duration)]
    pub rollback_monitor: Option<Duration>,
    /// Failure rate to tolerate during a rollback (0 to 1) (default 0).
    #[arg(long, value_parser = parse_ratio)]
    pub rollback_max_failure_ratio: Option<f32>,
    /// Rollback order ("start-first", "stop-first") (default "stop-first"); start-first needs a
    /// replicated service.
    #[arg(long, value_parser = parse_order)]
    pub rollback_order: Option<UpdateOrder>,
}

fn parse_count(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("invalid value {s:?}: expected a whole number (0 or more)"))
}

fn parse_ratio(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid failure ratio {s:?}: expected a number between 0 and 1"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!(
            "invalid failure ratio {s:?}: it must be between 0 and 1"
        ));
    }
    Ok(v)
}

fn parse_update_failure_action(s: &str) -> Result<FailureAction, String> {
    match s {
        "pause" => Ok(FailureAction::Pause),
        "continue" => Ok(FailureAction::Continue),
        "rollback" => Ok(FailureAction::Rollback),
        o => Err(format!(
            "invalid update failure action {o:?}: use pause, continue or rollback"
        )),
    }
}

fn parse_rollback_failure_action(s: &str) -> Result<FailureAction, String> {
    match s {
        "pause" => Ok(FailureAction::Pause),
        "continue" => Ok(FailureAction::Continue),
        o => Err(format!(
            "invalid rollback failure action {o:?}: use pause or continue"
        )),
    }
}

fn parse_order(s: &str) -> Result<UpdateOrder, String> {
    match s {
        "stop-first" => Ok(UpdateOrder::StopFirst),
        "start-first" => Ok(UpdateOrder::StartFirst),
        o => Err(format!(
            "invalid update order {o:?}: use stop-first or start-first"
        )),
    }
}

impl ServiceFlags {
    fn any_health(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
    }

    /// Applies the flags that were given to `spec` (a new one for create, the current one for
    /// update).
    pub fn apply(&self, spec: &mut ServiceSpec) -> anyhow::Result<()> {
        self.apply_health(&mut spec.task.container.healthcheck)?;
        apply_update(
            &mut spec.update_config,
            self.update_parallelism,
            self.update_delay,
            self.update_failure_action,
            self.update_monitor,
            self.update_max_failure_ratio,
            self.update_order,
        );
        apply_update(
            &mut spec.rollback_config,
            self.rollback_parallelism,
            self.rollback_delay,
            self.rollback_failure_action,
            self.rollback_monitor,
            self.rollback_max_failure_ratio,
            self.rollback_order,
        );
        Ok(())
    }

    fn apply_health(&self, hc: &mut Option<Box<HealthCheck>>) -> anyhow::Result<()> {
        if self.no_healthcheck {
            if self.any_health() {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            *hc = Some(Box::new(HealthCheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
            return Ok(());
        }
        if !self.any_health() {
            return Ok(());
        }
        let mut h = hc.take().unwrap_or_default();
        if h.disabled() {
            h.test.clear();
        }
        if let Some(cmd) = &self.health_cmd {
            h.test = if cmd.trim().is_empty() {
                Vec::new()
            } else {
                vec!["CMD-SHELL".into(), cmd.clone()]
            };
        }
        if let Some(v) = self.health_interval {
            h.interval = v;
        }
        if let Some(v) = self.health_timeout {
            h.timeout = v;
        }
        if let Some(v) = self.health_retries {
            h.retries = v;
        }
        if let Some(v) = self.health_start_period {
            h.start_period = v;
        }
        if h.test.is_empty() {
            bail!(
                "--health-interval, --health-timeout, --health-retries and --health-start-period \
                 need a health command: add --health-cmd CMD"
            );
        }
        *hc = Some(h);
        Ok(())
    }
}

fn apply_update(
    u: &mut UpdateConfig,
    parallelism: Option<u64>,
    delay: Option<Duration>,
    action: Option<FailureAction>,
    monitor: Option<Duration>,
    ratio: Option<f32>,
    order: Option<UpdateOrder>,
) {
    if let Some(v) = parallelism {
        u.parallelism = v;
    }
    if let Some(v) = delay {
        u.delay = v;
    }
    if let Some(v) = action {
        u.failure_action = v;
    }
    if let Some(v) = monitor {
        u.monitor = v;
    }
    if let Some(v) = ratio {
        u.max_failure_ratio = v;
    }
    if let Some(v) = order {
        u.order = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        f: ServiceFlags,
    }

    fn flags(args: &[&str]) -> Result<ServiceFlags, String> {
        let mut v = vec!["x"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)
            .map(|c| c.f)
            .map_err(|e| e.to_string())
    }

    fn spec() -> ServiceSpec {
        let mut s = ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            task: Default::default(),
            mode: swarm_types::spec::ServiceMode::Replicated { replicas: 1 },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        };
        s.task.container.image = "busybox:1".into();
        s
    }

    #[test]
    fn health_flags_map_to_the_spec() {
        let f = flags(&[
            "--health-cmd",
            "wget -q localhost || exit 1",
            "--health-interval",
            "2s",
            "--health-timeout",
            "500ms",
            "--health-retries",
            "5",
            "--health-start-period",
            "1m",
        ])
        .unwrap();
        let mut s = spec();
        f.apply(&mut s).unwrap();
        let h = s.task.container.healthcheck.clone().unwrap();
        assert_eq!(h.test, vec!["CMD-SHELL", "wget -q localhost || exit 1"]);
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!(h.timeout, Duration::from_millis(500));
        assert_eq!(h.retries, 5);
        assert_eq!(h.start_period, Duration::from_secs(60));
        s.validate().unwrap();

        // update: a timing flag keeps the existing command.
        let f = flags(&["--health-retries", "1"]).unwrap();
        f.apply(&mut s).unwrap();
        let h = s.task.container.healthcheck.clone().unwrap();
        assert_eq!((h.test[0].as_str(), h.retries), ("CMD-SHELL", 1));

        // --no-healthcheck disables, and conflicts with the others.
        let f = flags(&["--no-healthcheck"]).unwrap();
        f.apply(&mut s).unwrap();
        assert!(s.task.container.healthcheck.as_ref().unwrap().disabled());
        s.validate().unwrap();
        let f = flags(&["--no-healthcheck", "--health-cmd", "true"]).unwrap();
        assert!(f
            .apply(&mut spec())
            .unwrap_err()
            .to_string()
            .contains("conflicts"));
        // timings alone have nothing to run.
        let f = flags(&["--health-interval", "1s"]).unwrap();
        assert!(f
            .apply(&mut spec())
            .unwrap_err()
            .to_string()
            .contains("--health-cmd"));
        // no health flag: untouched.
        let mut s = spec();
        flags(&[]).unwrap().apply(&mut s).unwrap();
        assert_eq!(s.task.container.healthcheck, None);
    }

    #[test]
    fn update_and_rollback_flags_map_to_the_spec() {
        let f = flags(&[
            "--update-parallelism",
            "0",
            "--update-delay",
            "10s",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "30s",
            "--update-max-failure-ratio",
            "0.25",
            "--update-order",
            "start-first",
            "--rollback-parallelism",
            "3",
            "--rollback-failure-action",
            "continue",
            "--rollback-order",
            "stop-first",
        ])
        .unwrap();
        let mut s = spec();
        f.apply(&mut s).unwrap();
        assert_eq!(
            s.update_config,
            UpdateConfig {
                parallelism: 0,
                delay: Duration::from_secs(10),
                failure_action: FailureAction::Rollback,
                monitor: Duration::from_secs(30),
                max_failure_ratio: 0.25,
                order: UpdateOrder::StartFirst,
            }
            .into()
        );
        assert_eq!(s.rollback_config.parallelism, 3);
        assert_eq!(s.rollback_config.failure_action, FailureAction::Continue);
        // Unset fields keep docker's defaults.
        assert_eq!(s.rollback_config.monitor, Duration::from_secs(5));
        assert_eq!(s.rollback_config.delay, Duration::ZERO);
        s.validate().unwrap();
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let e = flags(&["--update-failure-action", "explode"]).unwrap_err();
        assert!(e.contains("pause, continue or rollback"), "{e}");
        let e = flags(&["--rollback-failure-action", "rollback"]).unwrap_err();
        assert!(e.contains("pause or continue"), "{e}");
        let e = flags(&["--update-order", "random"]).unwrap_err();
        assert!(e.contains("stop-first or start-first"), "{e}");
        let e = flags(&["--update-max-failure-ratio", "1.5"]).unwrap_err();
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = flags(&["--update-parallelism", "-1"]).unwrap_err();
        assert!(
            e.contains("whole number") || e.contains("unexpected argument"),
            "{e}"
        );
        let e = flags(&["--health-interval", "soon"]).unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
    }
}
