//! Connection to a manager's control API and small helpers around its calls.

use anyhow::anyhow;
use swarm_api::control::control_client::ControlClient;
use swarm_api::control::{ListRequest, ObjectPage, StatusRequest, StatusResponse};
use swarm_api::transport::{connect, Target};
use swarm_types::Object;
use tonic::transport::Channel;

pub struct Context {
    pub target: Target,
    pub stale: bool,
    /// Admin client bundle for TCP targets.
    pub tls_dir: Option<std::path::PathBuf>,
}

impl Context {
    pub fn new(host: &str, stale: bool) -> anyhow::Result<Self> {
        Ok(Context {
            target: Target::parse(host)?,
            stale,
            tls_dir: None,
        })
    }

    /// A channel to the target: the unix socket as is, TCP with mutual TLS.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        match &self.target {
            Target::Unix(_) => Ok(connect(&self.target).await?),
            Target::Tcp(addr) => {
                let dir = self.tls_dir.as_ref().ok_or_else(|| {
                    anyhow!(
                        "{} is a TCP address, which needs a client certificate: run `swarmctl cluster ca client-bundle DIR` on a manager and pass --tls-dir DIR (or set SWARM_TLS_DIR)",
                        self.target
                    )
                })?;
                let read = |n: &str| {
                    std::fs::read_to_string(dir.join(n))
                        .map_err(|e| anyhow!("read {}: {e}", dir.join(n).display()))
                };
                let certs = swarm_api::tls::NodeCerts::new(
                    &read("ca.pem")?,
                    &read("cert.pem")?,
                    &read("key.pem")?,
                )?;
                let cfg = swarm_api::tls::client_config(&certs)?;
                Ok(swarm_api::tls::connect(addr, cfg).await?)
            }
        }
    }

    pub async fn control(&self) -> anyhow::Result<ControlClient<Channel>> {
        let ch = self.channel().await?;
        Ok(ControlClient::new(ch)
            .max_decoding_message_size(swarm_api::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(swarm_api::MAX_MESSAGE_BYTES))
    }

    pub async fn status(&self) -> anyhow::Result<StatusResponse> {
        Ok(self
            .control()
            .await?
            .status(StatusRequest {})
            .await
            .map_err(status_err)?
            .into_inner())
    }

    pub fn list_request(&self) -> ListRequest {
        ListRequest {
            stale: self.stale,
            ..Default::default()
        }
    }
}

/// Turns a gRPC status into the server's message (already written for the operator).
pub fn status_err(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::Unavailable
            if s.message().contains("transport") || s.message().contains("connect") =>
        {
            anyhow!("cannot reach the manager: {}", s.message())
        }
        _ => anyhow!("{}", s.message()),
    }
}

pub fn decode_object(b: &[u8]) -> anyhow::Result<Object> {
    serde_json::from_slice(b).map_err(|e| anyhow!("malformed object from server: {e}"))
}

/// Collects a paged list stream.
pub async fn collect(mut s: tonic::Streaming<ObjectPage>) -> anyhow::Result<Vec<Object>> {
    let mut out = Vec::new();
    while let Some(page) = s.message().await.map_err(status_err)? {
        for o in page.objects {
            out.push(decode_object(&o)?);
        }
    }
    Ok(out)
}
