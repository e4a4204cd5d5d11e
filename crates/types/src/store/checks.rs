//! The rules the store enforces on every write, whoever computed it: unique names, networks
//! that do not overlap, no address held twice, endpoints (virtual IPs, published ports) that
//! do not collide.

use super::*;

impl StoreState {
    /// Store-level network rules: network names, subnets and VXLAN ids are unique, and no
    /// two tasks hold one address on one network (whoever computed the write).
    pub(super) fn check_network_rules(&self, obj: &Object) -> Result<(), StoreError> {
        match obj {
            Object::Network(n) => {
                for o in self.networks.values().filter(|o| o.id != n.id) {
                    if o.spec.name == n.spec.name {
                        return Err(StoreError::NameConflict {
                            kind: "network".into(),
                            name: n.spec.name.clone(),
                            id: o.id.to_string(),
                        });
                    }
                    if o.subnet.overlaps(&n.subnet) {
                        return Err(StoreError::Conflict(format!(
                            "subnet {} overlaps subnet {} of network {}; choose another --subnet",
                            n.subnet, o.subnet, o.spec.name
                        )));
                    }
                    if o.vni == n.vni {
                        return Err(StoreError::Conflict(format!(
                            "VXLAN id {} is already used by network {}",
                            n.vni, o.spec.name
                        )));
                    }
                }
                Ok(())
            }
            Object::Task(t) => {
                for a in &t.networks {
                    let Some(net) = self.networks.get(&a.network_id) else {
                        return Err(StoreError::NotFound {
                            kind: "network".into(),
                            id: a.network_id.to_string(),
                        });
                    };
                    if !net.subnet.contains(a.address.addr) {
                        return Err(StoreError::Conflict(format!(
                            "address {} of task {} is outside network {}'s subnet {}",
                            a.address, t.id, net.spec.name, net.subnet
                        )));
                    }
                    if let Some(other) = self.address_holder(&a.network_id, a.address.addr) {
                        if *other != t.id {
                            return Err(StoreError::Conflict(format!(
                                "address {} on network {} is held by task {other}",
                                a.address.addr, net.spec.name
                            )));
                        }
                    }
                    if let Some(svc) = self.vip_holder(&a.network_id, a.address.addr) {
                        return Err(StoreError::Conflict(format!(
                            "address {} on network {} is the virtual IP of service {svc}",
                            a.address.addr, net.spec.name
                        )));
                    }
                }
                Ok(())
            }
            Object::Service(s) => self.check_endpoint(s),
            _ => Ok(()),
        }
    }

    /// A service's virtual IPs are on its networks and held by nobody else; its ingress
    /// ports (which every host binds) are published by no other service, and none of its
    /// host-mode ports is another service's ingress port.
    pub(super) fn check_endpoint(&self, s: &Service) -> Result<(), StoreError> {
        use crate::endpoint::PublishMode;
        for v in &s.endpoint.virtual_ips {
            let Some(net) = self.networks.get(&v.network_id) else {
                return Err(StoreError::NotFound {
                    kind: "network".into(),
                    id: v.network_id.to_string(),
                });
            };
            if !net.subnet.contains(v.addr.addr) {
                return Err(StoreError::Conflict(format!(
                    "virtual IP {} of service {} is outside network {}'s subnet {}",
                    v.addr, s.spec.name, net.spec.name, net.subnet
                )));
            }
            if let Some(t) = self.address_holder(&v.network_id, v.addr.addr) {
                return Err(StoreError::Conflict(format!(
                    "address {} on network {} is held by task {t}",
                    v.addr.addr, net.spec.name
                )));
            }
            if let Some(o) = self.vip_holder(&v.network_id, v.addr.addr) {
                if *o != s.id {
                    return Err(StoreError::Conflict(format!(
                        "address {} on network {} is the virtual IP of service {o}",
                        v.addr.addr, net.spec.name
                    )));
                }
            }
        }
        if s.endpoint.ports.is_empty() {
            return Ok(());
        }
        for o in self.services.values().filter(|o| o.id != s.id) {
            for p in &s.endpoint.ports {
                let clash = o.endpoint.ports.iter().any(|q| {
                    q.published == p.published
                        && q.protocol == p.protocol
                        && (q.mode == PublishMode::Ingress || p.mode == PublishMode::Ingress)
                });
                if clash {
                    return Err(StoreError::Conflict(format!(
                        "port {}/{} is already published by service {}; choose another published port",
                        p.published,
                        p.protocol.as_str(),
                        o.spec.name
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_name(&self, obj: &Object) -> Result<(), StoreError> {
        if let Object::Service(s) = obj {
            if let Some(other) = self.service_names.get(&s.spec.name) {
                if *other != s.id {
                    return Err(StoreError::NameConflict {
                        kind: "service".into(),
                        name: s.spec.name.clone(),
                        id: other.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}
