//! Network-namespace "hosts" for multi-host tests: each host is a network namespace with a
//! veth into a test bridge and its own address from 198.18.0.0/15 (reserved for network
//! testing). Daemons run inside with `nsenter --net` (not `ip netns exec`, which would remount
//! /sys and hide the cgroup hierarchies from the container runtime). Everything is removed on
//! drop, also when the test failed.

use anyhow::{bail, Context as _};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("run {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether this process may create network namespaces (root with iproute2).
pub fn available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("multi-host tests need root (network namespaces)".into());
    }
    for tool in ["ip", "nsenter", "iptables"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "{tool} is not installed (apt-get install iproute2 iptables util-linux)"
            ));
        }
    }
    Ok(())
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A test bridge with N namespaces attached.
pub struct Hosts {
    pub bridge: String,
    /// Network namespace names, one per host.
    pub names: Vec<String>,
    /// Host addresses (same order as `names`).
    pub ips: Vec<String>,
    subnet: u32,
    forward_rule: bool,
}

impl Hosts {
    /// Creates the bridge; add hosts with [`Hosts::add`].
    pub fn new() -> anyhow::Result<Hosts> {
        // A /24 per test inside 198.18.0.0/15, claimed by creating its bridge: `ip link add`
        // fails when the bridge exists, so two tests (of this process or of others running
        // side by side) never share a subnet, and nobody deletes a bridge in use. A bridge
        // left by a crashed run only takes its subnet out of the rotation.
        // Subnets 501..=511 first: older copies of this helper pick only 1..=500 (and delete
        // whatever bridge is in their way), so those are safe from them.
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let first = (std::process::id() * 7 + seq * 13) % 500;
        let mut claimed = None;
        // Rotated by the sequence number, so that a process's next cluster takes another
        // subnet while the kernel still tears down the last one's namespaces.
        let order = (0..11)
            .map(|k| 501 + (seq + k) % 11)
            .chain((0..500).map(|k| (first + k) % 500 + 1));
        for subnet in order {
            let bridge = format!("swbr{subnet}");
            if sh(&["ip", "link", "add", &bridge, "type", "bridge"]).is_ok() {
                claimed = Some((subnet, bridge));
                break;
            }
        }
        let Some((subnet, bridge)) = claimed else {
            bail!("no free test subnet: bridges swbr1..swbr511 all exist; delete stale ones (`ip link del swbrN`)");
        };
        let mut h = Hosts {
            bridge: bridge.clone(),
            names: Vec::new(),
            ips: Vec::new(),
            subnet,
            forward_rule: false,
        };
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", h.ip(254)),
            "dev",
            &bridge,
        ])?;
        sh(&["ip", "link", "set", &bridge, "up"])?;
        // Docker sets FORWARD to DROP and bridged traffic passes through iptables here.
        sh(&[
            "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ])?;
        h.forward_rule = true;
        Ok(h)
    }

    fn ip(&self, host: u32) -> String {
        // 198.18.0.0/15: third octet from the subnet number, spanning into 198.19.
        let s = self.subnet;
        format!("198.{}.{}.{}", 18 + s / 256, s % 256, host)
    }

    /// Adds a host; returns its index.
    pub fn add(&mut self) -> anyhow::Result<usize> {
        let i = self.names.len();
        let name = format!("sw{}h{}", self.subnet, i + 1);
        let ip = self.ip(i as u32 + 1);
        let veth = format!("sw{}v{}", self.subnet, i + 1);
        let peer = format!("sw{}p{}", self.subnet, i + 1);
        // This process owns the subnet's bridge, so a namespace of that name is a crashed
        // run's leftover.
        let _ = sh(&["ip", "netns", "del", &name]);
        sh(&["ip", "netns", "add", &name])?;
        // Likewise a veth of that name: a deleted namespace is torn down by the kernel later
        // (sockets of its killed daemons can hold it for a while), and its veth with it.
        let _ = sh(&["ip", "link", "del", &veth]);
        self.names.push(name.clone());
        sh(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ])?;
        sh(&["ip", "link", "set", &veth, "master", &self.bridge])?;
        sh(&["ip", "link", "set", &veth, "up"])?;
        sh(&["ip", "link", "set", &peer, "netns", &name])?;
        sh(&["ip", "-n", &name, "link", "set", &peer, "name", "eth0"])?;
        sh(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", &name, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        self.ips.push(ip);
        Ok(i)
    }

    /// Cuts (or restores) a host's link to the bridge.
    pub fn set_link(&self, i: usize, up: bool) -> anyhow::Result<()> {
        let veth = format!("sw{}v{}", self.subnet, i + 1);
        sh(&["ip", "link", "set", &veth, if up { "up" } else { "down" }])
    }

    /// The command prefix that runs a program inside host `i`'s network namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net=/var/run/netns/{}", self.names[i]),
            "--".into(),
        ]
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
        if self.forward_rule {
            let _ = sh(&[
                "iptables",
                "-D",
                "FORWARD",
                "-i",
                &self.bridge,
                "-o",
                &self.bridge,
                "-j",
                "ACCEPT",
            ]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}
