//! Injecting faults (kills, pauses, partitions, disk, CPU, clock, demotions, cut workers) and
//! undoing them.

use super::*;

impl Runner {
    pub(super) fn inject(&mut self, f: Fault) -> Result<Active, InjectError> {
        let mut a = Active::default();
        let e = |x: faults::FaultError| InjectError::Fail(x.to_string());
        let need_leader = !matches!(
            f,
            Fault::None | Fault::DiskFull | Fault::CutWorker | Fault::TotalRestart
        );
        let leader = if need_leader { self.wait_leader()? } else { 0 };
        let name = |i: usize| self.names[i].clone();
        match f {
            Fault::None => a.target = "-".into(),
            Fault::KillLeader => {
                self.env.cluster.kill(leader);
                a.killed.push(leader);
                a.target = name(leader);
                a.faulted.insert(name(leader));
            }
            Fault::KillFollower => {
                let fo = *self.rng.pick(&self.followers(leader));
                self.env.cluster.kill(fo);
                a.killed.push(fo);
                a.target = name(fo);
                a.faulted.insert(name(fo));
            }
            Fault::KillMinority | Fault::QuorumLoss => {
                let n = self.env.managers.len();
                let count = if f == Fault::KillMinority {
                    (n - 1) / 2
                } else {
                    n / 2 + 1
                };
                let mut victims = vec![leader];
                let mut rest = self.followers(leader);
                while victims.len() < count && !rest.is_empty() {
                    let i = self.rng.below(rest.len() as u64) as usize;
                    victims.push(rest.remove(i));
                }
                for v in &victims {
                    self.env.cluster.kill(*v);
                    a.killed.push(*v);
                    a.faulted.insert(name(*v));
                }
                a.target = victims
                    .iter()
                    .map(|v| name(*v))
                    .collect::<Vec<_>>()
                    .join(",");
            }
            Fault::PauseLeader => {
                self.env.cluster.signal(leader, Signal::SIGSTOP);
                a.paused.push(leader);
                a.target = name(leader);
            }
            Fault::IsolateLeader => {
                self.env.net.isolate(leader).map_err(e)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::PartitionLeaderMinority => {
                let mut side: Vec<usize> = vec![leader];
                let fo = self.followers(leader);
                side.push(*self.rng.pick(&fo));
                let other: Vec<usize> = (0..self.names.len())
                    .filter(|i| !side.contains(i))
                    .collect();
                self.env.net.partition(&side, &other).map_err(e)?;
                a.net = true;
                a.target = side.iter().map(|v| name(*v)).collect::<Vec<_>>().join(",");
            }
            Fault::OneWayLeaderOut => {
                for o in (0..self.names.len()).filter(|o| *o != leader) {
                    self.env.net.block(leader, o).map_err(e)?;
                }
                a.net = true;
                a.target = name(leader);
            }
            Fault::LossLeader => {
                self.env.net.loss(leader, 30).map_err(e)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::LatencyLeader => {
                self.env
                    .net
                    .latency(leader, 150)
                    .map_err(e)?
                    .map_err(InjectError::Skip)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::SlowLinkLeader => {
                self.env
                    .net
                    .slow_link(leader, 256)
                    .map_err(e)?
                    .map_err(InjectError::Skip)?;
                a.net = true;
                a.target = name(leader);
            }
            Fault::DiskFull => {
                let d = self.env.disk_node.ok_or("no disk node")?;
                let bytes = self.env.disk.as_ref().ok_or("no disk")?.fill().map_err(e)?;
                a.disk = true;
                a.target = name(d);
                a.notes
                    .push(format!("filled {}'s state dir with {bytes} bytes", name(d)));
            }
            Fault::CpuStarveLeader => {
                let pid = self.env.cluster.nodes[leader]
                    .pid()
                    .ok_or("leader has no pid")?;
                a.cpu = Some(Cpu::starve(pid, 3).map_err(e)?.map_err(InjectError::Skip)?);
                a.target = name(leader);
            }
            Fault::ClockJumpLeader => {
                let secs = 90i64;
                let c = self
                    .env
                    .clocks
                    .get(&leader)
                    .ok_or("leader has no fake clock")?;
                c.set(secs).map_err(e)?;
                a.clock = Some(leader);
                a.target = format!("{}{secs:+}s", name(leader));
                // libfaketime re-reads the offset once a second.
                std::thread::sleep(Duration::from_millis(1100));
            }
            Fault::CutWorker => {
                let w = *self.rng.pick(&self.env.workers);
                self.env.net.isolate(w).map_err(e)?;
                a.net = true;
                a.target = name(w);
                a.faulted.insert(name(w));
                a.cut_worker = Some(w);
            }
            Fault::DemotePromote => {
                let fo = *self.rng.pick(&self.followers(leader));
                a.target = name(fo);
                a.faulted.insert(name(fo));
                self.env.cluster.signal(fo, Signal::SIGSTOP);
                a.paused.push(fo);
                // Clients stop using it: it is about to leave the managers.
                self.shared
                    .managers
                    .lock()
                    .expect("managers lock")
                    .retain(|m| *m != fo);
                let out = self.env.cluster.ctl(leader, &["node", "demote", &name(fo)]);
                a.notes
                    .push(format!("demote {} while paused: {out:?}", name(fo)));
                if out.is_err() {
                    return Err(format!("demoting paused {} failed: {out:?}", name(fo)).into());
                }
                a.demoted = Some(fo);
            }
            Fault::TotalRestart => {
                for i in 0..self.names.len() {
                    self.env.cluster.kill(i);
                    a.killed.push(i);
                    a.faulted.insert(name(i));
                }
                a.target = "all".into();
            }
        }
        Ok(a)
    }

    /// Undoes every fault this harness can inject, whatever is active: packet rules and
    /// qdiscs, paused processes, fake clocks, the full disk, and restarts daemons that are
    /// not running.
    pub fn heal_all(&mut self) {
        let _ = self.env.net.heal();
        for i in 0..self.names.len() {
            self.env.cluster.signal(i, Signal::SIGCONT);
        }
        for c in self.env.clocks.values() {
            let _ = c.set(0);
        }
        if let Some(d) = &self.env.disk {
            d.free();
        }
        for i in 0..self.names.len() {
            if !self.env.cluster.nodes[i].is_running() {
                let _ = self.env.cluster.restart(i);
            }
        }
        let mut m = self.shared.managers.lock().expect("managers lock");
        for i in &self.env.managers {
            if !m.contains(i) {
                m.push(*i);
            }
        }
    }

    /// Undoes whatever `a` holds.
    pub(super) fn heal(&mut self, a: &mut Active, rep: &mut StepReport) {
        for p in a.paused.drain(..) {
            self.env.cluster.signal(p, Signal::SIGCONT);
        }
        if a.net {
            if let Err(e) = self.env.net.heal() {
                rep.anomalies
                    .push(format!("healing the network failed: {e}"));
            }
        }
        a.cpu = None;
        if let Some(c) = a.clock.take() {
            if let Some(c) = self.env.clocks.get(&c) {
                let _ = c.set(0);
            }
        }
        if a.disk {
            if let Some(d) = &self.env.disk {
                d.free();
            }
            if let Some(n) = self.env.disk_node {
                // Either it serves again on its own, or it has exited (fail-stop) and a
                // supervisor would start it again; a manager that does neither is caught by
                // the health check that follows.
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(20) {
                    if !self.env.cluster.nodes[n].is_running() {
                        a.notes.push(format!(
                            "{} exited on the full disk (restarted, as a supervisor would): {}",
                            self.names[n],
                            self.env.cluster.nodes[n]
                                .log_tail(400)
                                .lines()
                                .rfind(|l| l.contains("raft stopped"))
                                .unwrap_or("")
                        ));
                        a.killed.push(n);
                        break;
                    }
                    if self.env.cluster.ctl(n, &["cluster", "inspect"]).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        for k in std::mem::take(&mut a.killed) {
            if let Err(e) = self.env.cluster.restart(k) {
                rep.anomalies
                    .push(format!("restarting {} failed: {e}", self.names[k]));
            }
        }
        if let Some(fo) = a.demoted.take() {
            let name = self.names[fo].clone();
            // It learns its new role from its next heartbeat and restarts as a worker.
            let demoted = crate::wait_until(&format!("{name} is a worker"), LONG, || {
                let n = self.nodes(false).ok()?;
                n.iter()
                    .find(|n| n.description.hostname == name)
                    .filter(|n| n.role == NodeRole::Worker && n.status.state == NodeState::Ready)
                    .map(|_| ())
            });
            if let Err(e) = demoted {
                rep.anomalies
                    .push(format!("{e}\n{}", self.env.cluster.dump()));
            }
            let leader = self.wait_leader().unwrap_or(0);
            let out = crate::wait_until(&format!("{name} promoted back"), LONG, || {
                self.env
                    .cluster
                    .ctl(leader, &["node", "promote", &name])
                    .ok()
            });
            if let Err(e) = out {
                rep.anomalies.push(format!("promoting {name} back: {e}"));
            }
            let back = crate::wait_until(
                &format!("{name} is a voter again"),
                Duration::from_secs(90),
                || {
                    let st = self
                        .with_manager(|mut c| {
                            Box::pin(
                                async move { Ok(c.status(StatusRequest {}).await?.into_inner()) },
                            )
                        })
                        .ok()?;
                    let voters = st
                        .managers
                        .iter()
                        .filter(|m| m.voter && m.status != "unreachable")
                        .count();
                    (voters == self.env.managers.len()).then_some(())
                },
            );
            if let Err(e) = back {
                rep.anomalies
                    .push(format!("{e}\n{}", self.env.cluster.dump()));
            }
            let mut m = self.shared.managers.lock().expect("managers lock");
            if !m.contains(&fo) {
                m.push(fo);
            }
        }
    }
}
