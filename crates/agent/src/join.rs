//! Joining a cluster: connect to a manager trusting only the CA named by the join token,
//! present a certificate signing request, and receive the node's identity and certificate.
//! It keeps nothing on disk: the node stores what it receives.

use std::sync::Arc;
use swarm_api::node::node_service_client::NodeServiceClient;
use swarm_api::node::{JoinRequest, JoinResponse};
use swarm_types::objects::NodeDescription;
use swarm_types::token::JoinToken;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Token(#[from] swarm_types::token::TokenError),
    #[error("cannot reach the manager at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("join {addr} refused: {reason}")]
    Refused { addr: String, reason: String },
    #[error("join token rejected: the manager at {addr} belongs to a different cluster (its CA does not match the token); refusing to join")]
    WrongCa { addr: String },
    #[error("tls: {0}")]
    Tls(#[from] swarm_api::tls::TlsError),
}

/// What a node keeps after joining.
pub struct Joined {
    pub resp: JoinResponse,
    pub key_pem: String,
}

/// Joins through the manager at `addr` with `token`.
pub async fn join(
    addr: &str,
    token: &str,
    advertise_addr: &str,
    description: &NodeDescription,
) -> Result<Joined, JoinError> {
    let t = JoinToken::parse(token)?;
    let cfg: Arc<rustls::ClientConfig> = swarm_api::tls::pinned_client_config(&t.ca_digest)?;
    let ch = swarm_api::tls::connect(addr, cfg).await.map_err(|e| {
        let reason = e.to_string();
        if reason.contains("does not match the join token") {
            JoinError::WrongCa { addr: addr.into() }
        } else {
            JoinError::Connect {
                addr: addr.into(),
                reason,
            }
        }
    })?;
    let (key_pem, csr) = swarm_api::tls::new_key_and_csr()?;
    let resp = NodeServiceClient::new(ch)
        .join(JoinRequest {
            token: token.to_string(),
            advertise_addr: advertise_addr.to_string(),
            description: swarm_api::wire::to_bytes(description),
            csr,
        })
        .await
        .map_err(|s| JoinError::Refused {
            addr: addr.into(),
            reason: s.message().to_string(),
        })?
        .into_inner();
    // Belt and braces: the CA we were given is the one the token names.
    let ca = swarm_api::tls::certs_from_pem(&resp.ca_cert_pem)?;
    if ca
        .first()
        .map(|c| swarm_types::token::ca_digest(c.as_ref()))
        != Some(t.ca_digest.clone())
    {
        return Err(JoinError::WrongCa { addr: addr.into() });
    }
    Ok(Joined { resp, key_pem })
}
