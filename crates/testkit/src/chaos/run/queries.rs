//! What the runner reads from the cluster: nodes, tasks, services, the leader, health and
//! the canary tasks, through whichever manager answers.

use super::*;

impl Runner {
    /// Runs `f` against the first manager that answers.
    pub(super) fn with_manager<T>(
        &self,
        f: impl Fn(
            workload::Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tonic::Status>> + Send>,
        >,
    ) -> Result<T, String> {
        let managers = self.shared.managers.lock().expect("managers lock").clone();
        let mut last = String::from("no manager");
        for m in managers {
            let sock = self.env.cluster.nodes[m].socket();
            let r = self.rt.block_on(async {
                let c = workload::connect(&sock).await.map_err(|e| e.to_string())?;
                tokio::time::timeout(Duration::from_secs(4), f(c))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|s| s.message().to_string())
            });
            match r {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("{}: {e}", self.names[m]),
            }
        }
        Err(last)
    }

    pub(super) fn nodes(&self, stale: bool) -> Result<Vec<Node>, String> {
        self.with_manager(move |mut c| {
            Box::pin(async move {
                let mut s = c
                    .list_nodes(ListRequest {
                        stale,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let mut out = Vec::new();
                while let Some(p) = s.message().await? {
                    for o in p.objects {
                        if let Ok(Object::Node(n)) = serde_json::from_slice(&o) {
                            out.push(n);
                        }
                    }
                }
                Ok(out)
            })
        })
    }

    pub(super) fn tasks(&self, service: &str) -> Result<Vec<Task>, String> {
        let service = service.to_string();
        self.with_manager(move |mut c| {
            let service = service.clone();
            Box::pin(async move {
                let mut s = c
                    .list_tasks(ListRequest {
                        service,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let mut out = Vec::new();
                while let Some(p) = s.message().await? {
                    for o in p.objects {
                        if let Ok(Object::Task(t)) = serde_json::from_slice(&o) {
                            out.push(t);
                        }
                    }
                }
                Ok(out)
            })
        })
    }

    pub(super) fn services(&self) -> Result<Vec<Service>, String> {
        self.with_manager(move |mut c| {
            Box::pin(async move {
                let mut s = c.list_services(ListRequest::default()).await?.into_inner();
                let mut out = Vec::new();
                while let Some(p) = s.message().await? {
                    for o in p.objects {
                        if let Ok(Object::Service(t)) = serde_json::from_slice(&o) {
                            out.push(*t);
                        }
                    }
                }
                Ok(out)
            })
        })
    }

    pub(super) fn index_of_host(&self, hostname: &str) -> Option<usize> {
        self.names.iter().position(|n| n == hostname)
    }

    /// The current leader's node index, as the managers report it.
    pub(super) fn leader(&self) -> Option<usize> {
        let st = self
            .with_manager(|mut c| {
                Box::pin(async move { Ok(c.status(StatusRequest {}).await?.into_inner()) })
            })
            .ok()?;
        if st.leader_node_id.is_empty() {
            return None;
        }
        let nodes = self.nodes(true).ok()?;
        let host = nodes
            .iter()
            .find(|n| n.id.as_str() == st.leader_node_id)?
            .description
            .hostname
            .clone();
        self.index_of_host(&host)
    }

    pub(super) fn wait_leader(&self) -> Result<usize, String> {
        crate::wait_until("a leader", LONG, || self.leader()).map_err(|e| e.to_string())
    }

    /// Every node ready, every manager a reachable voter, a leader; `Err` says what is not.
    pub(super) fn healthy(&self) -> Result<(), String> {
        let nodes = self.nodes(false)?;
        let want = self.env.managers.len() + self.env.workers.len();
        if nodes.len() != want {
            return Err(format!("{} nodes listed, {want} expected", nodes.len()));
        }
        for n in &nodes {
            if n.status.state != NodeState::Ready {
                return Err(format!(
                    "{} is {}: {}",
                    n.description.hostname,
                    n.status.state.as_str(),
                    n.status.message
                ));
            }
        }
        let st = self.with_manager(|mut c| {
            Box::pin(async move { Ok(c.status(StatusRequest {}).await?.into_inner()) })
        })?;
        let voters: Vec<_> = st.managers.iter().filter(|m| m.voter).collect();
        if voters.len() != self.env.managers.len() {
            return Err(format!(
                "{} voters, {} managers expected",
                voters.len(),
                self.env.managers.len()
            ));
        }
        if let Some(m) = voters.iter().find(|m| m.status == "unreachable") {
            return Err(format!("manager {} is unreachable", m.addr));
        }
        Ok(())
    }

    pub(super) fn wait_healthy(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match self.healthy() {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("not healthy after {timeout:?}: {last}"))
    }

    // ----- canaries ------------------------------------------------------------------------

    pub(super) fn setup_canaries(&mut self) -> Result<(), String> {
        self.wait_healthy(LONG)?;
        let mut r = ServiceSpec::replicated(CANARY, "busybox:latest", self.canary_replicas);
        r.task.placement.constraints = vec!["node.role==worker".into()];
        let mut g = ServiceSpec::replicated(CANARY_GLOBAL, "busybox:latest", 0);
        g.mode = ServiceMode::Global;
        g.task.placement.constraints = vec!["node.role==worker".into()];
        for spec in [r, g] {
            let b = swarm_api::wire::to_bytes(&spec);
            self.with_manager(move |mut c| {
                let b = b.clone();
                Box::pin(async move {
                    c.create_service(CreateServiceRequest {
                        spec: b,
                        ..Default::default()
                    })
                    .await?;
                    Ok(())
                })
            })?;
        }
        self.wait_canaries(LONG)
    }

    /// Live canary tasks: id → (node hostname, running since).
    pub(super) fn canary_tasks(
        &self,
    ) -> Result<BTreeMap<String, (String, u64, TaskState)>, String> {
        let nodes = self.nodes(true)?;
        let host = |id: &Option<swarm_types::NodeId>| {
            id.as_ref()
                .and_then(|id| nodes.iter().find(|n| n.id == *id))
                .map(|n| n.description.hostname.clone())
                .unwrap_or_default()
        };
        let mut out = BTreeMap::new();
        for s in [CANARY, CANARY_GLOBAL] {
            for t in self.tasks(s)? {
                if t.desired_state == TaskState::Running {
                    out.insert(
                        t.id.to_string(),
                        (host(&t.node_id), t.status.timestamp, t.status.state),
                    );
                }
            }
        }
        Ok(out)
    }

    pub(super) fn wait_canaries(&self, timeout: Duration) -> Result<(), String> {
        let want = self.canary_replicas as usize + self.env.workers.len();
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            match self.canary_tasks() {
                Ok(t) => {
                    let running = t.values().filter(|v| v.2 == TaskState::Running).count();
                    if running == want && t.len() == want {
                        return Ok(());
                    }
                    last = format!(
                        "{running} of {want} canary tasks running ({} live)",
                        t.len()
                    );
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("canaries not settled after {timeout:?}: {last}"))
    }

    // ----- a step --------------------------------------------------------------------------

    pub(super) fn exec(&self, node: usize, key: &str, input: Input) -> Op {
        let s = self.shared.clone();
        let key = key.to_string();
        self.rt
            .block_on(async move { s.exec(RUNNER, node, &key, input).await })
    }

    pub(super) fn random_manager(&mut self) -> usize {
        let m = self.shared.managers.lock().expect("managers lock").clone();
        *self.rng.pick(&m)
    }

    /// Runs `input` until it is acknowledged (a create that "already exists" counts: the
    /// service is there).
    pub(super) fn exec_until_ok(
        &mut self,
        key: &str,
        input: Input,
        timeout: Duration,
    ) -> Result<Op, String> {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let m = self.random_manager();
            // Every write carries its own id, retries too: the checker tells writes apart by
            // it (a read of a retried value must not be credited to a failed attempt).
            let this = match &input {
                Input::Create(v) | Input::Update(v) if attempt > 1 => {
                    let v = Value {
                        w: format!("{}#{attempt}", v.w),
                        ..v.clone()
                    };
                    if matches!(input, Input::Create(_)) {
                        Input::Create(v)
                    } else {
                        Input::Update(v)
                    }
                }
                i => i.clone(),
            };
            let op = self.exec(m, key, this);
            match &op.outcome {
                Outcome::Ok(_) => return Ok(op),
                Outcome::Fail(e) if e.contains("AlreadyExists") => return Ok(op),
                Outcome::Fail(e) | Outcome::Unknown(e) => {
                    if start.elapsed() > timeout {
                        return Err(format!(
                            "{} {key} not done after {timeout:?}: {e}",
                            input.name()
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
