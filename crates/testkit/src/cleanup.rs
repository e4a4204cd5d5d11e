//! What a cluster of test daemons leaves on the host and how it is removed even when a test
//! fails: mounts under its state dirs, cgroups, container processes, bridges and links.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Lazily unmounts anything still mounted below `dir` (deepest first).
pub(crate) fn unmount_under(dir: &Path) {
    let Ok(m) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut targets: Vec<&str> = m
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The node id a state dir holds (`node.json`), if it has one.
pub(crate) fn node_id_of(state_dir: &Path) -> Option<String> {
    let b = std::fs::read(state_dir.join("node.json")).ok()?;
    let v = serde_json::from_slice::<serde_json::Value>(&b).ok()?;
    let id = v["node_id"].as_str()?;
    (id.len() >= 12).then(|| id.to_string())
}

/// The cgroup parent directories a node's runtime uses (`swarm-<short node id>` in each
/// hierarchy, and `swarm-<short node id>-build` of its image builds).
pub fn cgroup_dirs(state_dir: &Path) -> Vec<PathBuf> {
    let Some(id) = node_id_of(state_dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for parent in [
        format!("swarm-{}", &id[..12]),
        format!("swarm-{}-build", &id[..12]),
    ] {
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                let p = e.path().join(&parent);
                if p.is_dir() {
                    out.push(p);
                }
            }
        }
        let p = Path::new("/sys/fs/cgroup").join(&parent);
        if p.is_dir() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Removes what a node killed in this network namespace left of its networks: its bridges
/// and VXLAN devices (`sb<tag>-*`, `sv<tag>-*`), its nftables table and its iptables
/// FORWARD accepts (tag = the node id's first 5 characters). A node in its own namespace
/// leaves nothing here: its namespace goes with it.
pub fn remove_host_networks(state_dir: &Path) {
    let Some(id) = node_id_of(state_dir) else {
        return;
    };
    let tag = &id[..5];
    let links = Command::new("ip").args(["-o", "link", "show"]).output();
    let names: Vec<String> = links
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(&format!("sb{tag}-")) || n.starts_with(&format!("sv{tag}-")))
        .collect();
    for n in &names {
        let _ = Command::new("ip").args(["link", "del", n]).output();
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &format!("swarm-{tag}")])
        .output();
    let comment = format!("swarm-{tag}");
    let iface = format!("sb{tag}-+");
    for dir in ["-i", "-o"] {
        for _ in 0..16 {
            let deleted = Command::new("iptables")
                .args([
                    "-w",
                    "-D",
                    "FORWARD",
                    dir,
                    &iface,
                    "-m",
                    "comment",
                    "--comment",
                ])
                .args([&comment, "-j", "ACCEPT"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !deleted {
                break;
            }
        }
    }
}

/// Pids of all processes in a node's container cgroups.
pub fn container_pids(state_dir: &Path) -> Vec<i32> {
    let mut pids = std::collections::BTreeSet::new();
    fn walk(dir: &Path, pids: &mut std::collections::BTreeSet<i32>) {
        if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), pids);
                }
            }
        }
    }
    for d in cgroup_dirs(state_dir) {
        walk(&d, &mut pids);
    }
    pids.into_iter().collect()
}

/// Removes a node's cgroup directories (children first); processes must be gone.
pub(crate) fn remove_cgroups(state_dir: &Path) {
    fn rm(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for d in cgroup_dirs(state_dir) {
        rm(&d);
    }
}
