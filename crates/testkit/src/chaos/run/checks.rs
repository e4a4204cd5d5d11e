//! The checks after a worker was cut off: its tasks replaced neither too early nor too late.

use super::*;

impl Runner {
    /// Every canary task id, live or not.
    pub(super) fn all_canary_ids(&self) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for s in [CANARY, CANARY_GLOBAL] {
            out.extend(self.tasks(s)?.into_iter().map(|t| t.id.to_string()));
        }
        Ok(out)
    }

    /// After a cut-off worker is back: its replaced tasks stop (the surplus goes), and nothing
    /// churns: one new task per task it lost, and the set stays put.
    pub(super) fn check_after_cut(
        &mut self,
        mine: &BTreeSet<String>,
        ids_before: &BTreeSet<String>,
        rep: &mut StepReport,
    ) {
        let stopped = crate::wait_until(
            "the cut-off worker's old tasks stop",
            Duration::from_secs(30),
            || {
                let mut all = Vec::new();
                for s in [CANARY, CANARY_GLOBAL] {
                    all.extend(self.tasks(s).ok()?);
                }
                all.iter()
                    .filter(|t| mine.contains(t.id.as_str()))
                    .all(|t| t.status.state.is_terminal())
                    .then_some(())
            },
        );
        if let Err(e) = stopped {
            rep.anomalies
                .push(format!("surplus not removed after the heal: {e}"));
        }
        let first = self.canary_tasks().unwrap_or_default();
        std::thread::sleep(Duration::from_secs(3));
        let second = self.canary_tasks().unwrap_or_default();
        if first.keys().ne(second.keys()) {
            rep.anomalies.push(format!(
                "canary tasks churn after the heal: {:?} then {:?}",
                first.keys().collect::<Vec<_>>(),
                second.keys().collect::<Vec<_>>()
            ));
        }
        let new: Vec<String> = self
            .all_canary_ids()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| !ids_before.contains(id))
            .collect();
        if new.len() > mine.len() {
            rep.anomalies.push(format!(
                "thrash: {} canary tasks created for {} lost on the cut-off worker: {new:?}",
                new.len(),
                mine.len()
            ));
        }
    }

    /// Holds a worker's cut for `hold`, watching when its canary task is replaced, then checks
    /// the replacement came no sooner than heartbeat timeout + grace (the last heartbeat may
    /// have come up to one period before the cut), and no later than a few seconds after.
    pub(super) fn watch_cut_worker(
        &mut self,
        a: &mut Active,
        before: &BTreeMap<String, (String, u64, TaskState)>,
        fault_at: Duration,
        hold: Duration,
        rep: &mut StepReport,
    ) {
        let w = a.cut_worker.expect("cut worker");
        let host = self.names[w].clone();
        let mine: BTreeSet<String> = before
            .iter()
            .filter(|(_, v)| v.0 == host)
            .map(|(k, _)| k.clone())
            .collect();
        let mut replaced = None;
        while self.now() < fault_at + hold {
            if replaced.is_none() {
                if let Ok(now) = self.canary_tasks() {
                    // A task of the cut worker is no longer desired running.
                    if mine.iter().any(|id| !now.contains_key(id)) {
                        replaced = Some(self.now().saturating_sub(fault_at));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let grace = self.opts.node_down_grace;
        let min = crate::chaos::HEARTBEAT_TIMEOUT - crate::chaos::HEARTBEAT_PERIOD + grace;
        let max = crate::chaos::HEARTBEAT_TIMEOUT + grace + Duration::from_secs(3);
        rep.replaced_after = replaced;
        match replaced {
            None => rep.anomalies.push(format!(
                "the cut-off worker {host}'s tasks were not replaced within {hold:?} (expected by {max:?})"
            )),
            Some(t) if t + Duration::from_millis(300) < min => rep.anomalies.push(format!(
                "the cut-off worker {host}'s tasks were replaced after {t:?}, before heartbeat timeout + grace ({min:?} at the earliest)"
            )),
            Some(t) if t > max => rep.anomalies.push(format!(
                "the cut-off worker {host}'s tasks were replaced only after {t:?} (expected by {max:?})"
            )),
            _ => {}
        }
        a.after_cut = Some(mine);
        a.notes
            .push(format!("{host}'s canary tasks replaced after {replaced:?}"));
    }
}
