//! Tests of the node's DNS server answers from discovery views (including property tests).

use super::*;
use proptest::prelude::*;
use swarm_types::discovery::{ServiceView, TaskAddr, TaskView};
use swarm_types::network::Ipv4Net;
use swarm_types::{NetworkId, NodeId, ServiceId, TaskId};

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        b.push(l.len() as u8);
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b
}

fn view() -> View {
    let t = |id: &str, slot, addr: [u8; 4], serving| TaskView {
        id: TaskId::new(id),
        service_id: ServiceId::new("s1"),
        slot,
        node_id: NodeId::new("n"),
        host: None,
        addrs: vec![TaskAddr {
            vni: 7,
            network_id: NetworkId::new("net"),
            addr: Ipv4Net::new(addr.into(), 24),
        }],
        serving,
        running: serving,
    };
    View {
        services: vec![ServiceView {
            id: ServiceId::new("s1"),
            name: "web".into(),
            mode: EndpointMode::Vip,
            vips: vec![(7, Ipv4Addr::new(10, 0, 0, 2))],
            ports: vec![],
            aliases: vec![(7, "www".into())],
        }],
        tasks: vec![
            t("t1", 1, [10, 0, 0, 5], true),
            t("t2", 2, [10, 0, 0, 6], true),
            t("t3", 3, [10, 0, 0, 7], false),
        ],
        hosts: vec![],
    }
}

#[test]
fn names_resolve_from_the_view() {
    let v = view();
    let on = BTreeSet::from([7]);
    let a = |n: [u8; 4]| Ipv4Addr::from(n);
    assert_eq!(lookup(&v, "web", &on), Some(vec![a([10, 0, 0, 2])]));
    assert_eq!(lookup(&v, "www", &on), Some(vec![a([10, 0, 0, 2])]));
    assert_eq!(
        lookup(&v, "tasks.web", &on),
        Some(vec![a([10, 0, 0, 5]), a([10, 0, 0, 6])])
    );
    assert_eq!(lookup(&v, "web.1.t1", &on), Some(vec![a([10, 0, 0, 5])]));
    assert_eq!(lookup(&v, "example.com", &on), None);
    // Not on the service's network: not ours.
    assert_eq!(lookup(&v, "web", &BTreeSet::from([8])), None);
    let mut rr = v.clone();
    rr.services[0].mode = EndpointMode::Dnsrr;
    assert_eq!(
        lookup(&rr, "web", &on),
        Some(vec![a([10, 0, 0, 5]), a([10, 0, 0, 6])])
    );
}

#[test]
fn answers_are_well_formed() {
    let req = query("Web", TYPE_A);
    let q = parse_query(&req).unwrap();
    assert_eq!(q.name, "web");
    let r = response(&req, &q, &[Ipv4Addr::new(10, 0, 0, 2)], 0, UDP_LIMIT);
    assert_eq!(&r[0..2], &[0x12, 0x34]);
    assert_eq!(r[2] & 0x80, 0x80, "a response");
    assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
    assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2]);
    // AAAA for a known name: no records, no error.
    let req = query("web", 28);
    let q = parse_query(&req).unwrap();
    let r = response(&req, &q, &[Ipv4Addr::new(10, 0, 0, 2)], 0, UDP_LIMIT);
    assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
    assert_eq!(r[3] & 0xf, 0);
}

#[test]
fn upstreams_come_from_resolv_conf() {
    let s = upstream_servers("# x\nnameserver 198.18.0.53\nsearch a\nnameserver ::1\n");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0], "198.18.0.53:53".parse().unwrap());
}

#[tokio::test]
async fn the_server_answers_cluster_names_and_forwards_the_rest() {
    // A fake upstream resolver that answers every query with its own marker.
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = upstream.recv_from(&mut buf).await {
            let mut reply = buf[..n].to_vec();
            reply.extend_from_slice(b"UPSTREAM");
            let _ = upstream.send_to(&reply, from).await;
        }
    });
    let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    let (_tx, rx) = watch::channel(Arc::new(view()));
    let r = Resolver {
        vni: 7,
        view: rx,
        upstream: Arc::new(vec![up_addr]),
    };
    let task = tokio::spawn(serve(server, r));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ask = |name: &'static str| {
        let client = &client;
        async move {
            client.send_to(&query(name, TYPE_A), addr).await.unwrap();
            let mut buf = [0u8; 512];
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            buf[..n].to_vec()
        }
    };
    let r = ask("web").await;
    assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2], "the VIP");
    let r = ask("example.com").await;
    assert!(r.ends_with(b"UPSTREAM"), "forwarded: {r:?}");
    task.abort();
}

/// A view where `web` runs `n` replicas.
fn big(n: u32) -> View {
    let mut v = view();
    let t = v.tasks[0].clone();
    v.tasks = (0..n)
        .map(|i| {
            let mut t = t.clone();
            t.id = TaskId::new(format!("t{i}"));
            t.addrs[0].addr = Ipv4Net::new(Ipv4Addr::from(0x0a00_1000 + i), 16);
            t
        })
        .collect();
    v
}

#[test]
fn an_answer_too_large_for_udp_is_cut_and_flagged() {
    let v = big(100);
    let addrs = lookup(&v, "tasks.web", &BTreeSet::from([7])).unwrap();
    assert_eq!(addrs.len(), 100);
    let req = query("tasks.web", TYPE_A);
    let q = parse_query(&req).unwrap();
    let r = response(&req, &q, &addrs, 0, UDP_LIMIT);
    assert!(r.len() <= UDP_LIMIT, "{} bytes", r.len());
    assert_eq!(r[2] & 0x02, 0x02, "TC set");
    let r = response(&req, &q, &addrs, 0, TCP_LIMIT);
    assert_eq!(r[2] & 0x02, 0, "whole over TCP");
    assert_eq!(u16::from_be_bytes([r[6], r[7]]), 100);
}

#[tokio::test]
async fn tcp_queries_get_whole_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = watch::channel(Arc::new(big(100)));
    let r = Resolver {
        vni: 7,
        view: rx,
        upstream: Arc::new(vec![]),
    };
    let task = tokio::spawn(serve_tcp(listener, r));
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        let q = query("tasks.web", TYPE_A);
        let mut msg = (q.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(&q);
        c.write_all(&msg).await.unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).await.unwrap();
        let mut out = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut out).await.unwrap();
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 100, "all 100 records");
    }
    task.abort();
}

proptest! {
    #[test]
    fn parsing_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Some(q) = parse_query(&b) {
            let _ = response(&b, &q, &[Ipv4Addr::LOCALHOST], 0, UDP_LIMIT);
        }
    }
}
