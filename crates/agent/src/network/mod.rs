//! The node's data plane: each task container gets a veth pair from its own network namespace
//! into a Linux bridge per network on this host (`sb<tag>-<vni>`), with its address, MAC
//! (derived from the address), gateway and default route configured inside before the
//! container starts. An overlay network adds a kernel VXLAN device (`sv<tag>-<vni>`, no
//! learning, ARP proxy) to its bridge, whose forwarding and neighbour entries for the tasks on
//! other hosts come from the managers (`peers.rs`, derived from the store; no gossip). One
//! nftables table per node (`inet swarm-<tag>`) isolates the networks from each other, keeps
//! `--internal` networks from leaving and masquerades the others' outbound traffic.
//!
//! `<tag>` is the first 5 characters of the node id: every link, table and iptables rule this
//! node installs carries it, so several `swarmd` share one machine and each finds and removes
//! only its own. What is installed is read back from the kernel (`/sys/class/net`), never only
//! remembered: after an agent restart the running containers keep their interfaces (their
//! namespaces hold them) and the bridges are adopted as they are.
//!
//! Changes go through `ip -batch` and `nft -f` (see ARCHITECTURE.md, "Decisions": one process
//! per namespace per container, measured in BENCHMARKS.md).

mod attach;
pub mod bridge;
pub mod discovery;
pub mod dns;
pub mod lb;
mod netlink;
pub mod peers;
mod sys;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use swarm_types::discovery::View;
use swarm_types::network::{mac_string, NetworkAttachment, NetworkDriver};
use swarm_types::{NodeId, Task};
pub use sys::NetError;

/// The Linux default; an overlay's interfaces lose the VXLAN overhead (50 bytes) from it.
pub const MTU: u32 = 1500;
pub const VXLAN_OVERHEAD: u32 = 50;
/// IANA's VXLAN port (Docker's `--data-path-port` default).
pub const VXLAN_PORT: u16 = 4789;

/// A remote task on an overlay network: where its MAC lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub vni: u32,
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
    /// The address of the host running it (VXLAN destination).
    pub host: Ipv4Addr,
}

/// What one network looks like on this host (kept for the nftables ruleset).
#[derive(Clone, Debug, PartialEq, Eq)]
struct LocalNet {
    subnet: swarm_types::network::Ipv4Net,
    internal: bool,
    /// Where the network's DNS server listens (unknown for a bridge adopted from an older
    /// agent until a task sets the network up again).
    gateway: Option<Ipv4Addr>,
}

/// A task container this agent plumbed or re-adopted.
struct Container {
    pid: i32,
    /// Its networks' VXLAN ids (from the view, for a re-adopted one).
    vnis: Option<BTreeSet<u32>>,
    /// The service-address rules loaded in its namespace.
    loaded: String,
    /// Its namespace may hold a table this agent did not load (a container adopted at
    /// start): the next load replaces it even when `loaded` is empty.
    foreign_table: bool,
    /// Held while its rules are loaded (outside the state lock): loads into one container
    /// happen one at a time, each from the view current when it starts, so the last one
    /// loads the newest view.
    loading: Arc<Mutex<()>>,
}

pub struct DataPlane {
    node: NodeId,
    tag: String,
    /// This host's address for VXLAN (the node's advertise address).
    local: Option<Ipv4Addr>,
    state: Mutex<State>,
    changed: tokio::sync::Notify,
    /// Whether a task without networks gets the node's default bridge (`bridge.rs`).
    default_bridge: bool,
}

#[derive(Default)]
struct State {
    /// By VNI: the networks with a bridge on this host.
    nets: BTreeMap<u32, LocalNet>,
    /// The latest peer set from the managers, by VNI.
    peers: BTreeMap<u32, BTreeSet<Peer>>,
    /// What was installed on each VXLAN device (to remove what went away).
    installed: BTreeMap<u32, BTreeSet<Peer>>,
    /// The ruleset last loaded.
    ruleset: String,
    /// The managers' latest discovery view.
    view: Arc<View>,
    /// By task id.
    containers: BTreeMap<String, Container>,
    /// The default bridge, once set up or found on this host.
    bridge: Option<bridge::Local>,
}

impl DataPlane {
    /// `node_id`'s data plane; `local` is the address other hosts reach this one on.
    pub fn new(node_id: &str, local: Option<Ipv4Addr>) -> DataPlane {
        DataPlane {
            node: NodeId::new(node_id),
            tag: node_id.chars().take(5).collect(),
            local,
            state: Mutex::new(State::default()),
            changed: tokio::sync::Notify::new(),
            default_bridge: false,
        }
    }

    /// Tasks without networks get an address on the node's default bridge.
    pub fn with_default_bridge(mut self) -> DataPlane {
        self.default_bridge = true;
        self
    }

    /// The attachment to the node's default bridge of a task without networks (`None` when
    /// this data plane gives none): an address held for `task_id` until [`DataPlane::forget`].
    /// Sets the bridge up, or finds it after a restart, on first use.
    pub fn default_attachment(&self, task_id: &str) -> Result<Option<NetworkAttachment>, NetError> {
        if !self.default_bridge {
            return Ok(None);
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.bridge.is_none() || !st.nets.contains_key(&bridge::VNI) {
            let links = sys::links()?;
            let local = match self.found_default_bridge(&links) {
                Some(l) => l,
                None => self.create_default_bridge(&mut st)?,
            };
            st.nets.entry(bridge::VNI).or_insert(LocalNet {
                subnet: local.subnet,
                internal: false,
                gateway: Some(local.gateway),
            });
            st.bridge = Some(local);
        }
        let Some(local) = st.bridge.as_mut() else {
            return Ok(None);
        };
        let addr = local.address_for(task_id).ok_or_else(|| {
            NetError::Config(format!(
                "the node's default bridge ({}) has no free address: remove stopped tasks or give services a cluster network (--network)",
                local.subnet
            ))
        })?;
        Ok(Some(local.attachment(addr)))
    }

    /// The default bridge as the kernel holds it (after an agent restart): its subnet from
    /// the bridge's alias, the addresses in use from its ports' aliases.
    fn found_default_bridge(&self, links: &[sys::Link]) -> Option<bridge::Local> {
        let br = self.bridge_name(bridge::VNI);
        let link = links.iter().find(|l| l.name == br)?;
        let (subnet, _, _) = sys::bridge_meta(&self.tag, link)?;
        let mut local = bridge::Local::new(subnet);
        for l in links
            .iter()
            .filter(|l| l.master.as_deref() == Some(br.as_str()))
        {
            if let Some((a, task)) = l.alias.as_deref().and_then(bridge::parse_veth_alias) {
                local.used.insert(a, task);
            }
        }
        Some(local)
    }

    /// Chooses a subnet no route of the host covers and creates the bridge, holding the
    /// machine's lock so another `swarmd` here cannot choose the same one meanwhile.
    fn create_default_bridge(&self, st: &mut State) -> Result<bridge::Local, NetError> {
        let io = |source| NetError::Io {
            path: bridge::LOCK_FILE.into(),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(bridge::LOCK_FILE)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let subnet = bridge::choose_subnet(&sys::routes()?).ok_or_else(|| {
            NetError::Config(
                "no subnet is free for the node's default bridge: routes of this host cover all of 172.17.0.0/16-172.31.0.0/16 and 192.168.0.0/16".into(),
            )
        })?;
        let local = bridge::Local::new(subnet);
        let links = sys::links()?;
        self.ensure_network(st, &links, &local.attachment(local.gateway))?;
        Ok(local)
    }

    /// Woken when a network appears on this host or goes (the DNS server follows).
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// Each local network's gateway (where its DNS server listens) → its VXLAN id.
    pub fn gateways(&self) -> BTreeMap<Ipv4Addr, u32> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.nets
            .iter()
            .filter_map(|(vni, n)| Some((n.gateway?, *vni)))
            .collect()
    }

    /// Installs a new discovery view: the published-port rules of this host and the
    /// virtual-IP rules of every container whose set changed.
    /// The containers' rules load outside the state lock (an `nft` process each), so the
    /// network setup of starting containers does not wait for them.
    pub fn set_view(&self, view: Arc<View>) -> Result<(), NetError> {
        let (mut first_err, ids) = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.view = view;
            let err = self.load_rules(&mut st).err();
            (err, st.containers.keys().cloned().collect::<Vec<_>>())
        };
        for id in ids {
            if let Err(e) = self.sync_container(&id) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Records a running container found at start (its namespace keeps its interfaces and
    /// rules; the next view refreshes the rules).
    pub fn adopt(&self, task_id: &str, pid: i32) {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = !st.containers.contains_key(task_id);
            st.containers
                .entry(task_id.to_string())
                .or_insert(Container {
                    pid,
                    vnis: None,
                    loaded: String::new(),
                    foreign_table: true,
                    loading: Arc::default(),
                });
            // Connections other hosts balanced here may go to it again (the view may have
            // arrived before the container was found).
            if fresh {
                if let Err(e) = self.load_rules(&mut st) {
                    tracing::warn!(error = %e, "published-port rules not updated");
                }
            }
        }
        if let Err(e) = self.sync_container(task_id) {
            tracing::warn!(task = task_id, error = %e, "service address rules not loaded");
        }
    }

    /// Forgets a container that exited (or was removed): published ports stop sending
    /// connections to it at once, without waiting for the managers' view.
    pub fn forget(&self, task_id: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = st.bridge.as_mut() {
            b.release(task_id);
        }
        if st.containers.remove(task_id).is_some() {
            if let Err(e) = self.load_rules(&mut st) {
                tracing::warn!(error = %e, "published-port rules not updated");
            }
        }
    }

    /// Loads the container's virtual-IP rules if they differ from what it has: computed from
    /// the view current when its turn comes, loaded (`sys::nft_in`, in its namespace)
    /// without the state lock.
    fn sync_container(&self, id: &str) -> Result<(), NetError> {
        let loading = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match st.containers.get(id) {
                Some(c) => c.loading.clone(),
                None => return Ok(()),
            }
        };
        let _turn = loading.lock().unwrap_or_else(|e| e.into_inner());
        let (pid, want, replace) = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let Some(c) = st.containers.get(id) else {
                return Ok(());
            };
            let vnis = match &c.vnis {
                Some(v) => v.clone(),
                None => match st.view.tasks.iter().find(|t| t.id.as_str() == id) {
                    Some(t) => t.addrs.iter().map(|a| a.vni).collect(),
                    None => return Ok(()),
                },
            };
            let want = lb::container_rules(&st.view, &vnis);
            if want == c.loaded && !c.foreign_table {
                return Ok(());
            }
            (c.pid, want, c.foreign_table || !c.loaded.is_empty())
        };
        // Replacing a table costs the kernel an RCU grace period (10–16 ms here); a fresh
        // namespace has none to replace, so its first load is a plain create (< 1 ms).
        let t = lb::CONTAINER_TABLE;
        let text = match (replace, want.is_empty()) {
            (false, _) => want.clone(),
            (true, true) => format!("table ip {t}\ndelete table ip {t}\n"),
            (true, false) => format!("table ip {t}\ndelete table ip {t}\n{want}"),
        };
        let res = if text.is_empty() {
            Ok(())
        } else if replace {
            sys::nft_in(pid, &text)
        } else {
            sys::nft_create_in(pid, &text)
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(()) => {
                if let Some(c) = st.containers.get_mut(id).filter(|c| c.pid == pid) {
                    c.loaded = want;
                    c.foreign_table = false;
                }
                Ok(())
            }
            // The container is gone (its pid with it): nothing to keep in step.
            Err(_) if !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists() => {
                if st.containers.get(id).is_some_and(|c| c.pid == pid) {
                    st.containers.remove(id);
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn bridge_name(&self, vni: u32) -> String {
        format!("sb{}-{vni:x}", self.tag)
    }
    pub fn vxlan_name(&self, vni: u32) -> String {
        format!("sv{}-{vni:x}", self.tag)
    }
    /// Host side of a task's veth on its `i`th network.
    pub fn veth_name(&self, task: &str, i: usize) -> String {
        format!("se{}{}{i:x}", self.tag, &task[..task.len().min(6)])
    }

    fn mtu(att: &NetworkAttachment) -> u32 {
        match att.driver {
            NetworkDriver::Overlay => MTU - VXLAN_OVERHEAD,
            NetworkDriver::Bridge => MTU,
        }
    }

    /// Replaces the set of remote tasks (every overlay network) and updates the VXLAN devices
    /// present on this host.
    pub fn set_peers(&self, peers: Vec<Peer>) -> Result<(), NetError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut by: BTreeMap<u32, BTreeSet<Peer>> = BTreeMap::new();
        for p in peers {
            by.entry(p.vni).or_default().insert(p);
        }
        st.peers = by;
        let vnis: BTreeSet<u32> = st
            .peers
            .keys()
            .chain(st.installed.keys())
            .copied()
            .collect();
        let links = sys::links()?;
        let mut first_err = None;
        for vni in vnis {
            let present = sys::has(&links, &self.vxlan_name(vni));
            if let Err(e) = self.sync_vni(&mut st, present, vni) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// FDB and neighbour entries of one VXLAN device = the peers of its network.
    fn sync_vni(&self, st: &mut State, present: bool, vni: u32) -> Result<(), NetError> {
        let vx = self.vxlan_name(vni);
        if !present {
            st.installed.remove(&vni);
            return Ok(());
        }
        let want = st.peers.get(&vni).cloned().unwrap_or_default();
        let have = match st.installed.get(&vni) {
            Some(h) => h.clone(),
            // Not installed by this process: whatever the kernel holds (an agent restart).
            None => sys::vxlan_entries(&vx, vni)?,
        };
        let mut ip = String::new();
        let mut bridge = String::new();
        for p in have.difference(&want) {
            let mac = mac_string(p.mac);
            writeln!(bridge, "fdb del {mac} dev {vx} self").ok();
            writeln!(ip, "neigh del {} dev {vx}", p.addr).ok();
        }
        for p in want.difference(&have) {
            let mac = mac_string(p.mac);
            writeln!(
                bridge,
                "fdb replace {mac} dev {vx} dst {} self permanent",
                p.host
            )
            .ok();
            writeln!(
                ip,
                "neigh replace {} lladdr {mac} dev {vx} nud permanent",
                p.addr
            )
            .ok();
        }
        sys::bridge_batch(&bridge)?;
        sys::ip_batch_force(&ip)?;
        st.installed.insert(vni, want);
        Ok(())
    }

    /// Removes the bridges (and VXLAN devices) no container uses any more; with none left,
    /// also the node's nftables table and iptables rules. Called after a container is removed
    /// and when the agent starts.
    pub fn collect(&self) -> Result<(), NetError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = format!("sb{}-", self.tag);
        let links = sys::links()?;
        let mut cmds = String::new();
        for br in links.iter().filter(|l| l.name.starts_with(&prefix)) {
            let vx = br.name.replacen("sb", "sv", 1);
            let used = links
                .iter()
                .any(|l| l.master.as_deref() == Some(br.name.as_str()) && l.name != vx);
            let vni = br
                .name
                .strip_prefix(&prefix)
                .and_then(|v| u32::from_str_radix(v, 16).ok());
            if !used {
                if sys::has(&links, &vx) {
                    writeln!(cmds, "link del {vx}").ok();
                }
                writeln!(cmds, "link del {}", br.name).ok();
                if let Some(vni) = vni {
                    if vni == bridge::VNI {
                        st.bridge = None;
                    }
                    st.nets.remove(&vni);
                    st.installed.remove(&vni);
                    self.changed.notify_one();
                }
            } else if let Some(vni) = vni {
                // A bridge found at start: keep it in the ruleset.
                if let std::collections::btree_map::Entry::Vacant(e) = st.nets.entry(vni) {
                    if let Some((subnet, internal, gateway)) = sys::bridge_meta(&self.tag, br) {
                        e.insert(LocalNet {
                            subnet,
                            internal,
                            gateway,
                        });
                        self.changed.notify_one();
                    }
                }
            }
        }
        // Stray VXLAN devices (a bridge removed by hand).
        let vprefix = format!("sv{}-", self.tag);
        for vx in links.iter().filter(|l| l.name.starts_with(&vprefix)) {
            let br = vx.name.replacen("sv", "sb", 1);
            if !sys::has(&links, &br) {
                writeln!(cmds, "link del {}", vx.name).ok();
            }
        }
        sys::ip_batch_force(&cmds)?;
        self.load_rules(&mut st)
    }

    /// Loads the node's nftables table for the networks on this host (atomically replacing
    /// the previous one), or deletes it when there are none.
    fn load_rules(&self, st: &mut State) -> Result<(), NetError> {
        let table = format!("swarm-{}", self.tag);
        let live: BTreeSet<String> = st
            .containers
            .iter()
            .filter(|(_, c)| std::path::Path::new(&format!("/proc/{}", c.pid)).exists())
            .map(|(id, _)| id.clone())
            .collect();
        let ports = lb::port_rules(&st.view, &self.node, self.local, &live);
        let rules = if st.nets.is_empty() && ports.0.is_empty() && ports.1.is_empty() {
            String::new()
        } else {
            ruleset(&self.tag, &st.nets, &ports, |vni| self.bridge_name(vni))
        };
        if rules == st.ruleset {
            return Ok(());
        }
        if rules.is_empty() {
            sys::nft(&format!("table inet {table}\ndelete table inet {table}\n"))?;
            sys::docker_forward_rules(&self.tag, false);
        } else {
            if !ports.0.is_empty() {
                // Ingress connections go on to other hosts.
                sys::enable_forwarding()?;
            }
            sys::nft(&rules)?;
            sys::docker_forward_rules(&self.tag, true);
        }
        st.ruleset = rules;
        Ok(())
    }
}

/// The node's nftables table: a network's traffic stays on its bridge unless it is routed
/// out (masqueraded) through a non-bridge interface; internal networks never leave; nothing
/// from outside opens a connection into a task except through a published port (`ports`:
/// the prerouting and output rules of `lb::port_rules`).
fn ruleset(
    tag: &str,
    nets: &BTreeMap<u32, LocalNet>,
    ports: &(String, String),
    bridge: impl Fn(u32) -> String,
) -> String {
    let table = format!("swarm-{tag}");
    let ours = format!("sb{tag}-*");
    let mut fwd = String::new();
    let mut nat = String::new();
    for (vni, n) in nets {
        let br = bridge(*vni);
        // No traffic between two of this node's networks.
        writeln!(
            fwd,
            "    iifname \"{br}\" oifname \"{ours}\" oifname != \"{br}\" drop"
        )
        .ok();
        if n.internal {
            writeln!(fwd, "    iifname \"{br}\" oifname != \"{br}\" drop").ok();
            writeln!(fwd, "    oifname \"{br}\" iifname != \"{br}\" drop").ok();
        } else {
            writeln!(
                nat,
                "    ip saddr {} oifname != \"{br}\" oifname != \"{ours}\" masquerade",
                n.subnet
            )
            .ok();
        }
    }
    let (pre, out) = ports;
    let mark = lb::MESH_MARK;
    format!(
        "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n  chain forward {{\n    type filter hook forward priority filter - 1; policy accept;\n{fwd}    iifname != \"{ours}\" oifname \"{ours}\" ct state established,related accept\n    iifname != \"{ours}\" oifname \"{ours}\" ct status dnat accept\n    iifname != \"{ours}\" oifname \"{ours}\" drop\n  }}\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n{out}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    meta mark {mark:#x} oifname != \"{ours}\" masquerade\n{nat}  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests;
