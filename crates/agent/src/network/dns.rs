//! The embedded DNS server: one UDP socket per network on this host, on the network's gateway
//! address, port 53 (containers on networks get `nameserver <gateway>` in their
//! `/etc/resolv.conf`). Answers come from the discovery view the managers stream (so a task
//! that stops leaves the answers as soon as the view says so, everywhere):
//!
//! - `SERVICE` and its network aliases → the service's virtual IP on the network, or every
//!   serving task's address with `--endpoint-mode dnsrr`;
//! - `tasks.SERVICE` → every serving task's address;
//! - `SERVICE.SLOT.TASKID` (a task's name) → that task's address;
//!
//! on the networks the asking container shares with the service. Everything else goes to the
//! host's own resolvers (from its `/etc/resolv.conf`) and their answer goes back unchanged.
//! Records have TTL 0: resolvers in containers never keep an answer the view has dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use swarm_types::discovery::View;
use swarm_types::endpoint::EndpointMode;
use tokio::net::UdpSocket;
use tokio::sync::watch;

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer over UDP for a client that did not say it takes more (no EDNS).
pub const UDP_LIMIT: usize = 512;
/// A DNS message over TCP.
const TCP_LIMIT: usize = 65_535;
/// An idle TCP client is dropped after this.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The one question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the packet.
    end: usize,
}

/// Parses a standard query with one question (anything else is `None`: forwarded or dropped).
pub fn parse_query(b: &[u8]) -> Option<Query> {
    if b.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([b[2], b[3]]);
    let qr = flags >> 15;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([b[4], b[5]]);
    if qr != 0 || opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *b.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // No compression in a question; labels are at most 63 bytes.
        if len > 63 {
            return None;
        }
        let label = b.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
        if i > 12 + 255 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]);
    Some(Query {
        id: u16::from_be_bytes([b[0], b[1]]),
        name: labels.join("."),
        qtype,
        qclass,
        end: i + 4,
    })
}

/// The answer to `q` (asked in `req`): `addrs` as A records for an A (or ANY) question, no
/// records (but no error: the name exists) for other types; `rcode` 3 for a name we own that
/// does not exist, 2 for a failure.
pub fn response(req: &[u8], q: &Query, addrs: &[Ipv4Addr], rcode: u8, limit: usize) -> Vec<u8> {
    let rd = req[2] & 0x01;
    let answers: &[Ipv4Addr] =
        if rcode == 0 && q.qclass == CLASS_IN && matches!(q.qtype, TYPE_A | TYPE_ANY) {
            addrs
        } else {
            &[]
        };
    // What fits in `limit` bytes (512 over UDP without EDNS); the rest is left out with the
    // TC bit set, and the client asks again over TCP.
    let fit = (limit.saturating_sub(q.end) / 16).min(answers.len());
    let truncated = fit < answers.len();
    let answers = &answers[..fit];
    let mut out = Vec::with_capacity(q.end + answers.len() * 16);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, AA, TC when cut, RD copied; RA; rcode.
    out.push(0x84 | if truncated { 0x02 } else { 0 } | rd);
    out.push(0x80 | (rcode & 0xf));
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&req[12..q.end]);
    for a in answers {
        // A pointer to the question's name.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&a.octets());
    }
    out
}

/// The addresses `name` stands for, for a container on the networks `vnis`; `None` when the
/// name is not the cluster's (forward it).
pub fn lookup(view: &View, name: &str, vnis: &BTreeSet<u32>) -> Option<Vec<Ipv4Addr>> {
    let serving_on = |svc: &swarm_types::ServiceId| -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = view
            .tasks
            .iter()
            .filter(|t| t.serving && t.service_id == *svc)
            .flat_map(|t| t.addrs.iter().filter(|a| vnis.contains(&a.vni)))
            .map(|a| a.addr.addr)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let shares = |s: &swarm_types::discovery::ServiceView| {
        s.vips.iter().any(|(v, _)| vnis.contains(v))
            || view
                .tasks
                .iter()
                .any(|t| t.service_id == s.id && t.addrs.iter().any(|a| vnis.contains(&a.vni)))
            || s.aliases.iter().any(|(v, _)| vnis.contains(v))
    };
    let service_answer = |s: &swarm_types::discovery::ServiceView| match s.mode {
        EndpointMode::Vip => {
            let mut v: Vec<Ipv4Addr> = s
                .vips
                .iter()
                .filter(|(n, _)| vnis.contains(n))
                .map(|(_, a)| *a)
                .collect();
            v.sort();
            if v.is_empty() {
                // A service written before it had an endpoint (no VIP allocated until its
                // spec changes): its tasks, as dnsrr.
                serving_on(&s.id)
            } else {
                v
            }
        }
        EndpointMode::Dnsrr => serving_on(&s.id),
    };
    if let Some(rest) = name.strip_prefix("tasks.") {
        if let Some(s) = view.services.iter().find(|s| s.name == rest && shares(s)) {
            return Some(serving_on(&s.id));
        }
    }
    if let Some(s) = view.services.iter().find(|s| s.name == name && shares(s)) {
        return Some(service_answer(s));
    }
    if let Some(s) = view
        .services
        .iter()
        .find(|s| s.aliases.iter().any(|(v, a)| vnis.contains(v) && a == name))
    {
        return Some(service_answer(s));
    }
    // SERVICE.SLOT.TASKID
    let mut parts = name.splitn(3, '.');
    if let (Some(svc), Some(slot), Some(id)) = (parts.next(), parts.next(), parts.next()) {
        if let Some(s) = view.services.iter().find(|s| s.name == svc) {
            if let Some(t) = view
                .tasks
                .iter()
                .find(|t| t.service_id == s.id && t.slot.to_string() == slot && t.id.as_str() == id)
            {
                return Some(
                    t.addrs
                        .iter()
                        .filter(|a| vnis.contains(&a.vni))
                        .map(|a| a.addr.addr)
                        .collect(),
                );
            }
        }
    }
    None
}

/// The networks of the container with address `src` on network `vni` (all of them, so a
/// container on two networks resolves services on either).
fn client_networks(view: &View, vni: u32, src: Ipv4Addr) -> BTreeSet<u32> {
    let mut out: BTreeSet<u32> = view
        .tasks
        .iter()
        .find(|t| t.addrs.iter().any(|a| a.vni == vni && a.addr.addr == src))
        .map(|t| t.addrs.iter().map(|a| a.vni).collect())
        .unwrap_or_default();
    out.insert(vni);
    out
}

/// The host's resolvers (from `/etc/resolv.conf`; Docker's fallback when there are none).
pub fn upstream_servers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The tasks serving one network: UDP and TCP.
type Servers = [tokio::task::JoinHandle<()>; 2];

/// The sockets of this host's networks, each served by its own task.
pub struct Dns {
    view: watch::Receiver<Arc<View>>,
    upstream: Arc<Vec<SocketAddr>>,
    /// By gateway address: (VXLAN id, the tasks serving it over UDP and TCP).
    servers: std::sync::Mutex<BTreeMap<Ipv4Addr, (u32, Servers)>>,
}

impl Dns {
    pub fn new(view: watch::Receiver<Arc<View>>) -> Dns {
        let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Dns {
            view,
            upstream: Arc::new(upstream_servers(&conf)),
            servers: Default::default(),
        }
    }

    /// Serves exactly the networks `gateways` (gateway → VXLAN id): binds the new ones, stops
    /// the gone ones. A socket that cannot be bound is tried again on the next call.
    pub async fn sync(&self, gateways: &BTreeMap<Ipv4Addr, u32>) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.retain(|gw, (vni, tasks)| {
            let keep = gateways.get(gw) == Some(vni) && !tasks.iter().any(|t| t.is_finished());
            if !keep {
                tasks.iter().for_each(|t| t.abort());
            }
            keep
        });
        for (gw, vni) in gateways {
            if servers.contains_key(gw) {
                continue;
            }
            let bound = std::net::UdpSocket::bind((*gw, 53))
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .and_then(UdpSocket::from_std)
                .and_then(|u| {
                    let t = std::net::TcpListener::bind((*gw, 53))?;
                    t.set_nonblocking(true)?;
                    Ok((u, tokio::net::TcpListener::from_std(t)?))
                });
            let (udp, tcp) = match bound {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(gateway = %gw, error = %e, "DNS server not started on this network");
                    continue;
                }
            };
            let resolver = Resolver {
                vni: *vni,
                view: self.view.clone(),
                upstream: self.upstream.clone(),
            };
            let tasks = [
                tokio::spawn(serve(Arc::new(udp), resolver.clone())),
                tokio::spawn(serve_tcp(tcp, resolver)),
            ];
            servers.insert(*gw, (*vni, tasks));
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, tasks) in servers.values() {
            tasks.iter().for_each(|t| t.abort());
        }
    }
}

/// What one network's server answers from.
#[derive(Clone)]
struct Resolver {
    vni: u32,
    view: watch::Receiver<Arc<View>>,
    upstream: Arc<Vec<SocketAddr>>,
}

impl Resolver {
    /// The answer to one query from `src` (`limit`: the transport's size), or `None` for a
    /// message that is not a standard query (dropped, as resolvers do).
    async fn answer(&self, req: &[u8], src: Ipv4Addr, limit: usize) -> Option<Vec<u8>> {
        let q = parse_query(req)?;
        let answer = {
            let v = self.view.borrow();
            let nets = client_networks(&v, self.vni, src);
            lookup(&v, &q.name, &nets)
        };
        tracing::debug!(name = %q.name, from = %src, answers = ?answer.as_ref().map(|a| a.len()), "dns query");
        Some(match answer {
            Some(addrs) => response(req, &q, &addrs, 0, limit),
            None => forward(req, &self.upstream)
                .await
                .unwrap_or_else(|| response(req, &q, &[], 2, limit)),
        })
    }
}

async fn serve(sock: Arc<UdpSocket>, r: Resolver) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS receive failed");
                continue;
            }
        };
        let std::net::IpAddr::V4(src) = from.ip() else {
            continue;
        };
        let (req, sock, r) = (buf[..n].to_vec(), sock.clone(), r.clone());
        // Each query on its own: a forwarded one waits for the host's resolvers.
        tokio::spawn(async move {
            if let Some(out) = r.answer(&req, src, UDP_LIMIT).await {
                let _ = sock.send_to(&out, from).await;
            }
        });
    }
}

/// DNS over TCP (RFC 7766: two length bytes before each message), for answers that did not
/// fit a UDP datagram.
async fn serve_tcp(listener: tokio::net::TcpListener, r: Resolver) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut conn, from)) = listener.accept().await else {
            continue;
        };
        let std::net::IpAddr::V4(src) = from.ip() else {
            continue;
        };
        let r = r.clone();
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 2];
                match tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
                let mut req = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if conn.read_exact(&mut req).await.is_err() {
                    return;
                }
                let Some(out) = r.answer(&req, src, TCP_LIMIT).await else {
                    return;
                };
                let mut msg = (out.len() as u16).to_be_bytes().to_vec();
                msg.extend_from_slice(&out);
                if conn.write_all(&msg).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Asks the host's resolvers in turn; their first answer.
async fn forward(req: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(s) = UdpSocket::bind(bind).await else {
            continue;
        };
        if s.send_to(req, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) = tokio::time::timeout(FORWARD_TIMEOUT, s.recv_from(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests;
