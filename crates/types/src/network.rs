//! Networks: the spec of a `Network` (a named IPv4 subnet that tasks attach to, host-local
//! `bridge` or cluster-wide `overlay`; the object itself is in `objects.rs`) and its
//! validation, IPv4 prefixes, and what a task carries about each network it is attached to
//! (its address and everything a node needs to plumb it without reading the store). Imports
//! `spec` (name and label rules), never `objects`.

use crate::error::SpecError;
use crate::ids::NetworkId;
use crate::limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address with a prefix length (`10.0.1.0/24`, or an interface address
/// `10.0.1.5/24`). Serialized as that string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        Ipv4Net {
            addr,
            prefix: prefix.min(32),
        }
    }
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
    /// The first address (host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    /// The last address (host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    /// This prefix with its host bits cleared.
    pub fn trunc(&self) -> Ipv4Net {
        Ipv4Net::new(self.network(), self.prefix)
    }
    /// How many addresses the prefix spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.network())
    }
    /// Whether `other` lies entirely inside this prefix.
    pub fn covers(&self, other: &Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid IPv4 prefix {:?}: expected ADDRESS/LENGTH, e.g. 10.0.1.0/24",
                limits::echo(s)
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 || p.starts_with('+') {
            return Err(bad());
        }
        Ok(Ipv4Net { addr, prefix })
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// IPv4 addresses travel as strings in every encoding: std's serde writes them as strings to
/// JSON but as 4-tuples to binary formats, and the MessagePack of the Raft log could not read
/// those back.
pub(crate) mod addr_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::Ipv4Addr;
    pub fn serialize<S: Serializer>(a: &Ipv4Addr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
    pub mod opt {
        use super::*;
        pub fn serialize<S: Serializer>(a: &Option<Ipv4Addr>, s: S) -> Result<S::Ok, S::Error> {
            match a {
                Some(a) => s.collect_str(a),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|v| v.parse().map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// How a network is realised on the hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetworkDriver {
    /// One Linux bridge per host; tasks on different hosts do not reach each other.
    Bridge,
    /// The per-host bridges joined by VXLAN: one layer-2 segment across the cluster.
    #[default]
    Overlay,
}

impl NetworkDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkDriver::Bridge => "bridge",
            NetworkDriver::Overlay => "overlay",
        }
    }
}

impl FromStr for NetworkDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" => Ok(NetworkDriver::Bridge),
            "overlay" => Ok(NetworkDriver::Overlay),
            other => Err(format!(
                "unknown network driver {:?}: use bridge or overlay",
                limits::echo(other)
            )),
        }
    }
}

/// Addresses asked for by the operator; what is not given is allocated from the cluster's
/// default address pools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IpamSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Net>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "addr_str::opt"
    )]
    pub gateway: Option<Ipv4Addr>,
    /// Task addresses come from this part of the subnet only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub driver: NetworkDriver,
    #[serde(default)]
    pub ipam: IpamSpec,
    /// Standalone containers may attach (recorded; this cluster runs services only).
    #[serde(default)]
    pub attachable: bool,
    /// No route out of the network: its tasks reach only each other.
    #[serde(default)]
    pub internal: bool,
}

/// The smallest subnet a network may have: its network and broadcast addresses, the gateway
/// and at least one task.
pub const MAX_PREFIX_LEN: u8 = 30;
/// The largest: a /8 holds 16 million tasks, far more than a cluster runs.
pub const MIN_PREFIX_LEN: u8 = 8;

impl NetworkSpec {
    /// Checks everything that can be checked without looking at the cluster.
    pub fn validate(&self) -> Result<(), SpecError> {
        let net = |m: String| Err(SpecError::Network(m));
        crate::names::validate_name(&self.name).map_err(|e| match e {
            SpecError::Name { name, reason } => {
                SpecError::Network(format!("invalid network name {name:?}: {reason}"))
            }
            e => e,
        })?;
        if crate::names::PREDEFINED_NETWORKS.contains(&self.name.as_str()) {
            return net(format!(
                "network name {} is reserved (Docker's predefined networks none, bridge and host: `--network {}` on a service means that, not a cluster network); choose another name",
                self.name, self.name
            ));
        }
        limits::check_labels("network", &self.labels)?;
        crate::names::validate_labels(&self.labels)?;
        let ipam = &self.ipam;
        if let Some(s) = ipam.subnet {
            if s.addr != s.network() {
                return net(format!(
                    "invalid subnet {s}: it has host bits set; did you mean {}?",
                    s.trunc()
                ));
            }
            if s.prefix > MAX_PREFIX_LEN || s.prefix < MIN_PREFIX_LEN {
                return net(format!(
                    "invalid subnet {s}: the prefix length must be between /{MIN_PREFIX_LEN} and /{MAX_PREFIX_LEN}"
                ));
            }
            if let Some(g) = ipam.gateway {
                if !s.contains(g) || g == s.network() || g == s.broadcast() {
                    return net(format!(
                        "invalid gateway {g}: it must be a host address inside the subnet {s}"
                    ));
                }
            }
            if let Some(r) = ipam.ip_range {
                if r.addr != r.network() {
                    return net(format!(
                        "invalid ip range {r}: it has host bits set; did you mean {}?",
                        r.trunc()
                    ));
                }
                if !s.covers(&r) {
                    return net(format!(
                        "invalid ip range {r}: it must lie inside the subnet {s}"
                    ));
                }
            }
        } else if ipam.gateway.is_some() || ipam.ip_range.is_some() {
            return net(
                "--gateway and --ip-range need --subnet: give the subnet they belong to".into(),
            );
        }
        Ok(())
    }
}

/// A task's place on one network: its address, and the network's settings a node needs to
/// plumb it (copied from the `Network` when the address is allocated, as SwarmKit does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    pub network_id: NetworkId,
    pub network_name: String,
    pub driver: NetworkDriver,
    /// The task's address with the subnet's prefix length (`10.0.1.5/24`).
    pub address: Ipv4Net,
    #[serde(with = "addr_str")]
    pub gateway: Ipv4Addr,
    pub vni: u32,
    #[serde(default)]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl NetworkAttachment {
    /// The MAC address of the task's interface, derived from its address as Docker does
    /// (02:42 + the four bytes), so every node knows a peer's MAC from the store alone.
    pub fn mac(&self) -> [u8; 6] {
        let o = self.address.addr.octets();
        [0x02, 0x42, o[0], o[1], o[2], o[3]]
    }
}

/// Formats a MAC address as `02:42:0a:00:01:05`.
pub fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{validate_attachments, NetworkAttachmentConfig};

    fn spec(subnet: Option<&str>, gw: Option<&str>, range: Option<&str>) -> NetworkSpec {
        NetworkSpec {
            name: "net".into(),
            labels: Default::default(),
            driver: NetworkDriver::Overlay,
            ipam: IpamSpec {
                subnet: subnet.map(|s| s.parse().unwrap()),
                gateway: gw.map(|s| s.parse().unwrap()),
                ip_range: range.map(|s| s.parse().unwrap()),
            },
            attachable: false,
            internal: false,
        }
    }

    #[test]
    fn predefined_names_are_reserved() {
        for n in ["none", "bridge", "host"] {
            let mut s = spec(None, None, None);
            s.name = n.into();
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains("is reserved"), "{e}");
        }
    }

    #[test]
    fn prefixes_parse_print_and_compare() {
        let n: Ipv4Net = "10.0.1.0/24".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.1.0/24");
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 0, 1, 255));
        assert!(n.contains(Ipv4Addr::new(10, 0, 1, 7)));
        assert!(!n.contains(Ipv4Addr::new(10, 0, 2, 7)));
        let big: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        assert!(big.covers(&n) && !n.covers(&big) && n.overlaps(&big));
        assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Net>().is_err());
        assert!("x/8".parse::<Ipv4Net>().is_err());
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"10.0.1.0/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>(&json).unwrap(), n);
    }

    #[test]
    fn bad_ipam_settings_are_refused_with_the_reason() {
        let e = |s: NetworkSpec| s.validate().unwrap_err().to_string();
        assert!(e(spec(Some("10.0.1.1/24"), None, None)).contains("did you mean 10.0.1.0/24"));
        assert!(e(spec(Some("10.0.0.0/31"), None, None)).contains("/30"));
        assert!(e(spec(Some("10.0.1.0/24"), Some("10.0.2.1"), None)).contains("inside the subnet"));
        assert!(e(spec(Some("10.0.1.0/24"), Some("10.0.1.255"), None)).contains("host address"));
        assert!(e(spec(Some("10.0.1.0/24"), None, Some("10.0.0.0/25"))).contains("inside"));
        assert!(e(spec(None, Some("10.0.1.1"), None)).contains("need --subnet"));
        spec(Some("10.0.0.0/16"), Some("10.0.0.1"), Some("10.0.1.0/24"))
            .validate()
            .unwrap();
        let mut bad = spec(None, None, None);
        bad.name = "-x".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("network name"));
    }

    #[test]
    fn attachments_refuse_duplicates_and_bad_aliases() {
        let a = |t: &str, al: &[&str]| NetworkAttachmentConfig {
            target: t.into(),
            aliases: al.iter().map(|s| s.to_string()).collect(),
        };
        assert!(validate_attachments(&[a("x", &[]), a("x", &[])]).is_err());
        assert!(validate_attachments(&[a("x", &["bad alias"])]).is_err());
        validate_attachments(&[a("x", &["db"]), a("y", &[])]).unwrap();
    }

    #[test]
    fn mac_is_derived_from_the_address() {
        let att = NetworkAttachment {
            network_id: NetworkId::new("n"),
            network_name: "n".into(),
            driver: NetworkDriver::Overlay,
            address: "10.0.1.5/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 1, 1),
            vni: 4097,
            internal: false,
            aliases: vec![],
        };
        assert_eq!(mac_string(att.mac()), "02:42:0a:00:01:05");
    }
}
