//! `swarmctl events`: cluster events (services, nodes, tasks, networks) as they are written,
//! or since a time from the manager's history. A lost connection is resumed from the last
//! event seen (cursors are the same on every manager): nothing is missed or printed twice
//! unless the manager says its history no longer reaches back that far.

use crate::client::{status_err, Context};
use crate::output::Format;
use clap::Args;
use std::time::{Duration, UNIX_EPOCH};
use swarm_api::control::EventsRequest;
use swarm_types::events::Event;

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show events since a time (RFC 3339, Unix timestamp, or a duration before now such as
    /// 10m), from what the manager keeps (its last 10,000 events), then live ones.
    #[arg(long, value_parser = parse_ms)]
    pub since: Option<u64>,
    /// Stop at this time (same forms as --since); without it, stream until interrupted.
    #[arg(long, value_parser = parse_ms)]
    pub until: Option<u64>,
    /// Filter: type=service|node|task|network, name=NAME (also matches a task's service),
    /// event=create|update|remove. Repeat a key for alternatives.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format: table (one line per event), json (one object per line), or a template
    /// over the JSON's fields ('{{.Type}} {{.Action}} {{.Actor.Attributes.name}}').
    #[arg(long, default_value = "table")]
    pub format: Format,
}

fn parse_ms(s: &str) -> Result<u64, String> {
    let t = crate::parse::time(s)?;
    Ok(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64)
}

fn request(a: &EventsArgs) -> anyhow::Result<EventsRequest> {
    let mut r = EventsRequest {
        since_ms: a.since.unwrap_or(0),
        until_ms: a.until.unwrap_or(0),
        ..Default::default()
    };
    for f in &a.filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("filter {f:?} is not KEY=VALUE (type=…, name=…, event=…)")
        })?;
        match k {
            "type" => r.types.push(v.to_string()),
            "name" | "service" | "node" => r.names.push(v.to_string()),
            "event" => r.actions.push(v.to_string()),
            _ => anyhow::bail!("unknown filter {k:?}: use type, name or event"),
        }
    }
    Ok(r)
}

/// Docker's line: `TIME TYPE ACTION ID (name=…, key=value…)`.
pub fn line(e: &Event) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(e.time_ms);
    let mut attrs = vec![format!("name={}", e.name)];
    attrs.extend(e.attributes.iter().map(|(k, v)| format!("{k}={v}")));
    format!(
        "{} {} {} {} ({})",
        humantime::format_rfc3339_nanos(t),
        e.kind,
        e.action,
        e.id,
        attrs.join(", ")
    )
}

/// Docker's JSON event, with our cursor.
fn json(e: &Event) -> serde_json::Value {
    let mut attrs = serde_json::Map::new();
    attrs.insert("name".into(), e.name.clone().into());
    for (k, v) in &e.attributes {
        attrs.insert(k.clone(), v.clone().into());
    }
    serde_json::json!({
        "Type": e.kind,
        "Action": e.action,
        "Actor": {"ID": e.id, "Attributes": attrs},
        "scope": "swarm",
        "time": e.time_ms / 1000,
        "timeNano": u128::from(e.time_ms) * 1_000_000,
        "index": e.cursor.index,
        "seq": e.cursor.seq,
    })
}

/// An error retrying cannot fix (a template that names a missing field).
#[derive(Debug)]
struct Fatal(String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

pub async fn run(ctx: &Context, a: EventsArgs) -> anyhow::Result<()> {
    let base = request(&a)?;
    // Where to resume after a lost connection: set by the first message, then by each event.
    let mut cursor: Option<(u64, u32)> = None;
    let mut failures = 0u32;
    loop {
        let mut req = base.clone();
        if let Some((i, s)) = cursor {
            req.resume = true;
            req.after_index = i;
            req.after_seq = s;
        }
        let err = match stream(ctx, req, &a.format, &mut cursor).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if err.downcast_ref::<Fatal>().is_some() {
            return Err(err);
        }
        if let Some(s) = err.downcast_ref::<tonic::Status>() {
            if s.code() == tonic::Code::InvalidArgument {
                return Err(status_err(s.clone()));
            }
        }
        failures += 1;
        eprintln!(
            "{:#}; reconnecting to resume the events",
            ctx.explain(err).await
        );
        tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(4)))).await;
    }
}

async fn stream(
    ctx: &Context,
    req: EventsRequest,
    format: &Format,
    cursor: &mut Option<(u64, u32)>,
) -> anyhow::Result<()> {
    let mut s = ctx.control().await?.events(req).await?.into_inner();
    while let Some(m) = s.message().await? {
        if !m.warning.is_empty() {
            eprintln!("warning: {}", m.warning);
        }
        if cursor.is_none() {
            *cursor = Some((m.position_index, m.position_seq));
        }
        if m.event.is_empty() {
            continue;
        }
        let e: Event = serde_json::from_slice(&m.event)?;
        *cursor = Some((e.cursor.index, e.cursor.seq));
        match format {
            Format::Json => println!("{}", json(&e)),
            Format::Template(t) => println!("{}", t.render(&json(&e)).map_err(Fatal)?),
            Format::Table => println!("{}", line(&e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_like_docker() {
        let e = Event {
            cursor: swarm_types::events::Cursor { index: 7, seq: 1 },
            time_ms: 1_796_292_000_123,
            kind: "service".into(),
            action: "update".into(),
            id: "abc".into(),
            name: "web".into(),
            attributes: [("image".to_string(), "web:2".to_string())].into(),
        };
        assert_eq!(
            line(&e),
            "2026-12-03T10:00:00.123000000Z service update abc (name=web, image=web:2)"
        );
        let j = json(&e);
        assert_eq!(j["Actor"]["Attributes"]["image"], "web:2");
        assert_eq!(j["Actor"]["Attributes"]["name"], "web");
        assert_eq!(j["index"], 7);
    }

    #[test]
    fn bad_filters_are_refused() {
        let a = |f: &str| EventsArgs {
            since: None,
            until: None,
            filters: vec![f.into()],
            format: Format::Table,
        };
        assert!(request(&a("type=service")).is_ok());
        assert!(request(&a("type"))
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
        assert!(request(&a("color=red"))
            .unwrap_err()
            .to_string()
            .contains("unknown filter"));
    }
}
