//! The kernel side of the data plane: `ip`/`bridge` batches (in the host's namespace or a
//! container's), `nft` rulesets, and reads of `/sys/class/net`. Every command's stderr is kept
//! in the error, so a failure says what the kernel refused.

use super::Peer;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use swarm_types::network::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{cmd} failed: {msg}")]
    Command { cmd: String, msg: String },
    #[error("cannot run {cmd}: {source} (is it installed?)")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A netlink request the kernel refused (`op` says what, like `ip` would).
    #[error("{op}: {source}")]
    Netlink { op: String, source: std::io::Error },
}

impl NetError {
    /// The request already exists (EEXIST: a link or address of that name is there).
    pub fn exists(&self) -> bool {
        match self {
            NetError::Netlink { source, .. } => source.raw_os_error() == Some(libc::EEXIST),
            other => other.to_string().contains("File exists"),
        }
    }
}

fn run(mut cmd: Command, name: &str, input: &str) -> Result<String, NetError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn {
            cmd: name.into(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| NetError::Spawn {
                cmd: name.into(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| NetError::Spawn {
        cmd: name.into(),
        source,
    })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(NetError::Command {
            cmd: name.into(),
            msg: if msg.is_empty() {
                format!("exit status {}", out.status)
            } else {
                msg
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -batch -` in the host's namespace, or in the namespace of process `pid`.
pub fn ip_batch(pid: Option<i32>, cmds: &str) -> Result<(), NetError> {
    if cmds.is_empty() {
        return Ok(());
    }
    let cmd = match pid {
        None => {
            let mut c = Command::new("ip");
            c.args(["-batch", "-"]);
            c
        }
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net"))
                .args(["ip", "-batch", "-"]);
            c
        }
    };
    run(cmd, "ip", cmds).map(|_| ())
}

/// `ip -force -batch -`: every line is tried (removals of what may already be gone).
pub fn ip_batch_force(cmds: &str) -> Result<(), NetError> {
    force_batch("ip", cmds)
}

/// `bridge -force -batch -`, as `ip_batch_force`.
pub fn bridge_batch(cmds: &str) -> Result<(), NetError> {
    force_batch("bridge", cmds)
}

/// `<tool> -force -batch -`: every line is tried; failures that only say something is
/// already gone are not errors.
fn force_batch(tool: &'static str, cmds: &str) -> Result<(), NetError> {
    if cmds.is_empty() {
        return Ok(());
    }
    let mut c = Command::new(tool);
    c.args(["-force", "-batch", "-"]);
    match run(c, tool, cmds) {
        Err(NetError::Command { msg, .. })
            if msg.lines().all(|l| {
                l.contains("No such")
                    || l.contains("Cannot find")
                    || l.starts_with("Command failed")
            }) =>
        {
            Ok(())
        }
        r => r.map(|_| ()),
    }
}

pub fn nft(rules: &str) -> Result<(), NetError> {
    let mut c = Command::new("nft");
    c.args(["-f", "-"]);
    run(c, "nft", rules).map(|_| ())
}

/// Loads a ruleset that only creates (nothing to replace) in the network namespace of process
/// `pid`: in-process through libnftables where it is installed (under a millisecond), else as
/// `nft_in` does. The library loads one ruleset at a time, so a replacement — which waits
/// 10–16 ms in the kernel for an RCU grace period — goes through `nft_in` instead and never
/// holds up a starting container's first load.
pub fn nft_create_in(pid: i32, rules: &str) -> Result<(), NetError> {
    match swarm_runtime::nftables::load_in(pid, rules) {
        Some(res) => res.map_err(|msg| NetError::Command {
            cmd: "nft".into(),
            msg,
        }),
        None => nft_in(pid, rules),
    }
}

/// `nft -f -` in the network namespace of process `pid`.
pub fn nft_in(pid: i32, rules: &str) -> Result<(), NetError> {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["nft", "-f", "-"]);
    run(c, "nft", rules).map(|_| ())
}

/// A network interface of this namespace (read through netlink by `ip -j link show`: the
/// daemon may run in a network namespace whose devices its `/sys` does not show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub master: Option<String>,
    pub alias: Option<String>,
}

pub fn links() -> Result<Vec<Link>, NetError> {
    let mut c = Command::new("ip");
    c.args(["-j", "link", "show"]);
    let v: serde_json::Value =
        serde_json::from_str(&run(c, "ip", "")?).map_err(|e| NetError::Command {
            cmd: "ip -j link show".into(),
            msg: format!("unreadable output: {e}"),
        })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some(Link {
                name: l["ifname"].as_str()?.to_string(),
                master: l["master"].as_str().map(String::from),
                alias: l["ifalias"].as_str().map(String::from),
            })
        })
        .collect())
}

pub fn has(links: &[Link], name: &str) -> bool {
    links.iter().any(|l| l.name == name)
}

/// The alias a bridge carries: `swarm-<tag> <subnet> internal|external`.
pub fn bridge_alias(tag: &str, subnet: Ipv4Net, internal: bool, gateway: Ipv4Addr) -> String {
    format!(
        "swarm-{tag}:{subnet}:{}:{gateway}",
        if internal { "internal" } else { "external" }
    )
}

/// Subnet, internal and gateway (absent from an older agent's alias) of one of our bridges.
pub fn bridge_meta(tag: &str, link: &Link) -> Option<(Ipv4Net, bool, Option<Ipv4Addr>)> {
    let alias = link.alias.as_deref()?;
    let rest = alias.trim().strip_prefix(&format!("swarm-{tag}:"))?;
    let mut parts = rest.split(':');
    let subnet = parts.next()?.parse().ok()?;
    let internal = parts.next()? == "internal";
    let gateway = parts.next().and_then(|g| g.parse().ok());
    Some((subnet, internal, gateway))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// The remote entries a VXLAN device holds now (FDB entries with a destination, joined with
/// the neighbour entries of the same MAC).
pub fn vxlan_entries(vx: &str, vni: u32) -> Result<BTreeSet<Peer>, NetError> {
    let mut c = Command::new("bridge");
    c.args(["-j", "fdb", "show", "dev", vx]);
    let fdb: serde_json::Value = serde_json::from_str(&run(c, "bridge", "")?).unwrap_or_default();
    let mut c = Command::new("ip");
    c.args(["-j", "neigh", "show", "dev", vx]);
    let neigh: serde_json::Value = serde_json::from_str(&run(c, "ip", "")?).unwrap_or_default();
    let mut addr_of: BTreeMap<[u8; 6], Ipv4Addr> = BTreeMap::new();
    for n in neigh.as_array().into_iter().flatten() {
        if let (Some(ip), Some(mac)) = (
            n["dst"].as_str().and_then(|s| s.parse().ok()),
            n["lladdr"].as_str().and_then(parse_mac),
        ) {
            addr_of.insert(mac, ip);
        }
    }
    let mut out = BTreeSet::new();
    for e in fdb.as_array().into_iter().flatten() {
        let (Some(mac), Some(host)) = (
            e["mac"].as_str().and_then(parse_mac),
            e["dst"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()),
        ) else {
            continue;
        };
        if mac == [0; 6] {
            continue;
        }
        let addr = addr_of.get(&mac).copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        out.insert(Peer {
            vni,
            addr,
            mac,
            host,
        });
    }
    Ok(out)
}

pub fn enable_forwarding() -> Result<(), NetError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(|source| NetError::Io {
        path: path.into(),
        source,
    })
}

/// On a host where Docker set the iptables FORWARD policy to DROP, our bridges' traffic
/// would die there whatever our own table says: insert (or, `on == false`, delete) rules
/// accepting it, tagged with a comment naming this node. The nftables table above still
/// decides what is allowed.
pub fn docker_forward_rules(tag: &str, on: bool) {
    let drop_policy = Command::new("iptables")
        .args(["-w", "-S", "FORWARD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains("-P FORWARD DROP"));
    let comment = format!("swarm-{tag}");
    let pattern = format!("sb{tag}-+");
    for dir in ["-i", "-o"] {
        let rule = [
            dir,
            &pattern,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "ACCEPT",
        ];
        let present = Command::new("iptables")
            .args(["-w", "-C", "FORWARD"])
            .args(rule)
            .output()
            .is_ok_and(|o| o.status.success());
        if on && drop_policy && !present {
            let r = Command::new("iptables")
                .args(["-w", "-I", "FORWARD"])
                .args(rule)
                .output();
            if !r.as_ref().is_ok_and(|o| o.status.success()) {
                tracing::warn!(?r, "could not allow our bridges through iptables FORWARD");
            }
        } else if !on && present {
            let _ = Command::new("iptables")
                .args(["-w", "-D", "FORWARD"])
                .args(rule)
                .output();
        }
    }
}

/// The destinations of every IPv4 route of this namespace, in every table (the default route
/// excluded; a local address counts as its /32).
pub fn routes() -> Result<Vec<Ipv4Net>, NetError> {
    let mut c = Command::new("ip");
    c.args(["-j", "-4", "route", "show", "table", "all"]);
    let v: serde_json::Value =
        serde_json::from_str(&run(c, "ip", "")?).map_err(|e| NetError::Command {
            cmd: "ip -j -4 route show table all".into(),
            msg: format!("unreadable output: {e}"),
        })?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            if dst.contains('/') {
                dst.parse().ok()
            } else {
                dst.parse().ok().map(|a| Ipv4Net::new(a, 32))
            }
        })
        .collect())
}
