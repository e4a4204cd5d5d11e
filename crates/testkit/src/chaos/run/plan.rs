//! What a run is made of: faults, steps, plans (CI, netem, soak) and the options.

use super::*;

/// What can go wrong in a step. Targets are chosen when the step starts (the leader then, a
/// follower, a worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// No fault: the workload alone (and a rolling update or scale if asked).
    None,
    /// SIGKILL the leader, restart it with the same command line.
    KillLeader,
    KillFollower,
    /// SIGSTOP the leader, SIGCONT later (a paused leader that wakes up still "leading").
    PauseLeader,
    /// Drop all traffic to and from the leader's host.
    IsolateLeader,
    /// Leader and one follower on one side, the other managers and the workers on the other.
    PartitionLeaderMinority,
    /// The leader's packets to every other host are dropped; it still receives.
    OneWayLeaderOut,
    /// 30 % packet loss both ways at the leader's host.
    LossLeader,
    /// 150 ms of latency at the leader's host (tc netem).
    LatencyLeader,
    /// 256 kbit/s out of the leader's host (tc tbf).
    SlowLinkLeader,
    /// The manager whose state dir is on a small tmpfs runs out of space.
    DiskFull,
    /// The leader gets 3 % of one CPU (cgroup quota).
    CpuStarveLeader,
    /// The leader's wall clock jumps ahead 90 s, then back.
    ClockJumpLeader,
    /// A worker is cut off for longer than heartbeat timeout + node-down grace.
    CutWorker,
    /// SIGKILL a minority of managers including the leader (5 managers: 2).
    KillMinority,
    /// SIGKILL a majority of managers including the leader: writes must be refused, then work
    /// again.
    QuorumLoss,
    /// Pause a follower, demote it, resume it (it restarts as a worker), promote it back.
    DemotePromote,
    /// SIGKILL every node, start them all again.
    TotalRestart,
}

impl Fault {
    pub const ALL: [Fault; 18] = [
        Fault::None,
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::PartitionLeaderMinority,
        Fault::OneWayLeaderOut,
        Fault::LossLeader,
        Fault::LatencyLeader,
        Fault::SlowLinkLeader,
        Fault::DiskFull,
        Fault::CpuStarveLeader,
        Fault::ClockJumpLeader,
        Fault::CutWorker,
        Fault::KillMinority,
        Fault::QuorumLoss,
        Fault::DemotePromote,
        Fault::TotalRestart,
    ];

    pub fn name(self) -> String {
        format!("{self:?}")
    }

    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }

    /// How long the fault is held before it is undone.
    pub(super) fn hold(self, grace: Duration) -> Duration {
        match self {
            Fault::None => Duration::from_secs(3),
            Fault::KillLeader | Fault::KillFollower | Fault::KillMinority => Duration::from_secs(3),
            Fault::PauseLeader => Duration::from_secs(4),
            Fault::QuorumLoss => Duration::from_secs(4),
            Fault::ClockJumpLeader => Duration::from_millis(3500),
            Fault::CutWorker => crate::chaos::HEARTBEAT_TIMEOUT + grace + Duration::from_secs(4),
            Fault::LossLeader | Fault::SlowLinkLeader | Fault::CpuStarveLeader => {
                Duration::from_secs(6)
            }
            _ => Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub fault: Fault,
    /// Start a rolling update of the step's service while the fault is in effect.
    pub update: bool,
    /// Change its replica count while the fault is in effect.
    pub scale: bool,
}

impl Step {
    pub const fn new(fault: Fault, update: bool, scale: bool) -> Step {
        Step {
            fault,
            update,
            scale,
        }
    }
    pub fn label(&self) -> String {
        let mut s = self.fault.name();
        if self.update {
            s.push_str("+update");
        }
        if self.scale {
            s.push_str("+scale");
        }
        s
    }
}

/// One cluster and what to do to it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub managers: usize,
    pub workers: usize,
    /// Fixed steps; with `random_for`, steps are drawn from the seed until that much time
    /// passed.
    pub steps: Vec<Step>,
    pub random_for: Option<Duration>,
}

impl Plan {
    pub fn label(&self) -> String {
        format!("{}m+{}w", self.managers, self.workers)
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub plans: Vec<Plan>,
    /// Histories and, for failed plans, daemon logs go here.
    pub out_dir: PathBuf,
    pub clients: usize,
    pub node_down_grace: Duration,
    /// The command that reproduces this run (printed with every failure).
    pub repro: String,
}

/// The fixed-seed profile CI runs (about 4 minutes on two cores).
/// The faults that need the kernel's `sch_netem` for delay (CONFIG_NET_SCH_NETEM), which
/// the CI machine's kernel lacks: their own profile, so that a test can be marked ignored
/// (counted as such) instead of passing with a skipped step.
pub fn netem_plans() -> Vec<Plan> {
    vec![Plan {
        managers: 3,
        workers: 2,
        steps: vec![Step::new(Fault::LatencyLeader, false, false)],
        random_for: None,
    }]
}

/// The fixed CI profile: every fault but the `netem_plans` ones.
pub fn ci_plans() -> Vec<Plan> {
    use Fault::{
        ClockJumpLeader, CpuStarveLeader, CutWorker, DemotePromote, DiskFull, IsolateLeader,
        KillLeader, KillMinority, LossLeader, OneWayLeaderOut, PartitionLeaderMinority,
        PauseLeader, QuorumLoss, TotalRestart,
    };
    vec![
        Plan {
            managers: 3,
            workers: 2,
            steps: vec![
                Step::new(KillLeader, true, false),
                Step::new(PauseLeader, false, true),
                Step::new(IsolateLeader, true, true),
                Step::new(OneWayLeaderOut, false, false),
                Step::new(LossLeader, true, false),
                Step::new(DiskFull, true, false),
                Step::new(CpuStarveLeader, false, true),
                // With a rolling update across the jump: updates are paced on the leader's
                // monotonic observations (RELIABILITY.md finding 6).
                Step::new(ClockJumpLeader, true, true),
                Step::new(CutWorker, false, false),
                Step::new(QuorumLoss, false, false),
                Step::new(DemotePromote, false, false),
                Step::new(TotalRestart, true, false),
            ],
            random_for: None,
        },
        Plan {
            managers: 5,
            workers: 2,
            steps: vec![
                Step::new(KillMinority, true, false),
                Step::new(PartitionLeaderMinority, false, true),
                Step::new(IsolateLeader, true, true),
            ],
            random_for: None,
        },
    ]
}

/// The soak profile: random steps on a 3-manager and a 5-manager cluster in turn, each
/// cluster for `per_cluster`, until `total` has passed.
pub fn soak_plans(total: Duration, per_cluster: Duration) -> Vec<Plan> {
    let n = (total.as_secs() / per_cluster.as_secs().max(1)).max(1);
    (0..n)
        .map(|i| Plan {
            managers: if i % 2 == 0 { 3 } else { 5 },
            workers: 2,
            steps: Vec::new(),
            random_for: Some(per_cluster),
        })
        .collect()
}
