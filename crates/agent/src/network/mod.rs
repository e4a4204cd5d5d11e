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
    /// the view current when its turn comes, loaded (an `nft` process in its namespace)
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
        let (pid, want) = {
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
            if want == c.loaded {
                return Ok(());
            }
            (c.pid, want)
        };
        let text = if want.is_empty() {
            format!(
                "table ip {t}\ndelete table ip {t}\n",
                t = lb::CONTAINER_TABLE
            )
        } else {
            want.clone()
        };
        let res = sys::nft_in(pid, &text);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(()) => {
                if let Some(c) = st.containers.get_mut(id).filter(|c| c.pid == pid) {
                    c.loaded = want;
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

    /// Plumbs the task's networks into the created (not yet started) container whose init
    /// has host pid `pid`. Idempotent per network; a task without networks costs nothing.
    pub fn attach(&self, task: &Task, pid: i32) -> Result<(), NetError> {
        self.attach_networks(task.id.as_str(), &task.networks, pid)
    }

    /// [`DataPlane::attach`] of container `id` (a task's, or an image build's RUN container)
    /// to `networks`.
    pub fn attach_networks(
        &self,
        id: &str,
        networks: &[NetworkAttachment],
        pid: i32,
    ) -> Result<(), NetError> {
        if networks.is_empty() {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let locked = t0.elapsed();
        // A network this process already set up is not configured (nor its links listed)
        // again for every container: two `ip` runs less per task. If its bridge went away
        // behind our back, the plumbing below fails and forgets it, so the retry sets it up.
        if networks.iter().any(|a| !st.nets.contains_key(&a.vni)) {
            let links = sys::links()?;
            for att in networks {
                let known =
                    st.nets.contains_key(&att.vni) && sys::has(&links, &self.bridge_name(att.vni));
                if !known {
                    self.ensure_network(&mut st, &links, att)?;
                }
            }
        }
        self.load_rules(&mut st)?;
        let prepared = t0.elapsed();
        // The host half over netlink, under the lock (it touches the shared bridges).
        let mut leftovers = String::new();
        for i in 0..networks.len() {
            writeln!(leftovers, "link del {}", self.veth_name(id, i)).ok();
        }
        let plumbed = match self.plumb_host(id, networks, pid) {
            // A retried prepare left the pair of its old container: it goes, then again.
            Err(e) if e.exists() => {
                sys::ip_batch_force(&leftovers).and_then(|()| self.plumb_host(id, networks, pid))
            }
            r => r,
        };
        if let Err(e) = plumbed {
            // Perhaps a bridge went away behind our back: the retry sets the networks up.
            for att in networks {
                st.nets.remove(&att.vni);
            }
            return Err(e);
        }
        let vnis: BTreeSet<u32> = networks.iter().map(|a| a.vni).collect();
        st.containers.insert(
            id.to_string(),
            Container {
                pid,
                vnis: Some(vnis),
                loaded: String::new(),
                loading: Arc::default(),
            },
        );
        self.load_rules(&mut st)?;
        // Inside the container's own namespace: nothing another container's setup touches,
        // so other tasks' setups need not wait for it.
        drop(st);
        let host = t0.elapsed();
        Self::plumb_inside(networks, pid)?;
        let inside = t0.elapsed();
        // Its service-address rules, from the newest view (not under the state lock).
        self.sync_container(id)?;
        tracing::debug!(
            container = id,
            ?locked,
            ?prepared,
            ?host,
            ?inside,
            total = ?t0.elapsed(),
            "network plumbing phases"
        );
        Ok(())
    }

    /// The host half of a container's plumbing: per network a veth pair whose peer `ethN`
    /// (with the task's MAC) is created in the namespace of `pid`, the host end on the
    /// network's bridge, up, with the alias the default bridge's addresses are read back
    /// from after a restart.
    fn plumb_host(
        &self,
        id: &str,
        networks: &[NetworkAttachment],
        pid: i32,
    ) -> Result<(), NetError> {
        let nl_err = |op: String| move |source| NetError::Netlink { op, source };
        let mut nl = netlink::Netlink::open().map_err(nl_err("open a netlink socket".into()))?;
        for (i, att) in networks.iter().enumerate() {
            let (veth, bridge) = (self.veth_name(id, i), self.bridge_name(att.vni));
            let mtu = Self::mtu(att);
            nl.add_veth(&veth, &format!("eth{i}"), mtu, Some(att.mac()), pid)
                .map_err(nl_err(format!(
                    "add veth {veth} into the namespace of {pid}"
                )))?;
            let master = nl
                .index(&bridge)
                .map_err(nl_err(format!("find bridge {bridge}")))?;
            let alias = bridge::veth_alias(att.address.addr, id);
            let change = netlink::LinkChange {
                master: Some(master),
                alias: Some(&alias),
                up: true,
                ..Default::default()
            };
            nl.set_link(&veth, &change)
                .map_err(nl_err(format!("put {veth} on {bridge}")))?;
        }
        Ok(())
    }

    /// The half inside the container's namespace: each `ethN`'s address, up, and the default
    /// route through the first network that has a way out.
    fn plumb_inside(networks: &[NetworkAttachment], pid: i32) -> Result<(), NetError> {
        let nl_err = |op: String| move |source| NetError::Netlink { op, source };
        let mut nl = netlink::Netlink::open_in(pid)
            .map_err(nl_err(format!("enter the network namespace of {pid}")))?;
        let mut routed = false;
        for (i, att) in networks.iter().enumerate() {
            let eth = format!("eth{i}");
            let idx = nl.index(&eth).map_err(nl_err(format!("find {eth}")))?;
            nl.add_addr(idx, att.address.addr, att.address.prefix)
                .map_err(nl_err(format!("add {} to {eth}", att.address)))?;
            let up = netlink::LinkChange {
                up: true,
                ..Default::default()
            };
            nl.set_link(&eth, &up)
                .map_err(nl_err(format!("set {eth} up")))?;
            if !att.internal && !routed {
                nl.add_default_route(att.gateway, idx)
                    .map_err(nl_err(format!("route default via {}", att.gateway)))?;
                routed = true;
            }
        }
        Ok(())
    }

    /// Creates the network's bridge (with the gateway address) and, for an overlay, its VXLAN
    /// device, unless they exist.
    fn ensure_network(
        &self,
        st: &mut State,
        links: &[sys::Link],
        att: &NetworkAttachment,
    ) -> Result<(), NetError> {
        let br = self.bridge_name(att.vni);
        let mtu = Self::mtu(att);
        let mut cmds = String::new();
        if !sys::has(links, &br) {
            writeln!(cmds, "link add {br} mtu {mtu} type bridge").ok();
        }
        let gw = swarm_types::network::Ipv4Net::new(att.gateway, att.address.prefix);
        // A fixed MAC (from the gateway address, as a task's is from its own): a bridge
        // without one takes the lowest of its ports' MACs, so a container joining would change
        // the gateway's MAC under the others' ARP caches (their traffic to the gateway — DNS,
        // the way out — is lost until those entries expire, about 30 s).
        let o = att.gateway.octets();
        writeln!(
            cmds,
            "link set {br} address {}",
            mac_string([0x02, 0x42, o[0], o[1], o[2], o[3]])
        )
        .ok();
        writeln!(cmds, "addr replace {gw} dev {br}").ok();
        // What the ruleset needs to know about the network after an agent restart.
        writeln!(
            cmds,
            "link set {br} alias {}",
            sys::bridge_alias(&self.tag, att.address.trunc(), att.internal, att.gateway)
        )
        .ok();
        writeln!(cmds, "link set {br} up").ok();
        if att.driver == NetworkDriver::Overlay {
            let vx = self.vxlan_name(att.vni);
            if !sys::has(links, &vx) {
                let local = self.local.ok_or_else(|| {
                    NetError::Config("overlay networks need the node's advertise address (--advertise-addr IP:PORT)".into())
                })?;
                writeln!(
                    cmds,
                    "link add {vx} mtu {mtu} type vxlan id {} local {local} dstport {VXLAN_PORT} nolearning proxy",
                    att.vni
                )
                .ok();
            }
            writeln!(cmds, "link set {vx} master {br} up").ok();
        }
        sys::ip_batch(None, &cmds)?;
        sys::enable_forwarding()?;
        let fresh = st
            .nets
            .insert(
                att.vni,
                LocalNet {
                    subnet: att.address.trunc(),
                    internal: att.internal,
                    gateway: Some(att.gateway),
                },
            )
            .is_none();
        if fresh {
            self.changed.notify_one();
        }
        if fresh && att.driver == NetworkDriver::Overlay {
            // Peers that arrived before this host had the network.
            st.installed.remove(&att.vni);
            self.sync_vni(st, true, att.vni)?;
        }
        Ok(())
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
