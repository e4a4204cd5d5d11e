//! Plumbing a container into its networks between create and start: the networks' bridges
//! (and VXLAN devices) made when missing, the host half of the veth pairs under the data
//! plane's lock, the inside half and the VIP rules outside it.

use super::*;

impl DataPlane {
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
                foreign_table: false,
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
    pub(super) fn plumb_host(
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
    pub(super) fn plumb_inside(networks: &[NetworkAttachment], pid: i32) -> Result<(), NetError> {
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
    pub(super) fn ensure_network(
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
        sys::ip_batch(None, &cmds).map_err(|e| match e {
            // The kernel allows one VXLAN device per VNI and port in a network namespace: two
            // nodes sharing one (several swarmd on one host, as in the loopback quickstart)
            // cannot both join an overlay network.
            NetError::Command { msg, .. }
                if msg.contains("VXLAN device with the specified VNI") =>
            {
                NetError::Config(format!(
                    "overlay network (VXLAN id {}): another VXLAN device with that id already \
                     exists in this network namespace — is another swarmd running in it? \
                     Overlay networks need one node per network namespace (host); use a \
                     bridge network on a single host",
                    att.vni
                ))
            }
            other => other,
        })?;
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
}
