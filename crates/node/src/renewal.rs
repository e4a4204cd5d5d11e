//! Keeping this node's certificate: renewal before expiry, and the switch to a new role's
//! certificate when the cluster promotes or demotes the node.

use crate::identity::{self, Identity};
use anyhow::{anyhow, bail};
use std::time::Duration;
use swarm_api::node::node_service_client::NodeServiceClient;
use swarm_api::node::RenewRequest;
use swarm_types::spec::NodeRole;
use tokio::sync::watch;

/// Takes a certificate for the role the cluster wants (the manager signs it with the role from
/// the store) and records the new role; the caller restarts the process.
pub(crate) async fn switch_role(
    state_dir: &std::path::Path,
    id: &mut Identity,
    desired: NodeRole,
    raft_id: u64,
    managers: &swarm_agent::managers::Managers,
) -> anyhow::Result<()> {
    let (cert_pem, key_pem) = renew_once(managers).await?;
    let der = swarm_api::tls::certs_from_pem(&cert_pem)?;
    let got = der
        .first()
        .and_then(|c| swarm_api::tls::identity_of(c.as_ref()))
        .map(|p| p.role)
        .unwrap_or_default();
    if got != desired.as_str() {
        bail!(
            "the manager issued a {got} certificate, not {}; not switching yet",
            desired.as_str()
        );
    }
    let ca_pem = identity::load_certs(state_dir)?.ca_pem;
    identity::save_certs(
        state_dir,
        &identity::Certs {
            ca_pem,
            cert_pem,
            key_pem,
        },
    )?;
    id.managers = managers.addrs();
    id.role = desired;
    if desired == NodeRole::Manager {
        id.raft_id = raft_id;
        id.complete = false;
        id.promoting = true;
    } else {
        id.complete = true;
        id.promoting = false;
    }
    identity::save(state_dir, id)?;
    tracing::info!(role = desired.as_str(), "role changed by the cluster");
    Ok(())
}

/// Renews this node's certificate at a random point between 50% and 80% of its lifetime (or
/// after `renew_after`, a test hook), without dropping connections: new connections use the
/// new certificate, existing ones keep going.
pub(crate) async fn renew_certificates(
    state_dir: std::path::PathBuf,
    certs: swarm_api::tls::NodeCerts,
    managers: swarm_agent::managers::Managers,
    renew_after: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let current = match identity::load_certs(&state_dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read this node's certificate; renewal stopped");
                return;
            }
        };
        let wait = match renew_after {
            Some(d) => d,
            None => {
                let (left, total) =
                    swarm_api::tls::validity_of(&current.cert_pem).unwrap_or((0, 0));
                let frac = 0.5 + rand::random::<f64>() * 0.3;
                let at_left = (total as f64 * (1.0 - frac)) as i64;
                Duration::from_secs((left - at_left).max(1) as u64)
            }
        };
        tracing::debug!(?wait, "next certificate renewal");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let mut delay = Duration::from_secs(1);
        loop {
            match renew_once(&managers).await {
                Ok((cert_pem, key_pem)) => {
                    let saved = identity::save_certs(
                        &state_dir,
                        &identity::Certs {
                            ca_pem: current.ca_pem.clone(),
                            cert_pem: cert_pem.clone(),
                            key_pem: key_pem.clone(),
                        },
                    );
                    match saved.and_then(|_| certs.replace(&cert_pem, &key_pem).map_err(Into::into))
                    {
                        Ok(()) => tracing::info!("node certificate renewed"),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot store the renewed certificate")
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificate renewal failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

pub(crate) async fn renew_once(
    managers: &swarm_agent::managers::Managers,
) -> anyhow::Result<(String, String)> {
    let (key_pem, csr) = swarm_api::tls::new_key_and_csr()?;
    let mut last = anyhow!("no manager known");
    for addr in managers.addrs() {
        let ch = managers.channel(&addr).map_err(|e| anyhow!(e))?;
        match NodeServiceClient::new(ch)
            .renew_certificate(RenewRequest { csr: csr.clone() })
            .await
        {
            Ok(r) => return Ok((r.into_inner().cert_pem, key_pem)),
            Err(s) => last = anyhow!("{addr}: {}", s.message()),
        }
    }
    Err(last)
}
