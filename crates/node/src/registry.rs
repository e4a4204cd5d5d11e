//! Wiring of the cluster registry (`swarm_manager::registry`) into a manager's start.

use crate::args::Args;
use crate::identity::Identity;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;

/// The registry's advertised address: the listen address when it names an IP, else this
/// node's advertised host with the registry port.
fn advertise(listen: &SocketAddr, node_advertise: &str) -> String {
    if !listen.ip().is_unspecified() {
        return listen.to_string();
    }
    let host = node_advertise
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(node_advertise);
    format!("{host}:{}", listen.port())
}

/// Starts the registry on a manager (fails when its port cannot be bound).
pub async fn start(
    args: &Args,
    id: &Identity,
    hostname: &str,
    node_tls: Arc<rustls::ClientConfig>,
    manager: swarm_manager::Manager,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listen: SocketAddr = args.registry_addr.parse().with_context(|| {
        format!(
            "invalid --registry-addr {:?}: expected IP:PORT",
            args.registry_addr
        )
    })?;
    let advertise_addr = advertise(&listen, &id.advertise_addr);
    let mut names = vec!["127.0.0.1".to_string(), "::1".into(), "localhost".into()];
    for n in [
        advertise_addr.rsplit_once(':').map(|(h, _)| h.to_string()),
        Some(hostname.to_string()),
    ]
    .into_iter()
    .flatten()
    {
        let n = n.trim_start_matches('[').trim_end_matches(']').to_string();
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names.retain(|n| n.parse::<std::net::IpAddr>().is_ok() || is_dns_name(n));
    let cfg = swarm_manager::registry::RegistryConfig {
        listen_addr: listen.to_string(),
        advertise_addr,
        dir: args.state_dir.join("registry"),
        anonymous_pull: args.registry_anonymous_pull,
        node_tls,
        cert_names: names,
        gc: swarm_manager::registry::gc::GcConfig {
            interval: args.registry_gc_interval,
            grace: args.registry_gc_grace,
        },
    };
    swarm_manager::registry::Registry::start(cfg, manager, shutdown)
        .await
        .map_err(anyhow::Error::msg)
}

fn is_dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn advertised_address() {
        let any: std::net::SocketAddr = "0.0.0.0:4243".parse().unwrap();
        assert_eq!(super::advertise(&any, "198.18.0.2:4242"), "198.18.0.2:4243");
        let one: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(super::advertise(&one, "198.18.0.2:4242"), "127.0.0.1:5000");
    }
}
