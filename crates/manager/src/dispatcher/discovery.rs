//! `Dispatcher.Discovery`: a node's view for DNS, virtual IPs and published ports
//! (`swarm_types::discovery::view_of`), sent whole at the start and after every change of
//! it. Unlike the overlay peers, a task's status matters here (a task that stops running
//! leaves the answers), so status-only changes of tasks on networks count.

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
        |c| match &c.object {
            Object::Task(t) => !t.networks.is_empty(),
            Object::Node(_) | Object::Service(_) | Object::Network(_) => true,
            _ => false,
        },
        |v| DiscoveryMessage {
            view: swarm_api::wire::to_bytes(v),
        },
    )
}
