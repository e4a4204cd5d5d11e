//! Tests of endpoint allocation: virtual IPs and published ports.

use super::*;
use std::collections::BTreeMap;
use swarm_types::endpoint::EndpointSpec;
use swarm_types::network::{IpamSpec, NetworkDriver, NetworkSpec};
use swarm_types::objects::{Object, Service};
use swarm_types::spec::NetworkAttachmentConfig;
use swarm_types::store::{Op, WriteBatch};
use swarm_types::NetworkId;

fn store_with_network() -> StoreState {
    let mut s = StoreState::default();
    let spec = NetworkSpec {
        name: "front".into(),
        labels: BTreeMap::new(),
        driver: NetworkDriver::Overlay,
        ipam: IpamSpec {
            subnet: Some("10.9.0.0/29".parse().unwrap()),
            ..Default::default()
        },
        attachable: false,
        internal: false,
    };
    let n = crate::ipam::new_network(&s, NetworkId::new("front"), spec).unwrap();
    apply(&mut s, Op::Create(Object::Network(n)));
    s
}

fn apply(s: &mut StoreState, op: Op) {
    let index = s.count() as u64 + 100;
    s.apply(
        &WriteBatch {
            ops: vec![op],
            now_ms: 1,
        },
        index,
    )
    .unwrap();
}

fn service(name: &str, ports: Vec<PortConfig>) -> ServiceSpec {
    let mut spec = ServiceSpec::replicated(name, "web:1", 1);
    spec.task.networks = vec![NetworkAttachmentConfig {
        target: "front".into(),
        aliases: vec![],
    }];
    spec.endpoint = EndpointSpec {
        mode: EndpointMode::Vip,
        ports,
    };
    spec
}

fn create(s: &mut StoreState, name: &str, ports: Vec<PortConfig>) -> Result<Service, String> {
    let id = ServiceId::new(name);
    let spec = service(name, ports);
    let endpoint = allocate(s, &id, &spec, &Endpoint::default())?;
    let svc = Service {
        id,
        meta: Default::default(),
        spec,
        previous_spec: None,
        update_status: None,
        spec_history: vec![],
        spec_version: 1,
        endpoint: endpoint.into(),
        status: None,
    };
    apply(s, Op::Create(Object::Service(Box::new(svc.clone()))));
    Ok(svc)
}

fn ingress(published: u16, target: u16) -> PortConfig {
    PortConfig {
        published,
        target,
        ..Default::default()
    }
}

#[test]
fn every_service_gets_its_own_vip_until_the_range_is_full() {
    let mut s = store_with_network();
    // A /29: 8 addresses, minus network, broadcast and gateway = 5.
    let mut vips = std::collections::BTreeSet::new();
    for i in 0..5 {
        let svc = create(&mut s, &format!("s{i}"), vec![]).unwrap();
        assert_eq!(svc.endpoint.virtual_ips.len(), 1);
        assert!(vips.insert(svc.endpoint.virtual_ips[0].addr.addr));
    }
    let e = create(&mut s, "s5", vec![]).unwrap_err();
    assert!(e.contains("no free address"), "{e}");
    // A task is never handed a VIP.
    let net = s.networks.values().next().unwrap().clone();
    assert_eq!(crate::ipam::Addresses::new(&s).allocate(&net), None);
}

#[test]
fn an_update_keeps_the_vip_and_the_picked_ports() {
    let mut s = store_with_network();
    let svc = create(&mut s, "web", vec![ingress(0, 80), ingress(8080, 81)]).unwrap();
    assert_eq!(svc.endpoint.ports[0].published, *DYNAMIC_PORTS.start());
    assert_eq!(svc.endpoint.ports[1].published, 8080);
    let again = allocate(&s, &svc.id, &svc.spec, &svc.endpoint).unwrap();
    assert_eq!(again, *svc.endpoint);
    // Another service gets the next dynamic port, and cannot take 8080.
    let other = create(&mut s, "api", vec![ingress(0, 80)]).unwrap();
    assert_eq!(other.endpoint.ports[0].published, DYNAMIC_PORTS.start() + 1);
    let e = create(&mut s, "clash", vec![ingress(8080, 80)]).unwrap_err();
    assert!(e.contains("already published by service web"), "{e}");
    // dnsrr: no VIP.
    let mut spec = svc.spec.clone();
    spec.endpoint.mode = EndpointMode::Dnsrr;
    spec.endpoint.ports.clear();
    let e = allocate(&s, &svc.id, &spec, &svc.endpoint).unwrap();
    assert!(e.virtual_ips.is_empty());
}

#[test]
fn the_store_refuses_a_vip_or_port_held_by_another_service() {
    let mut s = store_with_network();
    let web = create(&mut s, "web", vec![ingress(8080, 80)]).unwrap();
    let mut copy = web.clone();
    copy.id = ServiceId::new("copy");
    copy.spec.name = "copy".into();
    let r = s.apply(
        &WriteBatch {
            ops: vec![Op::Create(Object::Service(Box::new(copy.clone())))],
            now_ms: 1,
        },
        9_999,
    );
    assert!(r.unwrap_err().to_string().contains("virtual IP"));
    copy.endpoint.virtual_ips.clear();
    let r = s.apply(
        &WriteBatch {
            ops: vec![Op::Create(Object::Service(Box::new(copy)))],
            now_ms: 1,
        },
        9_999,
    );
    assert!(r.unwrap_err().to_string().contains("already published"));
}
