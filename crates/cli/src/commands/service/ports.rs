//! `--publish` values in Docker's two syntaxes (`8080:80/udp`, or
//! `published=8080,target=80,protocol=udp,mode=host`), plus `traffic=local`, and the
//! `--publish-rm` match.

use swarm_types::endpoint::{PortConfig, Protocol, PublishMode, TrafficPolicy};

fn port_number(what: &str, v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid {what} port {v:?}: expected a number from 1 to 65535"
        )),
    }
}

fn protocol(v: &str) -> Result<Protocol, String> {
    match v {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("invalid protocol {other:?}: use tcp or udp")),
    }
}

/// One `--publish` value.
pub fn parse_publish(s: &str) -> Result<PortConfig, String> {
    let mut p = PortConfig::default();
    if !s.contains('=') {
        // [PUBLISHED:]TARGET[/PROTOCOL]
        let (ports, proto) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        if let Some(proto) = proto {
            p.protocol = protocol(proto)?;
        }
        match ports.split_once(':') {
            Some((published, target)) => {
                if published.contains(':') || target.contains(':') {
                    return Err(format!(
                        "invalid --publish {s:?}: a host address cannot be given (every host of the cluster answers); use PUBLISHED:TARGET[/PROTOCOL]"
                    ));
                }
                p.published = port_number("published", published)?;
                p.target = port_number("target", target)?;
            }
            None => p.target = port_number("target", ports)?,
        }
        return Ok(p);
    }
    for field in s.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| {
            format!("invalid --publish field {field:?}: expected KEY=VALUE (published, target, protocol, mode, traffic)")
        })?;
        match k.trim() {
            "published" => p.published = port_number("published", v)?,
            "target" => p.target = port_number("target", v)?,
            "protocol" => p.protocol = protocol(v)?,
            "mode" => {
                p.mode = match v {
                    "ingress" => PublishMode::Ingress,
                    "host" => PublishMode::Host,
                    other => return Err(format!("invalid publish mode {other:?}: use ingress or host")),
                }
            }
            "traffic" => {
                p.traffic = match v {
                    "cluster" => TrafficPolicy::Cluster,
                    "local" => TrafficPolicy::Local,
                    other => {
                        return Err(format!(
                            "invalid traffic policy {other:?}: use cluster (every host answers) or local (only hosts with a task, keeping the client's address)"
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "unknown --publish field {other:?}: expected published, target, protocol, mode or traffic"
                ))
            }
        }
    }
    if p.target == 0 {
        return Err(format!("invalid --publish {s:?}: target=PORT is required"));
    }
    Ok(p)
}

/// `--publish-rm PORT[/PROTOCOL]`: the published port (or, for one published without a
/// number, its target port).
pub fn parse_publish_rm(s: &str) -> Result<(u16, Protocol), String> {
    let (port, proto) = match s.split_once('/') {
        Some((a, b)) => (a, protocol(b)?),
        None => (s, Protocol::Tcp),
    };
    Ok((port_number("published", port)?, proto))
}

/// Whether `p` is what `--publish-rm` names (`allocated`: the number the cluster picked).
pub fn matches_rm(p: &PortConfig, rm: (u16, Protocol)) -> bool {
    p.protocol == rm.1 && (p.published == rm.0 || (p.published == 0 && p.target == rm.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_syntaxes_parse() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            (p.published, p.target, p.protocol),
            (8080, 80, Protocol::Tcp)
        );
        let p = parse_publish("53:53/udp").unwrap();
        assert_eq!(p.protocol, Protocol::Udp);
        let p = parse_publish("80").unwrap();
        assert_eq!((p.published, p.target), (0, 80));
        let p = parse_publish("published=8080,target=80,mode=host").unwrap();
        assert_eq!(p.mode, PublishMode::Host);
        let p = parse_publish("published=8080,target=80,traffic=local").unwrap();
        assert_eq!(p.traffic, TrafficPolicy::Local);
        for bad in [
            "0:80",
            "8080:",
            "x:80",
            "8080:80/sctp",
            "127.0.0.1:8080:80",
            "published=8080",
            "published=8080,target=80,mode=bridge",
            "published=8080,target=80,color=red",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn publish_rm_names_a_published_port() {
        assert_eq!(parse_publish_rm("8080").unwrap(), (8080, Protocol::Tcp));
        assert_eq!(parse_publish_rm("53/udp").unwrap(), (53, Protocol::Udp));
        assert!(parse_publish_rm("x").is_err());
    }
}
