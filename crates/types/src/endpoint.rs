//! How a service is reached (Docker's `EndpointSpec`): by a virtual IP per network or by
//! DNS round robin over its tasks, and on which ports of the cluster's hosts. This is what the
//! operator asks for; what the leader allocated for it (virtual IPs, published ports picked
//! from the dynamic range) is the service object's `Endpoint` (`objects.rs`).

use crate::error::SpecError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an unpublished (`published=0`) ingress port is taken from, as Docker does.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
/// Ports one service may publish.
pub const MAX_PORTS: usize = 64;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// One virtual IP per network, balanced over the running tasks.
    #[default]
    Vip,
    /// The service's name resolves to every running task's address.
    Dnsrr,
}

impl EndpointMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        match s {
            "vip" => Ok(EndpointMode::Vip),
            "dnsrr" => Ok(EndpointMode::Dnsrr),
            other => Err(SpecError::Endpoint(format!(
                "unknown endpoint mode {other:?}: use vip or dnsrr"
            ))),
        }
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// Every host of the cluster answers on the port (the routing mesh).
    #[default]
    Ingress,
    /// Only the hosts running a task answer, straight to that task.
    Host,
}

impl PublishMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        }
    }
}

/// Which hosts answer on an ingress port and where they send the traffic.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TrafficPolicy {
    /// Every host answers and spreads over all tasks (the client's address is replaced by
    /// the host's when the task runs elsewhere).
    #[default]
    Cluster,
    /// Only hosts with a task of the service answer, and only to their own tasks, so the task
    /// sees the client's real address (Kubernetes' `externalTrafficPolicy: Local`).
    Local,
}

/// One published port (`--publish published=8080,target=80,protocol=tcp,mode=ingress`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortConfig {
    #[serde(default)]
    pub protocol: Protocol,
    /// The port inside the container.
    pub target: u16,
    /// The port on the hosts; 0 = pick one from [`DYNAMIC_PORTS`] (ingress only).
    #[serde(default)]
    pub published: u16,
    #[serde(default)]
    pub mode: PublishMode,
    #[serde(default, skip_serializing_if = "is_cluster")]
    pub traffic: TrafficPolicy,
}

fn is_cluster(t: &TrafficPolicy) -> bool {
    *t == TrafficPolicy::Cluster
}

impl fmt::Display for PortConfig {
    /// Docker's `service ls` PORTS form: `*:8080->80/tcp` (ingress), `8080->80/tcp` (host).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let star = if self.mode == PublishMode::Ingress {
            "*:"
        } else {
            ""
        };
        write!(
            f,
            "{star}{}->{}/{}",
            self.published,
            self.target,
            self.protocol.as_str()
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    #[serde(default)]
    pub mode: EndpointMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
}

impl EndpointSpec {
    pub fn is_default(&self) -> bool {
        *self == EndpointSpec::default()
    }

    /// Checks what can be checked without the cluster: ports in range, no host port twice,
    /// no routing mesh for a service without a virtual IP (as Docker refuses it).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.ports.len() > MAX_PORTS {
            return Err(SpecError::TooMany {
                what: "published ports".into(),
                count: self.ports.len(),
                limit: MAX_PORTS,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.ports {
            if p.target == 0 {
                return Err(SpecError::Endpoint(
                    "a published port needs target=PORT: the port the container listens on (1-65535)".into(),
                ));
            }
            if p.mode == PublishMode::Host && p.published == 0 {
                return Err(SpecError::Endpoint(format!(
                    "port {}/{} in host mode needs published=PORT: host-mode ports are not picked for you",
                    p.target,
                    p.protocol.as_str()
                )));
            }
            if p.mode == PublishMode::Host && p.traffic == TrafficPolicy::Local {
                return Err(SpecError::Endpoint(
                    "traffic=local applies to ingress ports; a host-mode port only ever reaches its own host's task".into(),
                ));
            }
            if self.mode == EndpointMode::Dnsrr && p.mode == PublishMode::Ingress {
                return Err(SpecError::Endpoint(format!(
                    "port {} is published in ingress mode, which needs a virtual IP: use --endpoint-mode vip, or publish it with mode=host",
                    p.published.max(p.target)
                )));
            }
            if p.published != 0 && !seen.insert((p.published, p.protocol)) {
                return Err(SpecError::Endpoint(format!(
                    "port {}/{} is published twice",
                    p.published,
                    p.protocol.as_str()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(published: u16, target: u16, mode: PublishMode) -> PortConfig {
        PortConfig {
            published,
            target,
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn validation_refuses_what_cannot_work() {
        let spec = |mode, ports| EndpointSpec { mode, ports };
        let bad = [
            (
                spec(EndpointMode::Vip, vec![port(8080, 0, PublishMode::Ingress)]),
                "target",
            ),
            (
                spec(EndpointMode::Vip, vec![port(0, 80, PublishMode::Host)]),
                "host mode",
            ),
            (
                spec(
                    EndpointMode::Dnsrr,
                    vec![port(8080, 80, PublishMode::Ingress)],
                ),
                "virtual IP",
            ),
            (
                spec(
                    EndpointMode::Vip,
                    vec![
                        port(8080, 80, PublishMode::Ingress),
                        port(8080, 81, PublishMode::Host),
                    ],
                ),
                "twice",
            ),
        ];
        for (s, want) in bad {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} should mention {want}");
        }
        let mut udp = port(8080, 80, PublishMode::Ingress);
        udp.protocol = Protocol::Udp;
        spec(
            EndpointMode::Vip,
            vec![port(8080, 80, PublishMode::Ingress), udp],
        )
        .validate()
        .unwrap();
        spec(EndpointMode::Dnsrr, vec![port(8080, 80, PublishMode::Host)])
            .validate()
            .unwrap();
    }

    #[test]
    fn ports_print_as_docker_does() {
        assert_eq!(
            port(8080, 80, PublishMode::Ingress).to_string(),
            "*:8080->80/tcp"
        );
        assert_eq!(
            port(8080, 80, PublishMode::Host).to_string(),
            "8080->80/tcp"
        );
    }
}
