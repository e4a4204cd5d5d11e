//! Output helpers: docker-style tables (tabwriter, 3-space padding), JSON lines, relative
//! times.

use clap::Args;
use std::io::Write;

/// Output format chosen by `--format`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    /// A Go-template-like line per object (`{{.Name}} {{.Replicas}}`); `table …` adds a
    /// header and aligns the columns.
    Template(crate::template::Template),
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" | "" => Ok(Format::Table),
            "json" | "{{json .}}" => Ok(Format::Json),
            t if t.contains("{{") => crate::template::Template::parse(t).map(Format::Template),
            other => Err(format!(
                "unsupported format {other:?}: use table, json, or a template such as '{{{{.Name}}}}\\t{{{{.Image}}}}'"
            )),
        }
    }
}

/// Prints objects as JSON lines or through a template (the two structured formats).
pub fn structured(f: &Format, objs: &[serde_json::Value]) -> anyhow::Result<()> {
    structured_to(&mut std::io::stdout(), f, objs)
}

/// [`structured`] into any writer.
pub fn structured_to(
    w: &mut dyn Write,
    f: &Format,
    objs: &[serde_json::Value],
) -> anyhow::Result<()> {
    match f {
        Format::Template(t) => {
            let lines = objs
                .iter()
                .map(|o| t.render(o))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if t.table {
                let mut tw = tabwriter::TabWriter::new(w).padding(3);
                writeln!(tw, "{}", t.header())?;
                for l in lines {
                    writeln!(tw, "{l}")?;
                }
                tw.flush()?;
            } else {
                for l in lines {
                    writeln!(w, "{l}")?;
                }
            }
            Ok(())
        }
        _ => {
            for o in objs {
                writeln!(w, "{o}")?;
            }
            Ok(())
        }
    }
}

/// Prints rows as a table with docker's alignment.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    table_to(&mut std::io::stdout(), header, rows)
}

/// [`table`] into any writer (tests render tables into memory).
pub fn table_to(w: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut tw = tabwriter::TabWriter::new(w).padding(3);
    writeln!(tw, "{}", header.join("\t"))?;
    for r in rows {
        writeln!(tw, "{}", r.join("\t"))?;
    }
    tw.flush()
}

/// Prints one JSON object per line.
pub fn json_lines(objs: &[serde_json::Value]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for o in objs {
        writeln!(out, "{o}")?;
    }
    Ok(())
}

/// Prints a pretty JSON array (the `inspect` format).
pub fn json_array<T: serde::Serialize>(objs: &[T]) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(objs)?);
    Ok(())
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let h = s / 3600;
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        _ if s < 46 * 60 => format!("{} minutes", s / 60),
        _ if s < 90 * 60 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// "3 seconds ago" for a unix-ms timestamp.
pub fn ago(unix_ms: u64) -> String {
    let now = swarm_api::now_ms();
    format!(
        "{} ago",
        human_duration(std::time::Duration::from_millis(
            now.saturating_sub(unix_ms)
        ))
    )
}

/// Capitalizes the first letter (docker prints "Ready", "Active", "Running").
pub fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn human_durations_match_docker() {
        assert_eq!(human_duration(Duration::from_secs(3)), "3 seconds");
        assert_eq!(human_duration(Duration::from_secs(70)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(title("ready"), "Ready");
    }
}

/// `--filter KEY=VALUE` flags of a list: a value of a key matches when any of that key's
/// values matches; all keys must match (Docker's rule).
#[derive(Debug, Default)]
pub struct Filters {
    pairs: Vec<(String, String)>,
}

impl Filters {
    /// Parses the flags, refusing keys this list does not filter on.
    pub fn parse(raw: &[String], allowed: &[&str]) -> anyhow::Result<Filters> {
        let mut pairs = Vec::new();
        for f in raw {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "filter {f:?} is not KEY=VALUE; this list filters on {}",
                    allowed.join(", ")
                )
            })?;
            if !allowed.contains(&k) {
                anyhow::bail!(
                    "unknown filter {k:?}; this list filters on {}",
                    allowed.join(", ")
                );
            }
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(Filters { pairs })
    }

    /// Whether an object passes: `m(key, value)` says whether it matches one pair.
    pub fn keep(&self, m: impl Fn(&str, &str) -> bool) -> bool {
        let mut keys: Vec<&str> = self.pairs.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|k| {
            self.pairs
                .iter()
                .filter(|(pk, _)| pk == k)
                .any(|(_, v)| m(k, v))
        })
    }
}

/// Docker's `reference` filter: a prefix, or a pattern where `*` matches any run of
/// characters.
pub fn pattern_matches(pattern: &str, s: &str) -> bool {
    if !pattern.contains('*') {
        return s.starts_with(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return p.is_empty() || rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

/// `label=KEY` or `label=KEY=VALUE` against a label map.
pub fn label_matches(labels: &std::collections::BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn filters_or_within_a_key_and_across_keys() {
        let f = Filters::parse(
            &["name=a".into(), "name=b".into(), "mode=global".into()],
            &["name", "mode"],
        )
        .unwrap();
        assert!(f.keep(|k, v| (k == "name" && v == "b") || (k == "mode" && v == "global")));
        assert!(!f.keep(|k, v| k == "name" && v == "b"));
        assert!(Filters::parse(&["color=red".into()], &["name"])
            .unwrap_err()
            .to_string()
            .contains("filters on name"));
        assert!(Filters::parse(&["name".into()], &["name"]).is_err());
        let labels = [("env".to_string(), "prod".to_string())].into();
        assert!(label_matches(&labels, "env"));
        assert!(label_matches(&labels, "env=prod"));
        assert!(!label_matches(&labels, "env=dev"));
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert!(pattern_matches("busy", "busybox:latest"));
        assert!(pattern_matches("*:latest", "busybox:latest"));
        assert!(pattern_matches("b*x:*", "busybox:v1"));
        assert!(!pattern_matches("*:v2", "busybox:v1"));
        assert_eq!(ellipsis("abc", 4), "abc");
    }
}

/// Output flags shared by list commands.
#[derive(Args, Debug, Clone)]
pub struct ListOutput {
    /// Only display IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output (KEY=VALUE; repeat a key for alternatives). Keys: service ls: id, name,
    /// label, mode; service/node ps: id, name, node, desired-state; node ls: id, name, role,
    /// membership, label, node.label; network ls: id, name, label, driver; registry ls: name,
    /// tag, dangling.
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Do not truncate output (full ids, whole error messages).
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: table, json, or a template ('{{.Name}}\t{{.ID}}'; 'table …' adds a header).
    #[arg(long, default_value = "table")]
    pub format: Format,
}
