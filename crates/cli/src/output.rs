//! Output helpers: docker-style tables (tabwriter, 3-space padding), JSON lines, relative
//! times.

use std::io::Write;

/// Output format chosen by `--format`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" | "" => Ok(Format::Table),
            "json" | "{{json .}}" => Ok(Format::Json),
            other => Err(format!("unsupported format {other:?}: use table or json")),
        }
    }
}

/// Prints rows as a table with docker's alignment.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut tw = tabwriter::TabWriter::new(std::io::stdout()).padding(3);
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
