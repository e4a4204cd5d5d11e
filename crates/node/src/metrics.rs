//! `--metrics-addr`: Prometheus text exposition over plain HTTP (GET anything → metrics).
//! Managers expose Raft and store gauges; every node exposes its own identity.

use std::fmt::Write as _;
use swarm_manager::Manager;
use swarm_types::spec::NodeRole;
use swarm_types::task::TaskState;
use swarm_types::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Renders the current metrics.
pub fn render(node_id: &NodeId, role: NodeRole, manager: Option<&Manager>) -> String {
    let role = role.as_str();
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE swarm_node_info gauge");
    let _ = writeln!(
        out,
        "swarm_node_info{{node_id=\"{node_id}\",role=\"{role}\"}} 1"
    );
    memory(&mut out);
    let Some(m) = manager else { return out };
    let metrics = m.raft().metrics();
    let r = metrics.borrow();
    let gauges: [(&str, &str, u64); 4] = [
        ("swarm_raft_term", "current Raft term", r.current_term),
        (
            "swarm_raft_leader",
            "1 when this manager is the leader",
            u64::from(r.current_leader == Some(m.raft_id())),
        ),
        (
            "swarm_raft_last_log_index",
            "index of the last log entry",
            r.last_log_index.unwrap_or(0),
        ),
        (
            "swarm_raft_applied_index",
            "index of the last applied entry",
            r.last_applied.map(|l| l.index).unwrap_or(0),
        ),
    ];
    drop(r);
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let _ = writeln!(out, "# HELP swarm_raft_voters managers voting in Raft\n# TYPE swarm_raft_voters gauge\nswarm_raft_voters {}", m.voters().len());
    m.store().read(|s| {
        let _ = writeln!(out, "# HELP swarm_store_objects objects in the replicated store\n# TYPE swarm_store_objects gauge");
        for (kind, n) in [("node", s.nodes.len()), ("service", s.services.len()), ("task", s.tasks.len())] {
            let _ = writeln!(out, "swarm_store_objects{{kind=\"{kind}\"}} {n}");
        }
        let running = s
            .tasks
            .values()
            .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
            .count();
        let _ = writeln!(out, "# HELP swarm_tasks_running tasks observed and desired running\n# TYPE swarm_tasks_running gauge\nswarm_tasks_running {running}");
    });
    out
}

/// The process's resident memory and what the allocator holds of it.
fn memory(out: &mut String) {
    // statm's second field: resident pages.
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    if let (Some(pages), Ok(Some(page))) = (
        rss,
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE),
    ) {
        let _ = writeln!(out, "# HELP process_resident_memory_bytes resident memory of this process\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}", pages * page as u64);
    }
    let Some(st) = crate::allocator::stats() else {
        return;
    };
    let _ = writeln!(out, "# HELP swarm_allocator_bytes the memory allocator's counts: allocated (live objects), active (pages holding them), resident (active plus freed pages not yet returned and metadata; an upper bound that can exceed the process's RSS), metadata, retained (returned to the kernel, kept mapped)\n# TYPE swarm_allocator_bytes gauge");
    for (kind, v) in [
        ("allocated", st.allocated),
        ("active", st.active),
        ("resident", st.resident),
        ("metadata", st.metadata),
        ("retained", st.retained),
    ] {
        let _ = writeln!(out, "swarm_allocator_bytes{{kind=\"{kind}\"}} {v}");
    }
}

/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(10),
    std::time::Duration::from_secs(1),
);

/// Serves metrics on `addr` until the process ends.
pub async fn serve(
    addr: String,
    node_id: NodeId,
    role: NodeRole,
    manager: Option<Manager>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
    tokio::spawn(async move {
        let mut pause = ACCEPT_BACKOFF.0;
        loop {
            let mut sock = match listener.accept().await {
                Ok((sock, _)) => {
                    pause = ACCEPT_BACKOFF.0;
                    sock
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: back off instead of
                    // spinning on the error; connections wait in the backlog meanwhile.
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "metrics: accept failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            };
            let body = render(&node_id, role, manager.as_ref());
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf))
                        .await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(())
}
