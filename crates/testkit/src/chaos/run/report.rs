//! What a run reports: per step, and the summary with its anomalies.

use super::*;

/// What one step showed.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    pub plan: String,
    pub index: usize,
    pub label: String,
    pub target: String,
    pub skipped: Option<String>,
    /// Fault to the first acknowledged write that began after it.
    pub failover: Option<Duration>,
    /// Heal to the first acknowledged write that began after it.
    pub recovery: Option<Duration>,
    /// Longest stretch of the step without any acknowledged write.
    pub max_gap: Duration,
    pub writes_ok: usize,
    pub writes_failed: usize,
    /// Of the failed writes, those a manager refused for lack of a leader or quorum (the rest
    /// are conflicts, "already exists", "not found", or a manager that was down).
    pub writes_refused: usize,
    pub writes_unknown: usize,
    pub reads_ok: usize,
    /// Cut-off worker: fault to the replacement of its task.
    pub replaced_after: Option<Duration>,
    pub anomalies: Vec<String>,
    pub notes: Vec<String>,
    pub duration: Duration,
}

/// How a step ended, in order of precedence: anything it found counts, even if it was then
/// skipped; a skip counts as a skip; only a step that ran and found nothing is ok.
#[derive(Debug, PartialEq, Eq)]
pub enum StepOutcome<'a> {
    Anomalies(usize),
    Skipped(&'a str),
    Ok,
}

impl StepReport {
    /// A step whose clients got no write acknowledged on its keys checked nothing about
    /// them (their histories are empty of writes): that is an anomaly, never an `ok`.
    pub fn require_client_writes(&mut self) {
        if self.skipped.is_none() && self.writes_ok == 0 {
            self.anomalies.push(format!(
                "no client write on the step's keys was acknowledged ({} failed, {} unknown): \
                 its linearizability and lost-write checks checked nothing",
                self.writes_failed, self.writes_unknown
            ));
        }
    }

    pub fn outcome(&self) -> StepOutcome<'_> {
        match (&self.skipped, self.anomalies.len()) {
            (_, n) if n > 0 => StepOutcome::Anomalies(n),
            (Some(r), _) => StepOutcome::Skipped(r),
            (None, _) => StepOutcome::Ok,
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    /// Steps the plans hold; those that never ran (a stop request, a cluster that could not
    /// be built) count as skipped: they checked nothing.
    pub planned: usize,
    pub steps: Vec<StepReport>,
    /// Problems outside a step (cluster setup).
    pub errors: Vec<String>,
    pub history_files: Vec<PathBuf>,
    pub repro: String,
}

impl Report {
    pub fn anomalies(&self) -> usize {
        self.steps.iter().map(|s| s.anomalies.len()).sum::<usize>() + self.errors.len()
    }

    /// Why each skipped step checked nothing, as the closing line counts them (a step that
    /// found anomalies before its skip counts for those), plus one line for the planned steps
    /// that never ran.
    pub fn skipped(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .steps
            .iter()
            .filter_map(|s| match s.outcome() {
                StepOutcome::Skipped(r) => Some(format!("{} {}: {r}", s.plan, s.label)),
                _ => None,
            })
            .collect();
        if self.not_run() > 0 {
            out.push(format!(
                "{} planned step(s) never ran (stopped, or their cluster could not be built)",
                self.not_run()
            ));
        }
        out
    }

    /// Planned steps that never ran.
    pub fn not_run(&self) -> usize {
        self.planned.saturating_sub(self.steps.len())
    }

    /// Steps that checked nothing: skipped, or planned and never run.
    pub fn skipped_steps(&self) -> usize {
        let skipped = self
            .steps
            .iter()
            .filter(|s| matches!(s.outcome(), StepOutcome::Skipped(_)))
            .count();
        skipped + self.not_run()
    }

    /// The run's verdict, the one rule every caller applies: anomalies fail it, and so do
    /// skipped steps when `skips_fail` (CI, and the t55 test always) — a skipped step checked
    /// nothing, so a run of skips is never a pass. Outside CI the skips are returned to be
    /// said aloud.
    pub fn verdict(&self, skips_fail: bool) -> Result<Vec<String>, String> {
        let skipped = self.skipped();
        if self.anomalies() > 0 {
            return Err(format!(
                "{} anomalies (seed {}); reproduce with: {}",
                self.anomalies(),
                self.seed,
                self.repro
            ));
        }
        if !skipped.is_empty() && skips_fail {
            return Err(format!(
                "{} step(s) skipped or never ran, so they checked nothing: {skipped:?}",
                self.skipped_steps()
            ));
        }
        Ok(skipped)
    }

    /// A table for humans: one line per step, then the anomalies in full.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "chaos run, seed {}; reproduce with: {}\n{:<6} {:>3} {:<34} {:<10} {:>9} {:>9} {:>8} {:>6} {:>6} {:>6} {:>7} {:>8}  {}\n",
            self.seed, self.repro, "plan", "#", "step", "target", "failover", "recovery", "max-gap",
            "w-ok", "w-fail", "w-unk", "reads", "replace", "result"
        );
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into())
        };
        for s in &self.steps {
            let result = match s.outcome() {
                StepOutcome::Anomalies(n) => format!("{n} ANOMALIES"),
                StepOutcome::Skipped(r) => format!("SKIPPED ({r})"),
                StepOutcome::Ok => "ok".into(),
            };
            out.push_str(&format!(
                "{:<6} {:>3} {:<34} {:<10} {:>9} {:>9} {:>8} {:>6} {:>6} {:>6} {:>7} {:>8}  {}\n",
                s.plan,
                s.index,
                s.label,
                s.target,
                ms(s.failover),
                ms(s.recovery),
                format!("{:.2}s", s.max_gap.as_secs_f64()),
                s.writes_ok,
                s.writes_failed,
                s.writes_unknown,
                s.reads_ok,
                ms(s.replaced_after),
                result
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("ERROR: {e}\n"));
        }
        for s in &self.steps {
            for a in &s.anomalies {
                out.push_str(&format!(
                    "ANOMALY in {} step {} ({}): {a}\n",
                    s.plan, s.index, s.label
                ));
            }
            for n in &s.notes {
                out.push_str(&format!(
                    "note {} step {} ({}): {n}\n",
                    s.plan, s.index, s.label
                ));
            }
        }
        out.push_str(&self.by_fault());
        out.push_str(&format!("histories: {:?}\n", self.history_files));
        out.push_str(&self.closing_line());
        out
    }

    /// The last line: how many steps checked what they should and found nothing, how many
    /// found anomalies, and how many were skipped (a skipped step checked nothing and is never
    /// counted as ok).
    pub fn closing_line(&self) -> String {
        let count =
            |f: fn(&StepOutcome) -> bool| self.steps.iter().filter(|s| f(&s.outcome())).count();
        let with_anomalies = count(|o| matches!(o, StepOutcome::Anomalies(_)));
        let skipped = count(|o| matches!(o, StepOutcome::Skipped(_)));
        let ok = count(|o| matches!(o, StepOutcome::Ok));
        let not_run = match self.not_run() {
            0 => String::new(),
            n => format!(", {n} never ran"),
        };
        format!(
            "{} steps: {ok} ok, {with_anomalies} with anomalies, {skipped} skipped{not_run}; {} errors outside steps\n",
            self.steps.len(),
            self.errors.len()
        )
    }

    /// Numbers per cluster size and fault (steps with and without an update or scale
    /// together): how many ran, failover median and worst (fault to the first acknowledged
    /// write that began after it), longest window without an acknowledged write, writes
    /// refused (certainly not applied) and with unknown outcome, anomalies.
    pub fn by_fault(&self) -> String {
        let mut groups: BTreeMap<(String, String), Vec<&StepReport>> = BTreeMap::new();
        for s in self
            .steps
            .iter()
            .filter(|s| !matches!(s.outcome(), StepOutcome::Skipped(_)))
        {
            let fault = s.label.split('+').next().unwrap_or_default().to_string();
            groups.entry((s.plan.clone(), fault)).or_default().push(s);
        }
        let mut out = format!(
            "\nper fault:\n{:<6} {:<24} {:>5} {:>10} {:>10} {:>11} {:>8} {:>8} {:>9} {:>9}\n",
            "plan",
            "fault",
            "steps",
            "fo-median",
            "fo-worst",
            "gap-worst",
            "refused",
            "unknown",
            "acked",
            "anomalies"
        );
        for ((plan, fault), steps) in &groups {
            let mut fo: Vec<Duration> = steps.iter().filter_map(|s| s.failover).collect();
            fo.sort();
            let med = fo.get(fo.len() / 2).copied();
            let worst = fo.last().copied();
            let gap = steps.iter().map(|s| s.max_gap).max().unwrap_or_default();
            let f = |d: Option<Duration>| {
                d.map(|d| format!("{:.2}s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into())
            };
            out.push_str(&format!(
                "{:<6} {:<24} {:>5} {:>10} {:>10} {:>11} {:>8} {:>8} {:>9} {:>9}\n",
                plan,
                fault,
                steps.len(),
                f(med),
                f(worst),
                format!("{:.2}s", gap.as_secs_f64()),
                steps.iter().map(|s| s.writes_refused).sum::<usize>(),
                steps.iter().map(|s| s.writes_unknown).sum::<usize>(),
                steps.iter().map(|s| s.writes_ok).sum::<usize>(),
                steps.iter().map(|s| s.anomalies.len()).sum::<usize>(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_step_is_counted_as_skipped_never_as_ok() {
        let step = |skipped: Option<&str>, anomalies: usize| StepReport {
            skipped: skipped.map(String::from),
            anomalies: vec!["x".into(); anomalies],
            ..Default::default()
        };
        let r = Report {
            steps: vec![step(None, 0), step(Some("no sch_netem"), 0), step(None, 2)],
            ..Default::default()
        };
        assert_eq!(r.skipped().len(), 1);
        assert_eq!(
            r.closing_line(),
            "3 steps: 1 ok, 1 with anomalies, 1 skipped; 0 errors outside steps\n"
        );
        let table = r.summary();
        assert_eq!(table.matches(" ok\n").count(), 1, "{table}");
        assert!(table.contains("SKIPPED (no sch_netem)"), "{table}");
        // A step that found something before it was skipped counts for what it found.
        let r = Report {
            steps: vec![step(Some("no netem"), 1), step(Some("no netem"), 0)],
            ..Default::default()
        };
        assert_eq!(
            r.closing_line(),
            "2 steps: 0 ok, 1 with anomalies, 1 skipped; 0 errors outside steps\n"
        );
        assert!(r.summary().contains("1 ANOMALIES"), "{}", r.summary());
        assert!(r.verdict(false).is_err());
        // The skip list and count agree with the closing line: one skipped step.
        assert_eq!(r.skipped().len(), 1);
        assert_eq!(r.skipped_steps(), 1);
    }

    #[test]
    fn a_step_whose_clients_wrote_nothing_is_an_anomaly_not_ok() {
        let mut idle = StepReport {
            writes_failed: 3,
            ..Default::default()
        };
        idle.require_client_writes();
        assert!(matches!(idle.outcome(), StepOutcome::Anomalies(1)));
        let mut busy = StepReport {
            writes_ok: 40,
            ..Default::default()
        };
        busy.require_client_writes();
        assert_eq!(busy.outcome(), StepOutcome::Ok);
        let mut skipped = StepReport {
            skipped: Some("no sch_netem".into()),
            ..Default::default()
        };
        skipped.require_client_writes();
        assert_eq!(skipped.outcome(), StepOutcome::Skipped("no sch_netem"));
    }

    #[test]
    fn a_run_of_only_skipped_steps_fails_where_skips_fail() {
        let r = Report {
            steps: vec![
                StepReport {
                    skipped: Some("no sch_netem".into()),
                    ..Default::default()
                };
                2
            ],
            ..Default::default()
        };
        assert_eq!(r.anomalies(), 0, "nothing found, because nothing ran");
        let e = r.verdict(true).unwrap_err();
        assert!(e.contains("2 step(s) skipped"), "{e}");
        assert_eq!(
            r.verdict(false).unwrap().len(),
            2,
            "outside CI: said, not hidden"
        );
        assert!(
            r.closing_line().starts_with("2 steps: 0 ok"),
            "{}",
            r.closing_line()
        );
        // Steps that never ran (a stop, a failed setup) are skips too, never a quiet pass.
        let cut = Report {
            planned: 5,
            steps: vec![
                StepReport {
                    writes_ok: 3,
                    ..Default::default()
                };
                2
            ],
            ..Default::default()
        };
        assert_eq!(
            cut.closing_line(),
            "2 steps: 2 ok, 0 with anomalies, 0 skipped, 3 never ran; 0 errors outside steps\n"
        );
        assert_eq!(cut.skipped_steps(), 3);
        let e = cut.verdict(true).unwrap_err();
        assert!(e.starts_with("3 step(s) skipped or never ran"), "{e}");
        assert!(e.contains("3 planned step(s) never ran"), "{e}");
        assert_eq!(cut.verdict(false).unwrap().len(), 1);
        let bad = Report {
            steps: vec![StepReport {
                anomalies: vec!["lost write".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(bad.verdict(false).is_err(), "anomalies fail everywhere");
    }
}
