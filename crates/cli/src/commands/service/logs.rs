//! `swarmctl service logs`: the lines of every task of a service (or of one task) on every
//! host, through the managers, prefixed like Docker's (`web.1.<task>@node | line`).
//!
//! With `-f` it keeps streaming through a manager failover: it reconnects and subscribes
//! again, skipping what it already printed (by time, per task).

use crate::client::{status_err, Context};
use clap::Args;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;
use swarm_api::control::{LogRecord, ServiceLogsRequest};
use swarm_api::dispatcher::LogOptions;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output: keep streaming new lines (and tasks that start later).
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of each task's log ("all" or a number).
    #[arg(short = 'n', long, default_value = "all", value_parser = parse_tail)]
    pub tail: i64,
    /// Show lines since a time: RFC 3339 (2026-12-03T10:00:00Z), a Unix timestamp, or a
    /// duration before now (42m, 2h).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<String>,
    /// Show lines before a time (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<String>,
    /// Show the time of each line (RFC 3339 with nanoseconds).
    #[arg(short, long)]
    pub timestamps: bool,
    /// Print the lines only, without the task and node prefix.
    #[arg(long)]
    pub raw: bool,
    /// Leave task ids out of the prefix.
    #[arg(long)]
    pub no_task_ids: bool,
    /// Do not truncate task ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// A service (name or id) or a task (id prefix).
    #[arg(value_name = "SERVICE|TASK")]
    pub target: String,
}

pub fn parse_tail(s: &str) -> Result<i64, String> {
    if s == "all" {
        return Ok(-1);
    }
    s.parse::<u32>()
        .map(i64::from)
        .map_err(|_| format!("{s:?} is neither \"all\" nor a number of lines"))
}

/// A time as the managers compare it: RFC 3339 UTC with nanoseconds.
pub fn parse_time(s: &str) -> Result<String, String> {
    crate::parse::time(s).map(|t| humantime::format_rfc3339_nanos(t).to_string())
}

/// How lines are printed.
struct Printer {
    timestamps: bool,
    raw: bool,
    task_ids: bool,
    no_trunc: bool,
}

impl Printer {
    fn line(&self, r: &LogRecord) -> String {
        let mut out = String::new();
        if self.timestamps {
            out.push_str(&r.time);
            out.push(' ');
        }
        if !self.raw {
            let id = if self.no_trunc {
                r.task_id.as_str()
            } else {
                &r.task_id[..r.task_id.len().min(12)]
            };
            if self.task_ids {
                out.push_str(&format!("{}.{id}@{}", r.task_name, r.node_name));
            } else {
                out.push_str(&format!("{}@{}", r.task_name, r.node_name));
            }
            out.push_str("    | ");
        }
        out.push_str(&String::from_utf8_lossy(&r.data));
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

pub async fn run(ctx: &Context, a: LogsArgs) -> anyhow::Result<()> {
    let printer = Printer {
        timestamps: a.timestamps,
        raw: a.raw,
        task_ids: !a.no_task_ids,
        no_trunc: a.no_trunc,
    };
    let req = ServiceLogsRequest {
        target: a.target.clone(),
        options: Some(LogOptions {
            follow: a.follow,
            tail: a.tail,
            since: a.since.clone().unwrap_or_default(),
            until: a.until.clone().unwrap_or_default(),
        }),
    };
    // Time of the last line printed per task: lines sent again after a reconnect are skipped.
    let mut last: HashMap<String, String> = HashMap::new();
    let mut failures = 0u32;
    loop {
        let res = stream_once(ctx, req.clone(), &printer, &mut last).await;
        match res {
            Ok(()) => return Ok(()),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Lost(e)) => {
                failures += 1;
                // Without follow a few retries; with follow until interrupted.
                if !a.follow && failures > 5 {
                    return Err(e.context("the log stream kept failing"));
                }
                eprintln!(
                    "{:#}; reconnecting to resume the logs",
                    ctx.explain(e).await
                );
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(4)))).await;
            }
        }
    }
}

enum Failure {
    /// Retrying cannot help (no such service, bad options).
    Fatal(anyhow::Error),
    /// The manager or the stream went away.
    Lost(anyhow::Error),
}

async fn stream_once(
    ctx: &Context,
    req: ServiceLogsRequest,
    printer: &Printer,
    last: &mut HashMap<String, String>,
) -> Result<(), Failure> {
    let mut client = ctx.control().await.map_err(Failure::Lost)?;
    let mut stream = match client.service_logs(req).await {
        Ok(s) => s.into_inner(),
        Err(s) => return Err(classify(s)),
    };
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(s) => return Err(classify(s)),
        };
        for w in &msg.warnings {
            eprintln!("warning: {w}");
        }
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        for r in &msg.records {
            if last.get(&r.task_id).is_some_and(|t| r.time <= *t) {
                continue;
            }
            last.insert(r.task_id.clone(), r.time.clone());
            let line = printer.line(r);
            let w: &mut dyn Write = if r.stream == "stderr" {
                &mut err
            } else {
                &mut out
            };
            if w.write_all(line.as_bytes()).is_err() {
                // Our reader went away (`| head`): stop quietly.
                return Ok(());
            }
        }
        let _ = out.flush();
    }
}

fn classify(s: tonic::Status) -> Failure {
    use tonic::Code;
    match s.code() {
        Code::NotFound | Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated => {
            Failure::Fatal(status_err(s))
        }
        _ => Failure::Lost(status_err(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_given_as_docker_accepts_them() {
        assert_eq!(
            parse_time("2026-12-03T09:00:00Z").unwrap(),
            "2026-12-03T09:00:00.000000000Z"
        );
        assert_eq!(parse_time("0").unwrap(), "1970-01-01T00:00:00.000000000Z");
        let e = parse_time("yesterday").unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
        assert_eq!(parse_tail("all").unwrap(), -1);
        assert_eq!(parse_tail("20").unwrap(), 20);
        assert!(parse_tail("-3").is_err());
    }

    #[test]
    fn lines_are_prefixed_like_docker() {
        let r = LogRecord {
            task_id: "abcdefghijklmnopq".into(),
            task_name: "web.1".into(),
            node_id: "n1".into(),
            node_name: "host1".into(),
            time: "2026-12-03T10:00:00.000000001Z".into(),
            stream: "stdout".into(),
            data: b"hello\n".to_vec(),
        };
        let p = |timestamps, raw, task_ids, no_trunc| Printer {
            timestamps,
            raw,
            task_ids,
            no_trunc,
        };
        assert_eq!(
            p(false, false, true, false).line(&r),
            "web.1.abcdefghijkl@host1    | hello\n"
        );
        assert_eq!(
            p(false, false, true, true).line(&r),
            "web.1.abcdefghijklmnopq@host1    | hello\n"
        );
        assert_eq!(
            p(false, false, false, false).line(&r),
            "web.1@host1    | hello\n"
        );
        assert_eq!(p(false, true, true, false).line(&r), "hello\n");
        assert_eq!(
            p(true, true, true, false).line(&r),
            "2026-12-03T10:00:00.000000001Z hello\n"
        );
    }
}
