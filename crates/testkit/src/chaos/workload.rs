//! Concurrent clients that create, update, scale, remove and read services through every
//! manager's control socket and record each operation, and a sampler that watches the
//! running-task invariant.

use super::history::{classify, Input, Op, Outcome, Value, GEN_ENV, LABEL};
use super::rng::Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarm_api::control::control_client::ControlClient;
use swarm_api::control::{
    CreateServiceRequest, GetRequest, ListRequest, RemoveRequest, ScaleServiceRequest,
    UpdateServiceRequest,
};
use swarm_types::spec::{ServiceMode, ServiceSpec, UpdateOrder};
use swarm_types::{Object, Service};
use tonic::transport::Channel;

pub type Client = ControlClient<Channel>;

/// A client gives up on a request after this long and records its outcome as unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(8);

/// What the clients, the sampler and the runner share.
pub struct Shared {
    pub t0: Instant,
    /// (hostname, control socket) of every node, by node index.
    pub nodes: Mutex<Vec<(String, PathBuf)>>,
    /// Node indexes of the managers clients may use.
    pub managers: Mutex<Vec<usize>>,
    /// Services the clients work on now.
    pub keys: Mutex<Vec<String>>,
    /// Requests in flight per key.
    pub in_flight: Mutex<BTreeMap<String, usize>>,
    pub history: Mutex<Vec<Op>>,
    next_id: AtomicU64,
    pub stop: AtomicBool,
    /// Invariant violations seen by the sampler.
    pub violations: Mutex<Vec<String>>,
    /// What the sampler saw that is allowed but worth telling (a transient surplus).
    pub observations: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(nodes: Vec<(String, PathBuf)>, managers: Vec<usize>) -> Arc<Shared> {
        Arc::new(Shared {
            t0: Instant::now(),
            nodes: Mutex::new(nodes),
            managers: Mutex::new(managers),
            keys: Mutex::default(),
            in_flight: Mutex::default(),
            history: Mutex::default(),
            next_id: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            violations: Mutex::default(),
            observations: Mutex::default(),
        })
    }

    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn node(&self, i: usize) -> (String, PathBuf) {
        self.nodes.lock().expect("nodes lock")[i].clone()
    }

    /// Runs one operation against node `node` and records it.
    pub async fn exec(&self, client: usize, node: usize, key: &str, input: Input) -> Op {
        *self
            .in_flight
            .lock()
            .expect("in_flight lock")
            .entry(key.to_string())
            .or_default() += 1;
        let (via, sock) = self.node(node);
        let id = self.next_id();
        let start = self.now();
        let outcome = match tokio::time::timeout(OP_TIMEOUT, call(&sock, key, &input)).await {
            Ok(o) => o,
            Err(_) => Outcome::Unknown(format!("client timeout after {OP_TIMEOUT:?}")),
        };
        let op = Op {
            id,
            client,
            key: key.to_string(),
            via,
            input,
            start,
            end: self.now(),
            outcome,
        };
        self.history.lock().expect("history lock").push(op.clone());
        if let Some(n) = self.in_flight.lock().expect("in_flight lock").get_mut(key) {
            *n -= 1;
        }
        op
    }

    pub fn in_flight(&self, key: &str) -> usize {
        self.in_flight
            .lock()
            .expect("in_flight lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

pub async fn connect(sock: &std::path::Path) -> Result<ControlClient<Channel>, String> {
    let t = swarm_api::transport::Target::Unix(sock.display().to_string());
    let ch = tokio::time::timeout(Duration::from_secs(2), swarm_api::transport::connect(&t))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(ControlClient::new(ch)
        .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES))
}

/// The spec a client writes for `v` (update pacing: one task at a time).
pub fn spec_for(key: &str, v: &Value, start_first: bool) -> ServiceSpec {
    let mut spec = ServiceSpec::replicated(key, "busybox:latest", v.replicas);
    spec.labels.insert(LABEL.into(), v.w.clone());
    spec.task.container.env.push(format!("{GEN_ENV}={}", v.gen));
    spec.task.container.stop_grace_period = Duration::from_secs(1);
    // The step's own service updates slowly, so its rolling update is still in flight when
    // the fault is healed.
    spec.update_config.delay = if key.ends_with("-roll") {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(300)
    };
    spec.update_config.monitor = Duration::from_secs(1);
    if start_first {
        spec.update_config.order = UpdateOrder::StartFirst;
    }
    spec
}

fn decode_service(b: &[u8]) -> Result<Service, String> {
    match serde_json::from_slice::<Object>(b) {
        Ok(Object::Service(s)) => Ok(*s),
        Ok(_) => Err("not a service".into()),
        Err(e) => Err(format!("decode: {e}")),
    }
}

async fn call(sock: &std::path::Path, key: &str, input: &Input) -> Outcome {
    let mut c = match connect(sock).await {
        // Never sent.
        Err(e) => return Outcome::Fail(format!("connect: {e}")),
        Ok(c) => c,
    };
    let read = *input == Input::Read;
    let res: Result<Option<Value>, tonic::Status> = match input {
        Input::Create(v) => c
            .create_service(CreateServiceRequest {
                spec: swarm_api::wire::to_bytes(&spec_for(key, v, false)),
                ..Default::default()
            })
            .await
            .map(|_| None),
        Input::Update(v) => c
            .update_service(UpdateServiceRequest {
                reference: key.to_string(),
                version: 0,
                spec: swarm_api::wire::to_bytes(&spec_for(key, v, v.gen.ends_with("-sf"))),
                ..Default::default()
            })
            .await
            .map(|_| None),
        Input::Scale(r) => c
            .scale_service(ScaleServiceRequest {
                reference: key.to_string(),
                replicas: *r,
            })
            .await
            .map(|_| None),
        Input::Remove => c
            .remove_service(RemoveRequest {
                reference: key.to_string(),
                force: false,
            })
            .await
            .map(|_| None),
        Input::Read => match c
            .get_service(GetRequest {
                reference: key.to_string(),
                stale: false,
            })
            .await
        {
            Ok(r) => match decode_service(&r.get_ref().object) {
                Ok(s) => Ok(Some(Value::of(&s.spec))),
                Err(e) => return Outcome::Unknown(e),
            },
            Err(e) => Err(e),
        },
    };
    match res {
        Ok(v) => Outcome::Ok(v),
        Err(s) => classify(&s, read),
    }
}

/// One client: picks a key, a manager and an operation at random, over and over, until
/// `stop`. Values carry the operation's unique id so every write can be told apart.
pub async fn client(shared: Arc<Shared>, me: usize, mut rng: Rng) {
    while !shared.stop.load(Ordering::Relaxed) {
        let key = {
            let keys = shared.keys.lock().expect("keys lock");
            if keys.is_empty() {
                None
            } else {
                Some(rng.pick(&keys).clone())
            }
        };
        let Some(key) = key else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let node = {
            let m = shared.managers.lock().expect("managers lock");
            *rng.pick(&m)
        };
        let w = format!("c{me}-{}", rng.next_u64() % 1_000_000_000);
        let replicas = 1 + rng.below(3);
        let gen = match rng.below(10) {
            0..=4 => "g0".to_string(),
            5..=7 => w.clone(),
            _ => format!("{w}-sf"),
        };
        let v = Value { w, replicas, gen };
        let input = match rng.below(100) {
            0..=39 => Input::Read,
            40..=67 => Input::Update(v),
            68..=84 => Input::Scale(replicas),
            85..=96 => Input::Create(v),
            _ => Input::Remove,
        };
        shared.exec(me, node, &key, input).await;
        tokio::time::sleep(Duration::from_millis(30 + rng.below(150))).await;
    }
}

/// How long a service may stay above its replica count while a leader is there to fix it
/// (a scale-down is acted on by the next control-loop pass, well within a second).
pub const SURPLUS_GRACE: Duration = Duration::from_secs(5);

/// Samples the services through the managers in turn (linearizable reads: only a cluster
/// with a leader answers, and only a leader can remove a surplus) and records when a service
/// runs more tasks than its replicas allow (plus the parallelism of a start-first update in
/// progress) for longer than [`SURPLUS_GRACE`] of continuous sampling. A surplus seen once is
/// kept as an observation: a scale-down is not applied in the same instant as the spec.
pub async fn sampler(shared: Arc<Shared>) {
    let mut turn = 0usize;
    // Service name → when the current stretch over the bound began.
    let mut over_since: BTreeMap<String, Duration> = BTreeMap::new();
    let mut reported: std::collections::BTreeSet<String> = Default::default();
    let mut last_ok: Option<Duration> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let node = {
            let m = shared.managers.lock().expect("managers lock");
            if m.is_empty() {
                continue;
            }
            m[turn % m.len()]
        };
        turn += 1;
        let (name, sock) = shared.node(node);
        let Ok(mut c) = connect(&sock).await else {
            continue;
        };
        let Ok(Ok(resp)) = tokio::time::timeout(
            Duration::from_secs(2),
            c.list_services(ListRequest::default()),
        )
        .await
        else {
            continue;
        };
        let mut stream = resp.into_inner();
        let mut services = Vec::new();
        while let Ok(Some(page)) = stream.message().await {
            for o in page.objects {
                if let Ok(s) = decode_service(&o) {
                    services.push(s);
                }
            }
        }
        let now = shared.now();
        // A gap in the samples (no leader, or slow answers) restarts every stretch.
        if last_ok.is_none_or(|t| now.saturating_sub(t) > Duration::from_secs(2)) {
            over_since.clear();
        }
        last_ok = Some(now);
        let mut still = BTreeMap::new();
        for s in services {
            let Some(v) = over_replicas(&s, 0, 0) else {
                continue;
            };
            let since = *over_since.get(&s.spec.name).unwrap_or(&now);
            still.insert(s.spec.name.clone(), since);
            if since == now {
                shared.observations.lock().expect("observations lock").push(format!(
                    "[{:9.3}] {name}: service {} runs {v} (transient unless it lasts {SURPLUS_GRACE:?})",
                    now.as_secs_f64(),
                    s.spec.name
                ));
            }
            if now.saturating_sub(since) >= SURPLUS_GRACE && reported.insert(s.spec.name.clone()) {
                let tasks = task_lines(&mut c, &s.spec.name).await;
                shared
                    .violations
                    .lock()
                    .expect("violations lock")
                    .push(format!(
                        "[{:9.3}] service {} has run {v} for {:.1}s with a leader answering (read via {name}); update {:?}; its tasks:\n    {}",
                        now.as_secs_f64(),
                        s.spec.name,
                        now.saturating_sub(since).as_secs_f64(),
                        s.update_status.as_ref().map(|u| (u.state, &u.message)),
                        tasks.join("\n    ")
                    ));
            }
        }
        over_since = still;
    }
}

/// A service's tasks as one line each (for an anomaly's evidence).
async fn task_lines(c: &mut Client, service: &str) -> Vec<String> {
    let req = ListRequest {
        service: service.to_string(),
        ..Default::default()
    };
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(2), c.list_tasks(req)).await else {
        return vec!["(task list unavailable)".into()];
    };
    let mut stream = resp.into_inner();
    let mut out = Vec::new();
    while let Ok(Some(page)) = stream.message().await {
        for o in page.objects {
            if let Ok(Object::Task(t)) = serde_json::from_slice::<Object>(&o) {
                out.push(format!(
                    "task {} slot {} node {} desired {:?} state {:?} ({}) spec_version {} created {} updated {} status_ts {}",
                    t.id,
                    t.slot,
                    t.node_id.as_ref().map(|n| n.as_str()).unwrap_or("-"),
                    t.desired_state,
                    t.status.state,
                    t.status.message,
                    t.spec_version,
                    t.meta.created_at,
                    t.meta.updated_at,
                    t.status.timestamp
                ));
            }
        }
    }
    out
}

/// `Some(description)` when `s` has more running tasks than it may: the bound is the largest
/// replica count of the current spec and of every spec replaced within `window_ms` of
/// `wall_ms`, plus the parallelism of a start-first update in progress.
pub fn over_replicas(s: &Service, wall_ms: u64, window_ms: u64) -> Option<String> {
    let ServiceMode::Replicated { replicas } = s.spec.mode else {
        return None;
    };
    let status = s.status.as_ref()?;
    let recent = s
        .spec_history
        .iter()
        .filter(|h| h.replaced_at + window_ms >= wall_ms)
        .filter_map(|h| match h.spec.mode {
            ServiceMode::Replicated { replicas } => Some(replicas),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let updating = s
        .update_status
        .as_ref()
        .is_some_and(|u| u.state.is_active());
    let start_first = |spec: &ServiceSpec| {
        spec.update_config.order == UpdateOrder::StartFirst
            || spec.rollback_config.order == UpdateOrder::StartFirst
    };
    let extra = if updating
        && (start_first(&s.spec) || s.previous_spec.as_deref().is_some_and(start_first))
    {
        s.spec.update_config.parallelism.max(1)
    } else {
        0
    };
    let bound = replicas.max(recent) + extra;
    (status.running_tasks > bound).then(|| {
        format!(
            "{} running tasks; replicas {replicas} (recent specs up to {recent}, start-first allowance {extra})",
            status.running_tasks
        )
    })
}
