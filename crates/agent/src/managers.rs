//! The manager connection pool: the manager addresses this node knows (refreshed by heartbeat
//! answers) and one reused gRPC channel per manager; callers fail over by index. It owns no
//! session and sends no request itself.
//!
//! Every manager sends the list in the same order, so the pool keeps it turned to this node's
//! home manager: its own address on a manager, otherwise the one a per-node number picks.
//! Index 0 is then a different manager on different nodes and a cluster's sessions spread
//! over its managers instead of all landing on the first one listed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// This node's own manager address (a manager's agent talks to itself first).
    own: std::sync::OnceLock<String>,
    /// Picks the home manager of a list without this node's own address: `spread % len`.
    spread: AtomicUsize,
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
            own: std::sync::OnceLock::new(),
            spread: AtomicUsize::new(0),
        })
    }
    /// Makes `addr` (this node's own manager address) the home manager whenever it is listed.
    pub fn prefer_own(&self, addr: &str) {
        let _ = self.own.set(addr.to_string());
        self.rearrange();
    }
    /// Sets the number that picks this node's home manager from a list (see the module
    /// docs); nodes pass something that differs between them, such as a hash of their id.
    pub fn set_spread(&self, n: usize) {
        self.spread.store(n, Ordering::Relaxed);
        self.rearrange();
    }
    /// A spread number for `key` (the same on every start of one binary: a node keeps its home).
    pub fn spread_of(key: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        h.finish() as usize
    }
    fn rearrange(&self) {
        let mut addrs = self.addrs.lock().expect("managers lock");
        let mut v = std::mem::take(&mut *addrs);
        self.turn_home_first(&mut v);
        *addrs = v;
    }
    /// Turns `addrs` (kept in the order given) so that the home manager comes first.
    fn turn_home_first(&self, addrs: &mut [String]) {
        if addrs.is_empty() {
            return;
        }
        let home = self
            .own
            .get()
            .and_then(|own| addrs.iter().position(|a| a == own))
            .unwrap_or_else(|| self.spread.load(Ordering::Relaxed) % addrs.len());
        addrs.rotate_left(home);
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
    /// Replaces the known managers (turned so that this node's home manager comes first).
    pub fn set(&self, mut addrs: Vec<String>) {
        self.turn_home_first(&mut addrs);
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

    fn list(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:4242")).collect()
    }

    #[test]
    fn nodes_with_different_spreads_start_at_different_managers_of_the_same_list() {
        let mut firsts = std::collections::HashMap::<String, usize>::new();
        for i in 0..300 {
            let m = ManagerSet::new(vec![]);
            m.set_spread(ManagerSet::spread_of(&format!("node-{i}")));
            m.set(list(3));
            *firsts.entry(m.pick(0).unwrap()).or_default() += 1;
            // Every manager is still reachable by moving on, in the list's order.
            let all: Vec<_> = (0..3).map(|k| m.pick(k).unwrap()).collect();
            let mut sorted = all.clone();
            sorted.sort();
            assert_eq!(sorted, list(3));
        }
        assert_eq!(firsts.len(), 3, "{firsts:?}");
        assert!(firsts.values().all(|&c| c > 60), "{firsts:?}");
    }

    #[test]
    fn the_home_manager_stays_first_when_the_list_is_sent_again() {
        let m = ManagerSet::new(list(3));
        m.set_spread(4);
        assert_eq!(m.pick(0).as_deref(), Some("10.0.0.1:4242"));
        m.set(list(3));
        assert_eq!(m.pick(0).as_deref(), Some("10.0.0.1:4242"));
        // A new manager joins: the home of a node may move, but stays a listed manager.
        m.set(list(4));
        assert_eq!(m.pick(0).as_deref(), Some("10.0.0.0:4242"));
    }

    #[test]
    fn a_manager_talks_to_itself_first_whatever_its_spread() {
        let m = ManagerSet::new(list(3));
        m.set_spread(1);
        m.prefer_own("10.0.0.2:4242");
        assert_eq!(m.pick(0).as_deref(), Some("10.0.0.2:4242"));
        m.set(list(3));
        assert_eq!(m.pick(0).as_deref(), Some("10.0.0.2:4242"));
        // Not listed (being removed): the spread decides.
        m.set(list(2));
        assert_eq!(m.pick(0).as_deref(), Some("10.0.0.1:4242"));
    }
}
