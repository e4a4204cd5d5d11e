//! Blobs between managers: a finished upload is copied to the other managers (acknowledged
//! once one of them has it), and a manager that lacks a blob — or whose copy failed its digest
//! check — fetches it from a peer. Peers use their node certificates on the internal path
//! `/swarm/internal/blobs/<digest>`, which serves and takes only blobs (never forwards).

use super::{RegErr, Registry};
use futures::StreamExt;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

impl Registry {
    /// Registry addresses of the other managers that are still members.
    pub(super) fn peers(&self) -> Vec<String> {
        let me = self.manager().config().node_id.to_string();
        self.manager().store().read(|s| {
            s.registry_endpoints
                .values()
                .filter(|e| e.id != me)
                .filter(|e| {
                    s.nodes
                        .get(&swarm_types::NodeId::new(e.id.clone()))
                        .is_some_and(|n| n.manager_status.is_some())
                })
                .map(|e| e.addr.clone())
                .collect()
        })
    }

    fn internal_url(addr: &str, digest: &str) -> String {
        format!("https://{addr}/swarm/internal/blobs/{digest}")
    }

    /// Copies a stored blob to the other managers; returns once one has it (or there is no
    /// other manager). The remaining copies finish in the background.
    pub(super) async fn replicate(&self, digest: &str) -> Result<(), RegErr> {
        let peers = self.peers();
        if peers.is_empty() {
            return Ok(());
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(peers.len());
        for p in peers {
            let (reg, tx, d) = (self.clone(), tx.clone(), digest.to_string());
            tokio::spawn(async move {
                let r = reg.push_to(&p, &d).await.map_err(|e| format!("{p}: {e}"));
                let _ = tx.send(r).await;
            });
        }
        drop(tx);
        let mut errors = Vec::new();
        while let Some(r) = rx.recv().await {
            match r {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(e),
            }
        }
        Err(RegErr::unavailable(format!(
            "blob {digest} is stored on one manager only: no other manager took a copy ({}); retry the upload when another manager is reachable",
            errors.join("; ")
        )))
    }

    async fn push_to(&self, addr: &str, digest: &str) -> Result<(), String> {
        let url = Self::internal_url(addr, digest);
        let c = &self.inner.client;
        if let Ok(r) = c.head(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        let f = tokio::fs::File::open(self.inner.blobs.path(digest))
            .await
            .map_err(|e| e.to_string())?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
        let r = c
            .put(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| swarm_api::error_chain(&e))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "{} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ))
        }
    }

    /// Makes sure a verified copy of `digest` is on this manager's disk, fetching it from a
    /// peer when missing or corrupt. False when no manager has it.
    pub(super) async fn ensure_local(&self, digest: &str) -> Result<bool, RegErr> {
        let io = |e: std::io::Error| RegErr::unavailable(format!("blob store: {e}"));
        if self.inner.blobs.verified(digest).await.map_err(io)? {
            self.touch(digest);
            return Ok(true);
        }
        let lock = {
            let mut m = self.inner.fetching.lock().expect("fetching lock");
            m.entry(digest.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let _g = lock.lock().await;
        let forget = || {
            self.inner
                .fetching
                .lock()
                .expect("fetching lock")
                .remove(digest);
        };
        match self.inner.blobs.verified(digest).await {
            Ok(true) => {
                forget();
                return Ok(true);
            }
            Ok(false) => {}
            Err(e) => {
                forget();
                return Err(io(e));
            }
        }
        let mut found = false;
        for p in self.peers() {
            match self.fetch_from(&p, digest).await {
                Ok(true) => {
                    found = true;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(peer = %p, %digest, error = %e, "registry: fetching a blob from a peer failed")
                }
            }
        }
        forget();
        Ok(found)
    }

    async fn fetch_from(&self, addr: &str, digest: &str) -> Result<bool, String> {
        let r = self
            .inner
            .client
            .get(Self::internal_url(addr, digest))
            .send()
            .await
            .map_err(|e| swarm_api::error_chain(&e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !r.status().is_success() {
            return Err(format!(
                "{} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        let tmp = self.inner.blobs.tmp_path();
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = r.bytes_stream();
        let res: Result<(), String> = async {
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| swarm_api::error_chain(&e))?;
                f.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            f.flush().await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        self.inner
            .blobs
            .commit(&tmp, digest)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(peer = %addr, %digest, "registry: fetched a blob from a peer");
        Ok(true)
    }
}
