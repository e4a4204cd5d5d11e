//! The manager connection pool: the manager addresses this node knows (refreshed by heartbeat
//! answers) and one reused gRPC channel per manager; callers fail over by index. It owns no
//! session and sends no request itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Manager addresses shared by the heartbeat session, the worker and the status reporter,
/// with one reused gRPC channel per manager.
pub type Managers = Arc<ManagerSet>;

#[derive(Default)]
pub struct ManagerSet {
    addrs: Mutex<Vec<String>>,
    channels: Mutex<HashMap<String, tonic::transport::Channel>>,
    /// TLS client configuration (the node's certificate); None = plaintext (tests only).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The managers' cluster registry addresses (from heartbeat answers).
    registries: Mutex<Vec<String>>,
    /// TLS client configuration that accepts any node of the cluster as the server: for
    /// asking a demoted manager where the managers are (see [`ManagerSet::member_channel`]).
    member_tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
}

impl ManagerSet {
    pub fn new(addrs: Vec<String>) -> Managers {
        Self::with_tls(addrs, None)
    }
    /// Managers reached over mutual TLS with the node's certificate.
    pub fn with_tls(addrs: Vec<String>, tls: Option<Arc<rustls::ClientConfig>>) -> Managers {
        Arc::new(ManagerSet {
            addrs: Mutex::new(addrs),
            channels: Mutex::default(),
            tls,
            registries: Mutex::default(),
            member_tls: std::sync::OnceLock::new(),
        })
    }
    /// Sets the configuration [`ManagerSet::member_channel`] connects with.
    pub fn set_member_tls(&self, cfg: Arc<rustls::ClientConfig>) {
        let _ = self.member_tls.set(cfg);
    }
    /// A fresh channel to `addr` that accepts any node of the cluster as the server (not
    /// only a manager): used only to ask a node that no longer answers as a manager for the
    /// managers it knows, whose addresses are then verified as managers. Plaintext setups
    /// use a plain channel; None when TLS is on but no member configuration was set.
    pub fn member_channel(&self, addr: &str) -> Option<tonic::transport::Channel> {
        match (&self.tls, self.member_tls.get()) {
            (None, _) => swarm_api::transport::lazy_channel(addr).ok(),
            (Some(_), Some(cfg)) => swarm_api::tls::lazy_channel(addr, cfg.clone()).ok(),
            (Some(_), None) => None,
        }
    }
    pub fn addrs(&self) -> Vec<String> {
        self.addrs.lock().expect("managers lock").clone()
    }
    pub fn set(&self, addrs: Vec<String>) {
        *self.addrs.lock().expect("managers lock") = addrs;
    }
    /// The cluster registry addresses the managers last announced.
    pub fn registries(&self) -> Vec<String> {
        self.registries.lock().expect("registries lock").clone()
    }
    pub fn set_registries(&self, addrs: Vec<String>) {
        *self.registries.lock().expect("registries lock") = addrs;
    }
    /// The node's TLS client configuration (None on plaintext test setups).
    pub fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }
    /// The address to try for attempt `idx` (callers move on to the next one after a
    /// failure); None while no manager is known.
    pub fn pick(&self, idx: usize) -> Option<String> {
        let addrs = self.addrs.lock().expect("managers lock");
        (!addrs.is_empty()).then(|| addrs[idx % addrs.len()].clone())
    }
    /// A shared channel to `addr` (connects lazily, reconnects after failures).
    pub fn channel(&self, addr: &str) -> Result<tonic::transport::Channel, String> {
        let mut m = self.channels.lock().expect("channels lock");
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let c = match &self.tls {
            Some(cfg) => swarm_api::tls::lazy_channel(addr, cfg.clone()),
            None => swarm_api::transport::lazy_channel(addr),
        }
        .map_err(|e| e.to_string())?;
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// Follows a server stream that any manager serves, failing over between managers: `open`
/// starts it on a channel (given 5 s), `handle` takes each message. After the stream ends
/// or fails, the next manager is tried. Runs until `shutdown`.
pub async fn follow<M, O, OF, H, HF>(
    managers: &Managers,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    open: O,
    mut handle: H,
) where
    O: Fn(tonic::transport::Channel) -> OF,
    OF: std::future::Future<Output = Result<tonic::Streaming<M>, tonic::Status>>,
    H: FnMut(M) -> HF,
    HF: std::future::Future<Output = ()>,
{
    use std::time::Duration;
    let mut idx = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(addr) = managers.pick(idx) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let started = match managers.channel(&addr) {
            Ok(ch) => tokio::time::timeout(Duration::from_secs(5), open(ch)).await,
            Err(_) => Ok(Err(tonic::Status::unavailable("no channel"))),
        };
        let mut stream = match started {
            Ok(Ok(s)) => s,
            _ => {
                idx += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = shutdown.changed() => return,
            };
            let Ok(Some(m)) = msg else { break };
            handle(m).await;
        }
        idx += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_cycles_through_the_known_managers() {
        let m = ManagerSet::new(vec![]);
        assert_eq!(m.pick(0), None);
        m.set(vec!["a:1".into(), "b:2".into()]);
        assert_eq!(m.pick(0).as_deref(), Some("a:1"));
        assert_eq!(m.pick(1).as_deref(), Some("b:2"));
        assert_eq!(m.pick(2).as_deref(), Some("a:1"));
    }
}
