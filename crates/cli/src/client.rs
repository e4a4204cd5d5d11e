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
}

impl Context {
    pub fn new(host: &str, stale: bool) -> anyhow::Result<Self> {
        Ok(Context {
            target: Target::parse(host)?,
            stale,
        })
    }

    pub async fn control(&self) -> anyhow::Result<ControlClient<Channel>> {
        let ch = connect(&self.target).await?;
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
