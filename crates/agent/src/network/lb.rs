//! Service traffic, as nftables rules computed from the discovery view (pure; `mod.rs` loads
//! them):
//!
//! - **Virtual IPs** are translated inside each client container's own namespace (as Docker
//!   does with IPVS in the sandbox): a connection to a VIP leaves the container already
//!   addressed to one serving task, picked at random, so the task sees the client's address
//!   and answers it directly; no host keeps per-connection state for it. A VIP without a
//!   serving task refuses connections at once.
//! - **Published ports** are translated on every host. An ingress port spreads over every
//!   serving task of the service: to a task on this host straight to its address, to a task
//!   elsewhere through that host's own published port (marked, so the connection leaves with
//!   this host's address and the reply comes back through it). Traffic that another cluster
//!   host already balanced only goes to this host's tasks. With `traffic=local`, and for
//!   host-mode ports, only this host's tasks answer, and they see the client's address.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use swarm_types::discovery::View;
use swarm_types::endpoint::{EndpointMode, PortConfig, PublishMode, TrafficPolicy};
use swarm_types::NodeId;

/// The table loaded in a container's namespace.
pub const CONTAINER_TABLE: &str = "swarm-lb";
/// Marks the first packet of an ingress connection sent on to another host (masqueraded).
pub const MESH_MARK: u32 = 0x5357_0001;

/// `dnat` to one of `to` (address or `address . port` items), at random.
fn spread(to: &[String]) -> String {
    match to {
        [one] => one.replace(" . ", ":"),
        _ => {
            let items: Vec<String> = to
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{i} : {t}"))
                .collect();
            format!(
                "numgen random mod {} map {{ {} }}",
                to.len(),
                items.join(", ")
            )
        }
    }
}

/// The ruleset for a container attached to the networks `vnis` (empty: none is needed).
pub fn container_rules(view: &View, vnis: &BTreeSet<u32>) -> String {
    let mut nat = String::new();
    let mut refuse = String::new();
    for svc in view.services.iter().filter(|s| s.mode == EndpointMode::Vip) {
        for (vni, vip) in svc.vips.iter().filter(|(v, _)| vnis.contains(v)) {
            let mut to: Vec<Ipv4Addr> = view
                .tasks
                .iter()
                .filter(|t| t.serving && t.service_id == svc.id)
                .flat_map(|t| t.addrs.iter().filter(|a| a.vni == *vni))
                .map(|a| a.addr.addr)
                .collect();
            to.sort();
            if to.is_empty() {
                writeln!(
                    refuse,
                    "    ip daddr {vip} meta l4proto tcp reject with tcp reset"
                )
                .ok();
                writeln!(refuse, "    ip daddr {vip} reject").ok();
            } else {
                let to: Vec<String> = to.iter().map(|a| a.to_string()).collect();
                writeln!(nat, "    ip daddr {vip} dnat to {}", spread(&to)).ok();
            }
        }
    }
    if nat.is_empty() && refuse.is_empty() {
        return String::new();
    }
    let t = CONTAINER_TABLE;
    format!(
        "table ip {t} {{\n  chain nat-out {{\n    type nat hook output priority -100; policy accept;\n{nat}  }}\n  chain filter-out {{\n    type filter hook output priority 0; policy accept;\n{refuse}  }}\n}}\n"
    )
}

/// Rules for the published ports, for the node's table: (prerouting, output) chain bodies.
/// `live`: the ids of this host's task containers that run now (what this host knows before
/// the managers' view says it).
pub fn port_rules(
    view: &View,
    me: &NodeId,
    my_host: Option<Ipv4Addr>,
    live: &BTreeSet<String>,
) -> (String, String) {
    let mut pre = String::new();
    let mut out = String::new();
    let others: Vec<String> = view
        .hosts
        .iter()
        .filter(|h| Some(**h) != my_host)
        .map(|h| h.to_string())
        .collect();
    for svc in &view.services {
        for p in &svc.ports {
            let mut local = Vec::new();
            let mut remote = Vec::new();
            // For connections another host already balanced: this host's task containers that
            // run now, including ones the view does not call serving yet (another host's view
            // may be a moment ahead of this one's); draining ones (asked to stop) only when
            // there is nothing else, since they are about to get their stop signal.
            let mut running = Vec::new();
            let mut draining = Vec::new();
            for t in view.tasks.iter().filter(|t| t.service_id == svc.id) {
                if t.node_id == *me {
                    if let Some(a) = t.addrs.first() {
                        let to = format!("{} . {}", a.addr.addr, p.target);
                        if live.contains(t.id.as_str()) {
                            if t.running && !t.serving {
                                draining.push(to.clone());
                            } else {
                                running.push(to.clone());
                            }
                        }
                        if t.serving {
                            local.push(to);
                        }
                    }
                } else if let (true, Some(h)) = (t.serving, t.host) {
                    remote.push(format!("{h} . {}", p.published));
                }
            }
            if running.is_empty() {
                running = draining;
            }
            local.sort();
            remote.sort();
            running.sort();
            let m = match_port(p);
            match (p.mode, p.traffic) {
                (PublishMode::Ingress, TrafficPolicy::Cluster) => {
                    // Balanced by another host already: this host's tasks only, and with none
                    // the connection is refused here (never sent on, so it cannot loop).
                    if !others.is_empty() {
                        let action = if running.is_empty() {
                            "accept".to_string()
                        } else {
                            format!("dnat ip to {}", spread(&running))
                        };
                        writeln!(pre, "    ip saddr {{ {} }} {m} {action}", others.join(", ")).ok();
                    }
                    let all: Vec<String> = local.iter().chain(remote.iter()).cloned().collect();
                    if !all.is_empty() {
                        let rule = format!(
                            "    {m} meta mark set {MESH_MARK:#x} dnat ip to {}\n",
                            spread(&all)
                        );
                        pre.push_str(&rule);
                        out.push_str(&rule);
                    }
                }
                (PublishMode::Ingress, TrafficPolicy::Local) | (PublishMode::Host, _) => {
                    if p.mode == PublishMode::Host {
                        local.truncate(1);
                    }
                    if !local.is_empty() {
                        let rule = format!("    {m} dnat ip to {}\n", spread(&local));
                        pre.push_str(&rule);
                        out.push_str(&rule);
                    }
                }
            }
        }
    }
    (pre, out)
}

fn match_port(p: &PortConfig) -> String {
    format!(
        "fib daddr type local {} dport {}",
        p.protocol.as_str(),
        p.published
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_types::discovery::{ServiceView, TaskAddr, TaskView};
    use swarm_types::endpoint::Protocol;
    use swarm_types::network::Ipv4Net;
    use swarm_types::{NetworkId, ServiceId, TaskId};

    fn task(id: &str, node: &str, host: [u8; 4], addr: [u8; 4], serving: bool) -> TaskView {
        TaskView {
            id: TaskId::new(id),
            service_id: ServiceId::new("web"),
            slot: 1,
            node_id: NodeId::new(node),
            host: Some(host.into()),
            addrs: vec![TaskAddr {
                vni: 4097,
                network_id: NetworkId::new("n"),
                addr: Ipv4Net::new(addr.into(), 24),
            }],
            serving,
            running: serving,
        }
    }

    fn view(ports: Vec<PortConfig>) -> View {
        View {
            services: vec![ServiceView {
                id: ServiceId::new("web"),
                name: "web".into(),
                mode: EndpointMode::Vip,
                vips: vec![(4097, Ipv4Addr::new(10, 0, 0, 2))],
                ports,
                aliases: vec![],
            }],
            tasks: vec![
                task("a", "n1", [198, 18, 0, 1], [10, 0, 0, 5], true),
                task("b", "n2", [198, 18, 0, 2], [10, 0, 0, 6], true),
                task("c", "n2", [198, 18, 0, 2], [10, 0, 0, 7], false),
            ],
            hosts: vec![[198, 18, 0, 1].into(), [198, 18, 0, 2].into()],
        }
    }

    #[test]
    fn vips_go_to_serving_tasks_only() {
        let v = view(vec![]);
        let r = container_rules(&v, &BTreeSet::from([4097]));
        assert!(
            r.contains(
                "ip daddr 10.0.0.2 dnat to numgen random mod 2 map { 0 : 10.0.0.5, 1 : 10.0.0.6 }"
            ),
            "{r}"
        );
        // Not on the network: nothing.
        assert_eq!(container_rules(&v, &BTreeSet::from([4098])), "");
        // No serving task: refused.
        let mut v = v;
        v.tasks.iter_mut().for_each(|t| t.serving = false);
        let r = container_rules(&v, &BTreeSet::from([4097]));
        assert!(r.contains("ip daddr 10.0.0.2 reject"), "{r}");
    }

    #[test]
    fn ingress_spreads_over_the_cluster_and_local_keeps_the_client() {
        let p = PortConfig {
            protocol: Protocol::Tcp,
            target: 80,
            published: 8080,
            mode: PublishMode::Ingress,
            traffic: TrafficPolicy::Cluster,
        };
        let v = view(vec![p.clone()]);
        let all = BTreeSet::from(["a".to_string(), "b".to_string(), "c".to_string()]);
        let (pre, out) = port_rules(&v, &NodeId::new("n1"), Some([198, 18, 0, 1].into()), &all);
        assert!(pre.contains("ip saddr { 198.18.0.2 } fib daddr type local tcp dport 8080 dnat ip to 10.0.0.5:80"), "{pre}");
        assert!(
            pre.contains(
                "dnat ip to numgen random mod 2 map { 0 : 10.0.0.5 . 80, 1 : 198.18.0.2 . 8080 }"
            ),
            "{pre}"
        );
        assert!(!out.contains("saddr"), "{out}");
        // A host without a task forwards everything, except what another host sent.
        let (pre, _) = port_rules(&v, &NodeId::new("n3"), Some([198, 18, 0, 3].into()), &all);
        assert!(pre.contains("198.18.0.1 . 8080"), "{pre}");
        assert!(
            pre.contains(
                "ip saddr { 198.18.0.1, 198.18.0.2 } fib daddr type local tcp dport 8080 accept"
            ),
            "{pre}"
        );
        // A draining task still takes what another host sent, while its container runs.
        let mut draining = v.clone();
        draining.tasks[0].serving = false;
        let gone = port_rules(
            &draining,
            &NodeId::new("n1"),
            Some([198, 18, 0, 1].into()),
            &BTreeSet::new(),
        )
        .0;
        assert!(
            gone.contains("ip saddr { 198.18.0.2 } fib daddr type local tcp dport 8080 accept"),
            "{gone}"
        );
        let (pre, _) = port_rules(
            &draining,
            &NodeId::new("n1"),
            Some([198, 18, 0, 1].into()),
            &all,
        );
        assert!(pre.contains("ip saddr { 198.18.0.2 } fib daddr type local tcp dport 8080 dnat ip to 10.0.0.5:80"), "{pre}");
        assert!(
            pre.contains("meta mark set 0x53570001 dnat ip to 198.18.0.2:8080"),
            "{pre}"
        );
        // traffic=local: only local tasks, nothing where there is none.
        let v = view(vec![PortConfig {
            traffic: TrafficPolicy::Local,
            ..p.clone()
        }]);
        let (pre, _) = port_rules(&v, &NodeId::new("n1"), None, &all);
        assert_eq!(
            pre,
            "    fib daddr type local tcp dport 8080 dnat ip to 10.0.0.5:80\n"
        );
        assert_eq!(port_rules(&v, &NodeId::new("n3"), None, &all).0, "");
        // Host mode: the local task only.
        let v = view(vec![PortConfig {
            mode: PublishMode::Host,
            ..p
        }]);
        assert_eq!(port_rules(&v, &NodeId::new("n3"), None, &all).0, "");
        assert!(port_rules(&v, &NodeId::new("n2"), None, &all)
            .0
            .contains("dnat ip to 10.0.0.6:80"));
    }
}
