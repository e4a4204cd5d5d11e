//! IP address management, pure: subnets for new networks from the cluster's address pools,
//! VXLAN ids, and one address per task per network. Nothing is remembered between calls: the
//! allocator is built from the store each time (what is held is what the store's tasks hold),
//! so a new leader allocates exactly as the old one would have, and an address returns to its
//! network when the task object holding it is deleted.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use swarm_types::network::{Ipv4Net, NetworkAttachment, NetworkSpec};
use swarm_types::objects::Object;
use swarm_types::store::{Op, StoreState};
use swarm_types::task::TaskState;
use swarm_types::Network;
use swarm_types::{NetworkId, Task};

/// Docker's default pool and subnet size.
pub const DEFAULT_POOL: Ipv4Net = Ipv4Net {
    addr: Ipv4Addr::new(10, 0, 0, 0),
    prefix: 8,
};
pub const DEFAULT_SUBNET_SIZE: u8 = 24;
/// VXLAN ids start here (Docker's first overlay id).
pub const FIRST_VNI: u32 = 4097;
/// The largest 24-bit VXLAN id.
pub const MAX_VNI: u32 = (1 << 24) - 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("subnet {subnet} overlaps subnet {other} of network {name}; choose another --subnet")]
    Overlap {
        subnet: Ipv4Net,
        other: Ipv4Net,
        name: String,
    },
    #[error("no free /{size} subnet is left in the address pools {pools}; remove unused networks, give --subnet, or start the cluster with a larger --default-addr-pool")]
    PoolsExhausted { size: u8, pools: String },
    #[error("no VXLAN id is left for a new network")]
    NoVni,
    #[error("the cluster's subnet size /{size} is larger than its pool {pool}")]
    SubnetSize { size: u8, pool: Ipv4Net },
}

/// The cluster's pools and subnet size, with Docker's defaults for what is unset.
pub fn pools(state: &StoreState) -> (Vec<Ipv4Net>, u8) {
    let spec = state.cluster().map(|c| &c.spec);
    let pools = spec
        .map(|s| s.default_addr_pool.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| vec![DEFAULT_POOL]);
    let size = spec
        .map(|s| s.subnet_size)
        .filter(|s| *s != 0)
        .unwrap_or(DEFAULT_SUBNET_SIZE);
    (pools, size)
}

/// The subnet, gateway, address range and VXLAN id of a new network with `spec` (already
/// validated). The store refuses the write if a concurrent create took the same subnet.
pub fn new_network(
    state: &StoreState,
    id: NetworkId,
    spec: NetworkSpec,
) -> Result<Network, IpamError> {
    let existing: Vec<&Network> = state.networks.values().collect();
    let subnet = match spec.ipam.subnet {
        Some(s) => {
            if let Some(o) = existing.iter().find(|o| o.subnet.overlaps(&s)) {
                return Err(IpamError::Overlap {
                    subnet: s,
                    other: o.subnet,
                    name: o.spec.name.clone(),
                });
            }
            s
        }
        None => {
            let (pools, size) = pools(state);
            let taken: Vec<Ipv4Net> = existing.iter().map(|n| n.subnet).collect();
            free_subnet(&pools, size, &taken)?
        }
    };
    let gateway = spec
        .ipam
        .gateway
        .unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.network()) + 1));
    let ip_range = spec.ipam.ip_range.unwrap_or(subnet);
    let used: BTreeSet<u32> = existing.iter().map(|n| n.vni).collect();
    let vni = (FIRST_VNI..=MAX_VNI)
        .find(|v| !used.contains(v))
        .ok_or(IpamError::NoVni)?;
    Ok(Network {
        id,
        meta: Default::default(),
        spec,
        subnet,
        gateway,
        ip_range,
        vni,
    })
}

/// The first subnet of prefix length `size` in `pools` that overlaps none of `taken`.
pub fn free_subnet(pools: &[Ipv4Net], size: u8, taken: &[Ipv4Net]) -> Result<Ipv4Net, IpamError> {
    for pool in pools {
        if size < pool.prefix {
            return Err(IpamError::SubnetSize { size, pool: *pool });
        }
        let step = 1u64 << (32 - u32::from(size));
        let end = u64::from(u32::from(pool.network())) + pool.size();
        let mut at = u64::from(u32::from(pool.network()));
        while at + step <= end {
            let cand = Ipv4Net::new(Ipv4Addr::from(at as u32), size);
            match taken.iter().find(|t| t.overlaps(&cand)) {
                None => return Ok(cand),
                // Skip past the taken subnet, aligned to our size.
                Some(t) => {
                    let past = u64::from(u32::from(t.broadcast())) + 1;
                    at = past.div_ceil(step) * step;
                }
            }
        }
    }
    Err(IpamError::PoolsExhausted {
        size,
        pools: pools
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Hands out task addresses during one pass of the control loop: what the store's tasks hold
/// is taken, and so is what this pass already handed out.
pub struct Addresses<'a> {
    state: &'a StoreState,
    /// Per network: handed out in this pass, and where the next search starts.
    pass: HashMap<NetworkId, (BTreeSet<Ipv4Addr>, u32)>,
}

impl<'a> Addresses<'a> {
    pub fn new(state: &'a StoreState) -> Self {
        Addresses {
            state,
            pass: HashMap::new(),
        }
    }

    /// A free address on `net`, or `None` when its range is full. Next-fit: the search starts
    /// after the highest address held, so a released address is reused only after the range
    /// wrapped (peers' ARP caches forget it in the meantime).
    pub fn allocate(&mut self, net: &Network) -> Option<Ipv4Addr> {
        let state = self.state;
        let range = net.ip_range;
        let first = u32::from(range.network());
        let last = u32::from(range.broadcast());
        let (given, cursor) = self.pass.entry(net.id.clone()).or_insert_with(|| {
            let start = state
                .addresses_on(&net.id)
                .map(|(a, _)| u32::from(a))
                .filter(|a| (first..=last).contains(a))
                .max()
                .map_or(first, |a| a.wrapping_add(1));
            (BTreeSet::new(), start)
        });
        let span = u64::from(last - first) + 1;
        for i in 0..span {
            let a = first + ((u64::from(cursor.wrapping_sub(first)) + i) % span) as u32;
            let addr = Ipv4Addr::from(a);
            if !free(state, net, given, addr) {
                continue;
            }
            given.insert(addr);
            *cursor = a.wrapping_add(1);
            return Some(addr);
        }
        None
    }
}

/// Neither the network's own (network, broadcast, gateway) nor held by a task, a VIP or
/// this pass.
fn free(state: &StoreState, net: &Network, given: &BTreeSet<Ipv4Addr>, addr: Ipv4Addr) -> bool {
    let reserved =
        addr == net.subnet.network() || addr == net.subnet.broadcast() || addr == net.gateway;
    !(reserved
        || given.contains(&addr)
        || state.address_holder(&net.id, addr).is_some()
        || state.vip_holder(&net.id, addr).is_some())
}

impl Addresses<'_> {
    /// A free address for a service's virtual IP, searched from the top of the range down:
    /// tasks are handed addresses from the bottom up, so a VIP chosen by the control API and
    /// a task address chosen by the control loop at the same moment rarely meet (and when
    /// they do, the store refuses the second write and the caller chooses again).
    pub fn allocate_vip(&mut self, net: &Network) -> Option<Ipv4Addr> {
        let state = self.state;
        let range = net.ip_range;
        let (first, last) = (u32::from(range.network()), u32::from(range.broadcast()));
        let given = &mut self
            .pass
            .entry(net.id.clone())
            .or_insert_with(|| (BTreeSet::new(), first))
            .0;
        for a in (first..=last).rev() {
            let addr = Ipv4Addr::from(a);
            if !free(state, net, given, addr) {
                continue;
            }
            given.insert(addr);
            return Some(addr);
        }
        None
    }
}

/// Gives every task created by `ops` an address on each network of its spec. A task whose
/// network is gone or full is created `rejected` with the reason (the restart policy then
/// tries again later), never without its address.
pub fn attach_new_tasks(state: &StoreState, ops: &mut [Op]) {
    let wants = |op: &Op| matches!(op, Op::Create(Object::Task(t)) if !t.spec.networks.is_empty() && t.networks.is_empty());
    if !ops.iter().any(wants) {
        return;
    }
    let mut alloc = Addresses::new(state);
    for op in ops.iter_mut() {
        if !wants(op) {
            continue;
        }
        let Op::Create(Object::Task(t)) = op else {
            continue;
        };
        if let Err(reason) = attach(state, &mut alloc, t) {
            t.networks.clear();
            t.node_id = None;
            t.status.state = TaskState::Rejected;
            t.status.message = reason.clone();
            t.status.err = reason;
        }
    }
}

fn attach(state: &StoreState, alloc: &mut Addresses<'_>, t: &mut Task) -> Result<(), String> {
    for c in &t.spec.networks {
        let net = state
            .networks
            .get(c.target.as_str())
            .or_else(|| state.network_by_name(&c.target))
            .ok_or_else(|| format!("network {} not found", c.target))?;
        let addr = alloc.allocate(net).ok_or_else(|| {
            format!(
                "no free address on network {} ({}); use a larger subnet or fewer tasks",
                net.spec.name, net.ip_range
            )
        })?;
        t.networks.push(NetworkAttachment {
            network_id: net.id.clone(),
            network_name: net.spec.name.clone(),
            driver: net.spec.driver,
            address: Ipv4Net::new(addr, net.subnet.prefix),
            gateway: net.gateway,
            vni: net.vni,
            internal: net.spec.internal,
            aliases: c.aliases.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
