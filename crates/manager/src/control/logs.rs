//! `Control.ServiceLogs`: the leader subscribes with its log broker; a follower forwards the
//! reader to the leader and passes the stream through.

use super::{find_service, resolve, ControlService};
use crate::dispatcher::node_name;
use crate::logs::{Target, REPLY_BUFFER};
use crate::manager::Manager;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use swarm_api::control::control_client::ControlClient;
use swarm_api::control::{ServiceLogsMessage, ServiceLogsRequest};
use swarm_api::dispatcher::LogSubscription;
use swarm_types::task::TaskState;
use tokio_stream::Stream;
use tonic::{Response, Status};

pub type LogsStream = Pin<Box<dyn Stream<Item = Result<ServiceLogsMessage, Status>> + Send>>;

/// The reader's stream on the leader; dropping it (the reader went away) ends the
/// subscription on every node.
struct Subscribed {
    rx: tokio::sync::mpsc::Receiver<Result<ServiceLogsMessage, Status>>,
    id: String,
    manager: Manager,
}

impl Stream for Subscribed {
    type Item = Result<ServiceLogsMessage, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.manager.logs().unsubscribe(&self.id);
    }
}

impl ControlService {
    pub(super) async fn do_service_logs(
        &self,
        r: ServiceLogsRequest,
    ) -> Result<Response<LogsStream>, Status> {
        let opts = r.options.clone().unwrap_or_default();
        for (what, t) in [("since", &opts.since), ("until", &opts.until)] {
            if !t.is_empty() && humantime::parse_rfc3339(t).is_err() {
                return Err(Status::invalid_argument(format!(
                    "--{what} {t:?} is not an RFC 3339 UTC time with nanoseconds (2026-12-03T10:00:00.000000000Z)"
                )));
            }
        }
        if let Some(ch) = self.manager.leader_channel()? {
            let s = ControlClient::new(ch)
                .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
                .service_logs(r)
                .await?
                .into_inner();
            return Ok(Response::new(Box::pin(s)));
        }
        // Reads what the leader committed: a service created just before is known.
        self.manager.read_barrier(false).await?;
        let (msg, targets) = self.read(|s| -> Result<_, Status> {
            let (msg, tasks): (LogSubscription, Vec<&swarm_types::Task>) =
                match find_service(s, &r.target) {
                    Ok(svc) => (
                        LogSubscription {
                            service_id: svc.id.to_string(),
                            ..Default::default()
                        },
                        s.tasks
                            .values()
                            .map(|t| &**t)
                            .filter(|t| t.service_id == svc.id)
                            .collect(),
                    ),
                    Err(e) if e.code() == tonic::Code::NotFound => {
                        let t = resolve(
                            "service or task",
                            &r.target,
                            s.tasks.values().map(|t| (t.id.as_str(), "", t)),
                        )?;
                        (
                            LogSubscription {
                                task_ids: vec![t.id.to_string()],
                                ..Default::default()
                            },
                            vec![t],
                        )
                    }
                    Err(e) => return Err(e),
                };
            // With follow, only nodes that run the tasks now matter for warnings; without,
            // every node holding a container of them.
            let mut nodes = BTreeMap::new();
            for t in tasks {
                let live = t.desired_state <= TaskState::Running;
                if let Some(n) = &t.node_id {
                    if !opts.follow || live {
                        nodes.insert(n.clone(), node_name(s, n));
                    }
                }
            }
            let targets: Vec<Target> = nodes
                .into_iter()
                .map(|(node, name)| Target { node, name })
                .collect();
            Ok((msg, targets))
        })?;
        let msg = LogSubscription {
            options: Some(opts),
            ..msg
        };
        let (tx, rx) = tokio::sync::mpsc::channel(REPLY_BUFFER);
        let id = self.manager.logs().subscribe(msg, &targets, tx);
        Ok(Response::new(Box::pin(Subscribed {
            rx,
            id,
            manager: self.manager.clone(),
        })))
    }
}
