//! The gRPC service peers call: openraft's three RPCs plus the two a follower needs from the
//! leader (forwarded writes and read indexes).

use crate::manager::Manager;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use swarm_api::raft::raft_server::Raft as RaftRpc;
use swarm_api::raft::{
    ForwardWriteRequest, ForwardWriteResponse, RaftPayload, ReadIndexRequest, ReadIndexResponse,
};
use swarm_api::wire;
use tonic::{Request, Response, Status};

pub struct RaftService {
    manager: Manager,
}

impl RaftService {
    pub fn new(manager: Manager) -> Self {
        RaftService { manager }
    }
}

fn payload<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    let data = super::codec::encode(v).map_err(|e| Status::internal(format!("encode: {e}")))?;
    Ok(Response::new(RaftPayload { data }))
}

#[allow(clippy::result_large_err)]
fn decode<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, Status> {
    super::codec::decode(b).map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<super::TypeConfig> =
            decode("append-entries", &req.get_ref().data)?;
        self.manager.note_contact(rpc.vote.leader_id().voted_for());
        let res = self.manager.raft().append_entries(rpc).await;
        payload(&res)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<super::RaftId> = decode("vote", &req.get_ref().data)?;
        self.manager.note_contact(rpc.vote.leader_id().voted_for());
        let res = self.manager.raft().vote(rpc).await;
        payload(&res)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<super::TypeConfig> =
            decode("install-snapshot", &req.get_ref().data)?;
        self.manager.note_contact(rpc.vote.leader_id().voted_for());
        let res = self.manager.raft().install_snapshot(rpc).await;
        payload(&res)
    }

    async fn forward_write(
        &self,
        req: Request<ForwardWriteRequest>,
    ) -> Result<Response<ForwardWriteResponse>, Status> {
        let batch = wire::from_bytes("write batch", &req.get_ref().batch)?;
        let res = self.manager.write_as_leader(batch).await;
        Ok(Response::new(ForwardWriteResponse {
            result: wire::to_bytes(&res),
        }))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let index = self.manager.read_index_as_leader().await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }
}
