//! What one node needs to answer DNS for its containers and to balance service traffic,
//! derived from the store alone (so it is never staler than the node's stream of it): the
//! services and serving tasks on the networks the node has a task on, every service that
//! publishes ports (every host answers on an ingress port), and the cluster's host addresses.
//! The managers send it whole after every change (`Dispatcher.Discovery`); the agent never
//! merges, it replaces.

use crate::endpoint::{EndpointMode, PortConfig, PublishMode};
use crate::ids::{NetworkId, NodeId, ServiceId, TaskId};
use crate::network::Ipv4Net;
use crate::store::StoreState;
use crate::task::TaskState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub services: Vec<ServiceView>,
    pub tasks: Vec<TaskView>,
    /// Every node's host address (ingress traffic from one of them was already balanced).
    pub hosts: Vec<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    pub id: ServiceId,
    pub name: String,
    pub mode: EndpointMode,
    /// (VXLAN id of the network, virtual IP).
    pub vips: Vec<(u32, Ipv4Addr)>,
    /// Published ports, all numbers filled in.
    pub ports: Vec<PortConfig>,
    /// Network aliases (`--network name=X,alias=Y`), per VXLAN id.
    pub aliases: Vec<(u32, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: TaskId,
    pub service_id: ServiceId,
    pub slot: u64,
    pub node_id: NodeId,
    /// The address of the host running it.
    pub host: Option<Ipv4Addr>,
    pub addrs: Vec<TaskAddr>,
    /// Running (healthy, where it has a check) and meant to keep running: in DNS answers and
    /// behind VIPs. A task asked to stop leaves before it gets its stop signal.
    pub serving: bool,
    /// Its container runs (also while it drains before its stop): a connection another host
    /// already sent here may still go to it.
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAddr {
    pub vni: u32,
    pub network_id: NetworkId,
    pub addr: Ipv4Net,
}

impl View {
    pub fn service(&self, id: &ServiceId) -> Option<&ServiceView> {
        self.services.iter().find(|s| s.id == *id)
    }
}

/// The host part of a node's address (`IP:PORT` or `IP`).
pub fn host_ip(addr: &str) -> Option<Ipv4Addr> {
    addr.parse::<std::net::SocketAddrV4>()
        .map(|a| *a.ip())
        .ok()
        .or_else(|| addr.parse().ok())
}

/// Whether `t` is in answers and VIP sets.
pub fn serving(t: &crate::Task) -> bool {
    t.status.state == TaskState::Running && t.desired_state == TaskState::Running
}

/// The view of node `node`, sorted (equal states give equal views).
pub fn view_of(s: &StoreState, node: &NodeId) -> View {
    let local_vnis: BTreeSet<u32> = s
        .tasks_on(node)
        .filter(|t| !t.status.state.is_terminal())
        .flat_map(|t| t.networks.iter().map(|a| a.vni))
        .collect();
    let vni_of = |id: &NetworkId| s.networks.get(id).map(|n| n.vni);
    let mut services = Vec::new();
    let mut wanted: BTreeSet<&ServiceId> = BTreeSet::new();
    for svc in s.services.values() {
        let on_local = svc
            .spec
            .task
            .networks
            .iter()
            .filter_map(|a| s.networks.get(a.target.as_str()))
            .any(|n| local_vnis.contains(&n.vni));
        let publishes = svc
            .endpoint
            .ports
            .iter()
            .any(|p| p.mode == PublishMode::Ingress);
        let host_ports = !svc.endpoint.ports.is_empty();
        if !on_local && !publishes && !host_ports {
            continue;
        }
        wanted.insert(&svc.id);
        services.push(ServiceView {
            id: svc.id.clone(),
            name: svc.spec.name.clone(),
            mode: svc.spec.endpoint.mode,
            vips: svc
                .endpoint
                .virtual_ips
                .iter()
                .filter_map(|v| Some((vni_of(&v.network_id)?, v.addr.addr)))
                .collect(),
            ports: svc.endpoint.ports.clone(),
            aliases: svc
                .spec
                .task
                .networks
                .iter()
                .filter_map(|a| {
                    let vni = s.networks.get(a.target.as_str())?.vni;
                    Some(a.aliases.iter().map(move |al| (vni, al.clone())))
                })
                .flatten()
                .collect(),
        });
    }
    let mut tasks = Vec::new();
    for t in s.tasks.values() {
        let Some(n) = &t.node_id else { continue };
        if t.networks.is_empty() {
            continue;
        }
        let local = n == node;
        let serve = serving(t);
        // Remote tasks matter only while serving; this node's own also while they run
        // (their containers need their service's VIP rules).
        if !(serve || local && !t.status.state.is_terminal()) {
            continue;
        }
        if !wanted.contains(&t.service_id) {
            continue;
        }
        tasks.push(TaskView {
            id: t.id.clone(),
            service_id: t.service_id.clone(),
            slot: t.slot,
            node_id: n.clone(),
            host: s.nodes.get(n).and_then(|n| host_ip(&n.status.addr)),
            addrs: t
                .networks
                .iter()
                .map(|a| TaskAddr {
                    vni: a.vni,
                    network_id: a.network_id.clone(),
                    addr: a.address,
                })
                .collect(),
            serving: serve,
            running: t.status.state == TaskState::Running,
        });
    }
    let mut hosts: Vec<Ipv4Addr> = s
        .nodes
        .values()
        .filter_map(|n| host_ip(&n.status.addr))
        .collect();
    hosts.sort();
    hosts.dedup();
    View {
        services,
        tasks,
        hosts,
    }
}
