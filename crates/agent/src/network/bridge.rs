//! The node's default bridge: what a task without networks is attached to (Docker's `bridge`
//! network on `docker0`), so its container has an address and reaches outside through NAT.
//! It is local to the node, not a cluster object: the agent chooses its subnet among Docker's
//! default pools (172.17.0.0/16 … 172.31.0.0/16, then 192.168.0.0/20 … 192.168.240.0/20),
//! skipping every subnet a route of the host already covers (Docker's own docker0 included),
//! and hands out its addresses itself. Both are read back from the kernel after a restart, like
//! the rest of the data plane: the bridge's alias holds the subnet, and the host side of each
//! task's veth holds the task's address in its alias.
//!
//! Several `swarmd` on one machine (the quickstart) each have their own default bridge: the
//! choice of a subnet and the creation of the bridge happen under one lock file for the
//! machine, so the second sees the first's route.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use swarm_types::network::{Ipv4Net, NetworkAttachment, NetworkDriver};
use swarm_types::NetworkId;

/// The key of the default bridge among the node's networks (cluster networks' VXLAN ids
/// start at 4096).
pub const VNI: u32 = 0;
/// Its name, as tasks and `docker network ls` call it.
pub const NAME: &str = "bridge";
/// Serialises the choice of a subnet between the `swarmd` of one machine.
pub const LOCK_FILE: &str = "/run/swarm-default-bridge.lock";

/// The default bridge of this node, once set up or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Addresses in use → the task holding each.
    pub used: BTreeMap<Ipv4Addr, String>,
}

impl Local {
    pub fn new(subnet: Ipv4Net) -> Local {
        Local {
            subnet,
            gateway: first_host(subnet),
            used: BTreeMap::new(),
        }
    }

    /// The address `task` holds, or the lowest free one (now held by `task`); `None` when
    /// the subnet is full.
    pub fn address_for(&mut self, task: &str) -> Option<Ipv4Addr> {
        if let Some((a, _)) = self.used.iter().find(|(_, t)| t.as_str() == task) {
            return Some(*a);
        }
        let first = u32::from(self.gateway) + 1;
        let last = u32::from(self.subnet.broadcast());
        let free = (first..last)
            .map(Ipv4Addr::from)
            .find(|a| !self.used.contains_key(a))?;
        self.used.insert(free, task.to_string());
        Some(free)
    }

    /// Lets `task`'s address go.
    pub fn release(&mut self, task: &str) {
        self.used.retain(|_, t| t != task);
    }

    /// The attachment of a task holding `addr`.
    pub fn attachment(&self, addr: Ipv4Addr) -> NetworkAttachment {
        NetworkAttachment {
            network_id: NetworkId::new(NAME),
            network_name: NAME.into(),
            driver: NetworkDriver::Bridge,
            address: Ipv4Net::new(addr, self.subnet.prefix),
            gateway: self.gateway,
            vni: VNI,
            internal: false,
            aliases: vec![],
        }
    }
}

fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Docker's default address pools for local bridges, in the order it uses them.
pub fn candidates() -> impl Iterator<Item = Ipv4Net> {
    let wide = (17..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let narrow = (0..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    wide.chain(narrow)
}

/// The first candidate no route of the host overlaps (`routes`: every destination of every
/// routing table; the default route is not one of them).
pub fn choose_subnet(routes: &[Ipv4Net]) -> Option<Ipv4Net> {
    candidates().find(|c| !routes.iter().any(|r| r.overlaps(c)))
}

/// What a task's host-side veth carries in its alias: the task's address and id.
pub fn veth_alias(addr: Ipv4Addr, task: &str) -> String {
    format!("swarm-addr:{addr}:{task}")
}

/// The address and task in a veth's alias, if it is one of ours.
pub fn parse_veth_alias(alias: &str) -> Option<(Ipv4Addr, String)> {
    let (addr, task) = alias.trim().strip_prefix("swarm-addr:")?.split_once(':')?;
    Some((addr.parse().ok()?, task.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_subnet_avoids_every_route_of_the_host() {
        assert_eq!(choose_subnet(&[]), Some(net("172.17.0.0/16")));
        // Docker's docker0 and a wide test range.
        let taken = [
            net("172.17.0.0/16"),
            net("198.18.0.0/15"),
            net("10.0.0.0/8"),
        ];
        assert_eq!(choose_subnet(&taken), Some(net("172.18.0.0/16")));
        // A host route inside a candidate rules the whole candidate out.
        let taken = [net("172.16.0.0/12"), net("192.168.0.5/32")];
        assert_eq!(choose_subnet(&taken), Some(net("192.168.16.0/20")));
        let everything = [net("0.0.0.0/1"), net("128.0.0.0/1")];
        assert_eq!(choose_subnet(&everything), None);
    }

    #[test]
    fn addresses_are_the_lowest_free_ones_and_held_per_task() {
        let mut l = Local::new(net("172.18.0.0/16"));
        assert_eq!(l.gateway, Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(l.address_for("a"), Some(Ipv4Addr::new(172, 18, 0, 2)));
        assert_eq!(l.address_for("b"), Some(Ipv4Addr::new(172, 18, 0, 3)));
        // A retried prepare of `a` keeps its address.
        assert_eq!(l.address_for("a"), Some(Ipv4Addr::new(172, 18, 0, 2)));
        l.release("a");
        assert_eq!(l.address_for("c"), Some(Ipv4Addr::new(172, 18, 0, 2)));
        let att = l.attachment(Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(att.address.to_string(), "172.18.0.2/16");
        assert_eq!((att.vni, att.network_name.as_str()), (VNI, NAME));
    }

    #[test]
    fn a_full_subnet_gives_no_address() {
        let mut l = Local::new(net("192.168.0.0/30"));
        // .1 is the gateway, .3 the broadcast address: one address for tasks.
        assert_eq!(l.address_for("a"), Some(Ipv4Addr::new(192, 168, 0, 2)));
        assert_eq!(l.address_for("b"), None);
    }

    #[test]
    fn veth_aliases_carry_the_address() {
        let a = Ipv4Addr::new(172, 18, 0, 9);
        assert_eq!(
            parse_veth_alias(&veth_alias(a, "t1")),
            Some((a, "t1".to_string()))
        );
        assert_eq!(parse_veth_alias("swarm-abcde:10.0.0.0/24:external"), None);
    }
}
