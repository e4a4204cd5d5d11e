//! Log records of the runc-style CLI: to `--log FILE` or stderr, text or JSON, as runc writes
//! them (containerd reads the file).

use super::*;

/// Log records, as runc writes them: to `--log FILE` (appended) or stderr, in logrus's text
/// format or, with `--log-format json`, one JSON object a line (`level`, `msg`, `time`).
pub(super) struct Logger {
    file: Option<File>,
    json: bool,
    debug: bool,
}

impl Logger {
    pub(super) fn open(g: &Globals) -> Result<Logger, CliError> {
        let file = match &g.log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| CliError::File {
                        path: p.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(Logger {
            file,
            json: g.log_json,
            debug: g.debug,
        })
    }

    pub(super) fn record(&self, level: &str, msg: &str) {
        let time = swarm_runtime::timefmt::rfc3339_now();
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        } else {
            let q = |s: &str| serde_json::Value::from(s).to_string();
            format!("time={} level={level} msg={}", q(&time), q(msg))
        };
        match &self.file {
            Some(f) => {
                let _ = writeln!(&*f, "{line}");
            }
            None => eprintln!("{line}"),
        }
    }

    pub(super) fn debug(&self, msg: impl FnOnce() -> String) {
        if self.debug {
            self.record("debug", &msg());
        }
    }

    /// The error is printed on stderr by `main` in any case; the log gets a record when it is
    /// a file (containerd reads the reason from there).
    pub(super) fn error(&self, msg: &str) {
        if self.file.is_some() {
            self.record("error", msg);
        }
    }
}
