//! `Dispatcher.Discovery`: a node's view for DNS, virtual IPs and published ports
//! (`swarm_types::discovery::view_of`), sent whole at the start and after every change of
//! it. Unlike the overlay peers, a task's status matters here (a task that stops running
//! leaves the answers), so status-only changes of tasks on networks count; changes of services
//! that are in no view (no network, no published port) do not.

use super::peers::derived;
use crate::manager::Manager;
use std::pin::Pin;
use swarm_api::dispatcher::DiscoveryMessage;
use swarm_types::discovery::view_of;
use swarm_types::{NodeId, Object};
use tokio_stream::Stream;
use tonic::Status;

pub type DiscoveryStream = Pin<Box<dyn Stream<Item = Result<DiscoveryMessage, Status>> + Send>>;

pub fn stream(manager: Manager, node: NodeId) -> DiscoveryStream {
    derived(
        manager,
        move |s| view_of(s, &node),
        |c, last| match &c.object {
            Object::Task(t) => !t.networks.is_empty(),
            // A service on no network and publishing nothing is in no view; it matters only
            // when it was in the last one (it lost its networks or ports, or was removed).
            // Without this, every write of any service made every node's stream recompute
            // its view over the whole store (issue 17's raft_bench profile).
            Object::Service(s) => {
                !s.spec.task.networks.is_empty()
                    || !s.endpoint.ports.is_empty()
                    || !s.spec.endpoint.ports.is_empty()
                    || last.is_none_or(|v| v.service(&s.id).is_some())
            }
            Object::Node(_) | Object::Network(_) => true,
            _ => false,
        },
        |v| DiscoveryMessage {
            view: swarm_api::wire::to_bytes(v),
        },
    )
}
