//! One step of a plan: its fault injected, the rolling update and scale change issued while
//! it holds, healed, and every check the issue asks for after it.

use super::*;

/// What a step set up before its fault, for the checks after it.
struct Setup {
    keys: [String; 2],
    roll: String,
    before: BTreeMap<String, (String, u64, TaskState)>,
    canary_ids_before: BTreeSet<String>,
    step_t0: Duration,
}

impl Runner {
    pub(super) fn run_step(&mut self, index: usize, step: Step) -> StepReport {
        let started = Instant::now();
        let mut rep = StepReport {
            plan: self.plan.label(),
            index,
            label: step.label(),
            ..Default::default()
        };
        info!(plan = %rep.plan, step = index, label = %rep.label, "chaos: phase: step begins");
        let Some(Setup {
            keys,
            roll,
            before,
            canary_ids_before,
            step_t0,
        }) = self.prepare(index, step, &mut rep)
        else {
            return rep;
        };

        info!(step = index, fault = ?step.fault, "chaos: phase: inject");
        let fault_at = self.now();
        let mut active = match self.inject(step.fault) {
            Ok(a) => a,
            Err(InjectError::Skip(u)) => {
                info!("chaos: skipped {}: {u}", step.fault.name());
                rep.skipped = Some(u.reason);
                self.heal_all();
                *self.shared.keys.lock().expect("keys lock") = Vec::new();
                return rep;
            }
            Err(InjectError::Fail(e)) => {
                rep.anomalies
                    .push(format!("could not inject {}: {e}", step.fault.name()));
                self.heal_all();
                return rep;
            }
        };
        rep.target = active.target.clone();
        // The rolling update and the scale change go out while the fault holds.
        let bg = self.update_and_scale(index, step, &roll);
        let hold = step.fault.hold(self.opts.node_down_grace);
        if step.fault == Fault::CutWorker {
            self.watch_cut_worker(&mut active, &before, fault_at, hold, &mut rep);
        } else {
            let until = fault_at + hold;
            while self.now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        info!(step = index, "chaos: phase: heal");
        let heal_at = self.now();
        self.heal(&mut active, &mut rep);

        self.check_recovery(heal_at, &mut active, &canary_ids_before, &mut rep);

        info!(step = index, "chaos: phase: quiesce and check");
        self.shared.keys.lock().expect("keys lock").clear();
        let _ = crate::wait_until(
            "clients done with the step's keys",
            workload::OP_TIMEOUT * 2,
            || {
                keys.iter()
                    .all(|k| self.shared.in_flight(k) == 0)
                    .then_some(())
            },
        );
        for h in bg {
            let _ = self.rt.block_on(h);
        }
        let mut all_keys: Vec<String> = keys.to_vec();
        all_keys.push(roll.clone());
        for k in &all_keys {
            if let Err(e) = self.exec_until_ok(k, Input::Read, Duration::from_secs(30)) {
                rep.anomalies
                    .push(format!("final read of {k} failed after the heal: {e}"));
            }
        }
        // The rolling update and scale change finish once the fault is gone.
        let conv = crate::wait_until("the step's service converges", LONG, || {
            let s = self.services().ok()?;
            let r = s.iter().find(|s| s.spec.name == roll)?;
            let st = r.status.as_ref()?;
            let updating = r
                .update_status
                .as_ref()
                .is_some_and(|u| u.state.is_active());
            (st.running_tasks == st.desired_tasks && !updating).then_some(())
        });
        if conv.is_err() {
            let s = self.services().unwrap_or_default();
            let r = s.iter().find(|s| s.spec.name == roll);
            rep.anomalies.push(format!(
                "{roll} did not converge within {LONG:?} after the heal (rolling update or scale stuck): status {:?}, update {:?}",
                r.and_then(|r| r.status.clone()),
                r.and_then(|r| r.update_status.clone())
            ));
        }

        // Linearizability and lost writes, per key.
        let ops = self.check_histories(&all_keys, &mut rep);
        self.check_canaries_and_bounds(&before, &active, &mut rep);
        rep.notes.append(&mut active.notes);
        self.metrics(&mut rep, &ops, step_t0, fault_at, heal_at);
        rep.require_client_writes();
        // Clean up the step's services (best effort, not checked).
        for k in &all_keys {
            let m = self.random_manager();
            let _ = self.exec(m, k, Input::Remove);
        }
        self.flush_history();
        rep.duration = started.elapsed();
        if !rep.anomalies.is_empty() {
            eprintln!(
                "chaos: ANOMALY in {} step {index} ({}); seed {}; reproduce with: {}",
                rep.plan, rep.label, self.opts.seed, self.opts.repro
            );
            for a in &rep.anomalies {
                eprintln!("chaos: ANOMALY: {a}");
            }
        }
        rep
    }

    pub(super) fn metrics(
        &self,
        rep: &mut StepReport,
        ops: &[Op],
        step_t0: Duration,
        fault_at: Duration,
        heal_at: Duration,
    ) {
        let writes: Vec<&Op> = ops
            .iter()
            .filter(|o| o.input.is_write() && o.client != RUNNER)
            .collect();
        rep.writes_ok = writes
            .iter()
            .filter(|o| o.outcome == Outcome::Ok(None))
            .count();
        rep.writes_failed = writes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Fail(_)))
            .count();
        rep.writes_refused = writes
            .iter()
            .filter(|o| matches!(&o.outcome, Outcome::Fail(e) if e.starts_with("Unavailable")))
            .count();
        rep.writes_unknown = writes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Unknown(_)))
            .count();
        rep.reads_ok = ops
            .iter()
            .filter(|o| o.input == Input::Read && matches!(o.outcome, Outcome::Ok(_)))
            .count();
        let all = self.shared.history.lock().expect("history lock");
        let mut acks: Vec<Duration> = all
            .iter()
            .filter(|o| o.input.is_write() && o.outcome == Outcome::Ok(None) && o.end >= step_t0)
            .map(|o| o.end)
            .collect();
        acks.sort();
        rep.failover = all
            .iter()
            .filter(|o| o.input.is_write() && o.outcome == Outcome::Ok(None) && o.start >= fault_at)
            .map(|o| o.end.saturating_sub(fault_at))
            .min();
        let end = heal_at.max(acks.last().copied().unwrap_or(heal_at));
        let mut prev = step_t0;
        let mut gap = Duration::ZERO;
        for a in acks.iter().filter(|a| **a <= end) {
            gap = gap.max(a.saturating_sub(prev));
            prev = *a;
        }
        rep.max_gap = gap;
    }

    pub(super) fn unsupported(&self, f: Fault) -> Option<String> {
        match f {
            Fault::ClockJumpLeader if self.env.clocks.is_empty() => Some(
                faults::faketime_lib()
                    .err()
                    .map(|u| u.reason)
                    .unwrap_or_else(|| "no fake clocks".into()),
            ),
            Fault::DiskFull if self.env.disk.is_none() => Some("needs 2+ managers".into()),
            Fault::CutWorker | Fault::TotalRestart if self.env.workers.is_empty() => {
                Some("no workers".into())
            }
            Fault::PartitionLeaderMinority | Fault::KillMinority if self.env.managers.len() < 5 => {
                Some("needs 5 managers".into())
            }
            _ => None,
        }
    }

    pub(super) fn followers(&self, leader: usize) -> Vec<usize> {
        self.env
            .managers
            .iter()
            .copied()
            .filter(|m| *m != leader)
            .collect()
    }

    /// Before the fault: a healthy cluster (healed once if a previous step left it broken),
    /// the step's two keys and its rolling service created, the canaries' tasks noted, the
    /// clients writing. `None` when the step cannot start (`rep` says why).
    fn prepare(&mut self, index: usize, step: Step, rep: &mut StepReport) -> Option<Setup> {
        if let Err(e) = self.wait_healthy(LONG) {
            // A previous step left it broken (already reported there): undo everything and try
            // once more.
            info!("chaos: not healthy before step {index}: {e}; healing all");
            self.heal_all();
            if let Err(e) = self.wait_healthy(LONG) {
                rep.anomalies.push(format!(
                    "cluster not healthy before the step, even after healing all: {e}\n{}",
                    self.env.cluster.dump()
                ));
                return None;
            }
        }
        let _ = self.wait_canaries(Duration::from_secs(20));
        // Skip early what this machine cannot do.
        if let Some(reason) = self.unsupported(step.fault) {
            info!("chaos: skipped {}: {reason}", step.fault.name());
            rep.skipped = Some(reason);
            return None;
        }
        let keys = [format!("s{index}-a"), format!("s{index}-b")];
        let roll = format!("s{index}-roll");
        for k in &keys {
            let v = Value {
                w: format!("init-{k}"),
                replicas: 1,
                gen: "g0".into(),
            };
            if let Err(e) = self.exec_until_ok(k, Input::Create(v), Duration::from_secs(30)) {
                rep.anomalies
                    .push(format!("could not create {k} before the fault: {e}"));
                return None;
            }
        }
        let roll_v = Value {
            w: format!("init-{roll}"),
            replicas: 3,
            gen: "g0".into(),
        };
        if let Err(e) = self.exec_until_ok(&roll, Input::Create(roll_v), Duration::from_secs(30)) {
            rep.anomalies.push(format!("could not create {roll}: {e}"));
            return None;
        }
        let _ = crate::wait_until("roll service running", Duration::from_secs(30), || {
            let s = self.services().ok()?;
            let r = s.iter().find(|s| s.spec.name == roll)?;
            (r.status.as_ref()?.running_tasks == 3).then_some(())
        });
        let before = match self.canary_tasks() {
            Ok(c) => c,
            Err(e) => {
                rep.anomalies.push(format!("cannot list canary tasks: {e}"));
                return None;
            }
        };
        let canary_ids_before = self.all_canary_ids().unwrap_or_default();
        *self.shared.keys.lock().expect("keys lock") = keys.to_vec();
        // Gaps are measured from here: the clients write from now on.
        let step_t0 = self.now();
        std::thread::sleep(Duration::from_millis(1500));
        Some(Setup {
            keys,
            roll,
            before,
            canary_ids_before,
            step_t0,
        })
    }

    /// The step's rolling update and scale change, sent in the background while the fault
    /// holds.
    fn update_and_scale(
        &mut self,
        index: usize,
        step: Step,
        roll: &str,
    ) -> Vec<tokio::task::JoinHandle<Op>> {
        let mut bg = Vec::new();
        if step.update {
            std::thread::sleep(Duration::from_millis(300));
            let m = self.random_manager();
            let v = Value {
                w: format!("upd-{roll}"),
                replicas: 3,
                gen: format!("g-upd-{index}"),
            };
            let s = self.shared.clone();
            let r = roll.to_string();
            bg.push(
                self.rt
                    .spawn(async move { s.exec(RUNNER, m, &r, Input::Update(v)).await }),
            );
        }
        if step.scale {
            std::thread::sleep(Duration::from_millis(1200));
            let m = self.random_manager();
            let to = if self.rng.chance(0.5) { 5 } else { 1 };
            let s = self.shared.clone();
            let r = roll.to_string();
            bg.push(
                self.rt
                    .spawn(async move { s.exec(RUNNER, m, &r, Input::Scale(to)).await }),
            );
        }
        bg
    }

    /// After the heal: writes accepted again (the recovery time), the cluster healthy, the
    /// canaries converged, and a cut-off worker's tasks handled.
    fn check_recovery(
        &mut self,
        heal_at: Duration,
        active: &mut Active,
        canary_ids_before: &BTreeSet<String>,
        rep: &mut StepReport,
    ) {
        // Liveness: writes are accepted again soon after the heal.
        let recovered = crate::wait_until(
            "an acknowledged write after heal",
            Duration::from_secs(30),
            || {
                let h = self.shared.history.lock().expect("history lock");
                h.iter()
                    .filter(|o| {
                        o.input.is_write() && o.outcome == Outcome::Ok(None) && o.start >= heal_at
                    })
                    .map(|o| o.end)
                    .min()
            },
        );
        match recovered {
            Ok(t) => rep.recovery = Some(t.saturating_sub(heal_at)),
            Err(_) => rep.anomalies.push(format!(
                "no write acknowledged within 30s after the heal\n{}",
                self.env.cluster.dump()
            )),
        }
        if let Err(e) = self.wait_healthy(LONG) {
            rep.anomalies.push(format!(
                "cluster did not recover after the heal: {e}\n{}",
                self.env.cluster.dump()
            ));
        }
        if let Err(e) = self.wait_canaries(LONG) {
            rep.anomalies.push(format!(
                "canary services did not converge after the heal: {e}"
            ));
        }

        if let Some(mine) = active.after_cut.take() {
            self.check_after_cut(&mine, canary_ids_before, rep);
        }
    }

    /// Every key's history: linearizable, and no acknowledged write lost. Returns the
    /// step's operations (for the metrics).
    fn check_histories(&mut self, all_keys: &[String], rep: &mut StepReport) -> Vec<Op> {
        let ops: Vec<Op> = {
            let h = self.shared.history.lock().expect("history lock");
            h.iter()
                .filter(|o| all_keys.contains(&o.key))
                .cloned()
                .collect()
        };
        for k in all_keys {
            let kops: Vec<&Op> = ops.iter().filter(|o| &o.key == k).collect();
            let checked = checker::check_key(k, &kops);
            if let Ok(n) = checked {
                if n > checker::BUDGET {
                    rep.notes.push(format!(
                        "linearizability of {k} inconclusive: gave up after {n} configurations ({} operations)",
                        kops.len()
                    ));
                }
            }
            if let Err(e) = checked {
                rep.anomalies.push(format!(
                    "history of {k} is not linearizable: {}\nlongest linearizable prefix: {:?}\nhistory of {k}:\n  {}",
                    e.stuck_at,
                    e.longest_prefix,
                    kops.iter().map(|o| o.line()).collect::<Vec<_>>().join("\n  ")
                ));
            }
            for l in checker::lost_writes(&kops) {
                rep.anomalies.push(l);
            }
        }
        ops
    }

    /// No canary task on a host the fault did not touch was restarted, and never more
    /// running tasks than replicas (from the sampler).
    fn check_canaries_and_bounds(
        &mut self,
        before: &BTreeMap<String, (String, u64, TaskState)>,
        active: &Active,
        rep: &mut StepReport,
    ) {
        // No container restarted by a control-plane fault.
        match self.canary_tasks() {
            Ok(after) => {
                for (id, (host, ts, state)) in before {
                    if *state != TaskState::Running || active.faulted.contains(host) {
                        continue;
                    }
                    match after.get(id) {
                        Some((h2, ts2, TaskState::Running)) if h2 == host && ts2 == ts => {}
                        other => rep.anomalies.push(format!(
                            "canary task {id} on {host} (not faulted) was restarted or replaced by the fault: now {other:?}"
                        )),
                    }
                }
            }
            Err(e) => rep
                .anomalies
                .push(format!("cannot list canary tasks after the step: {e}")),
        }
        // Running-task bound, from the sampler.
        for v in std::mem::take(&mut *self.shared.violations.lock().expect("violations lock")) {
            rep.anomalies
                .push(format!("more running tasks than replicas: {v}"));
        }
        let seen =
            std::mem::take(&mut *self.shared.observations.lock().expect("observations lock"));
        if !seen.is_empty() {
            rep.notes.push(format!(
                "{} transient surpluses (a scale-down not yet acted on), first: {}",
                seen.len(),
                seen[0]
            ));
        }
    }
}
