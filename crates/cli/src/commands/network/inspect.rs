//! `swarmctl network inspect [-v] NETWORK...`: a JSON array in Docker's shape (`Name`, `Id`,
//! `IPAM.Config[].Subnet`, ...); with `--verbose`, also `Services` as Docker's swarm-scope
//! verbose inspect shows them: each service on the network with its virtual IP and the
//! address of every task that holds one there.

use super::get_network;
use crate::client::{collect, status_err, Context};
use crate::output;
use clap::Args;
use serde_json::{json, Value};
use swarm_types::{Network, Object, Service, Task};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Network ids, id prefixes or names.
    #[arg(required = true)]
    pub networks: Vec<String>,
    /// Also show the services on each network, their virtual IPs and their tasks' addresses.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Docker's scope of a network: overlay networks span the swarm, bridge ones a host.
pub fn scope(n: &Network) -> &'static str {
    match n.spec.driver {
        swarm_types::network::NetworkDriver::Overlay => "swarm",
        swarm_types::network::NetworkDriver::Bridge => "local",
    }
}

/// Creation time in Docker's RFC 3339 form.
pub fn created(n: &Network) -> String {
    let ms = n.meta.created_at;
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

pub fn docker_view(n: &Network) -> Value {
    let mut cfg = json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()});
    if n.ip_range != n.subnet {
        cfg["IPRange"] = json!(n.ip_range.to_string());
    }
    let mut options = serde_json::Map::new();
    if n.spec.driver == swarm_types::network::NetworkDriver::Overlay {
        options.insert(
            "com.docker.network.driver.overlay.vxlanid_list".into(),
            json!(n.vni.to_string()),
        );
    }
    json!({
        "Name": n.spec.name,
        "Id": n.id.as_str(),
        "Created": created(n),
        "Scope": scope(n),
        "Driver": n.spec.driver.as_str(),
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": [cfg]},
        "Internal": n.spec.internal,
        "Attachable": n.spec.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": null,
        "Options": options,
        "Labels": n.spec.labels,
        "Version": n.meta.version,
    })
}

/// Docker's verbose `Services` of network `n`: by service name, its `VIP` on `n` and the
/// `Tasks` holding an address there (`Name`, `EndpointIP`, `Info.Node`, `Info.State`).
pub fn services_view(n: &Network, services: &[Service], tasks: &[Task]) -> Value {
    let mut out = serde_json::Map::new();
    for svc in services {
        let mut on: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.service_id == svc.id)
            .filter(|t| t.networks.iter().any(|a| a.network_id == n.id))
            .collect();
        let vip = svc
            .endpoint
            .virtual_ips
            .iter()
            .find(|v| v.network_id == n.id)
            .map(|v| v.addr.addr.to_string());
        if on.is_empty() && vip.is_none() {
            continue;
        }
        on.sort_by_key(|t| (t.slot, t.id.to_string()));
        let tasks: Vec<Value> = on
            .iter()
            .map(|t| {
                let addr = t
                    .networks
                    .iter()
                    .find(|a| a.network_id == n.id)
                    .map(|a| a.address.addr.to_string())
                    .unwrap_or_default();
                json!({
                    "Name": format!(
                        "{}.{}",
                        crate::commands::service::ps::task_name(&svc.spec.name, t),
                        t.id
                    ),
                    "EndpointIP": addr,
                    "Info": {
                        "Node": t.node_id.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                        "State": t.status.state.as_str(),
                    },
                })
            })
            .collect();
        out.insert(
            svc.spec.name.clone(),
            json!({"VIP": vip.unwrap_or_default(), "Tasks": tasks}),
        );
    }
    Value::Object(out)
}

pub async fn run(ctx: &Context, a: InspectArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let (services, tasks) = if a.verbose {
        let mut c = ctx.control().await?;
        let objs = collect(
            c.list_services(ctx.list_request())
                .await
                .map_err(status_err)?
                .into_inner(),
        )
        .await?;
        let services: Vec<Service> = objs
            .into_iter()
            .filter_map(|o| match o {
                Object::Service(s) => Some(*s),
                _ => None,
            })
            .collect();
        (
            services,
            crate::commands::service::ps::list(ctx, "", "").await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    for r in &a.networks {
        let n = get_network(ctx, r).await?;
        let mut v = docker_view(&n);
        if a.verbose {
            v["Services"] = services_view(&n, &services, &tasks);
        }
        out.push(v);
    }
    output::json_array(&out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_is_rfc3339() {
        let mut n = swarm_types::Network {
            id: swarm_types::NetworkId::new("n"),
            meta: Default::default(),
            spec: swarm_types::network::NetworkSpec {
                name: "n".into(),
                labels: Default::default(),
                driver: Default::default(),
                ipam: Default::default(),
                attachable: false,
                internal: false,
            },
            subnet: "10.0.0.0/24".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            ip_range: "10.0.0.0/24".parse().unwrap(),
            vni: 4097,
        };
        n.meta.created_at = 1_764_689_338_123;
        assert_eq!(super::created(&n), "2025-12-02T15:28:58.123Z");
    }
}
