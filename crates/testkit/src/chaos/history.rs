//! The history a run records: every client operation with when it started and ended (since
//! the run began) and what came of it. Outcomes follow the API's promises: `Fail` only when
//! the error says the write certainly did not apply, `Unknown` for everything that may have
//! (timeouts, transport errors, "outcome unknown").

use std::time::Duration;
use swarm_types::spec::{ServiceMode, ServiceSpec};

/// What the checker models of a service: its spec seen as a register. `w` is the unique id of
/// the write that produced it (a service label), `gen` the task template generation (an
/// environment variable: changing it starts a rolling update).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Value {
    pub w: String,
    pub replicas: u64,
    pub gen: String,
}

pub const LABEL: &str = "chaos.w";
pub const GEN_ENV: &str = "CHAOS_GEN";

impl Value {
    /// Reads the modelled fields from a spec.
    pub fn of(spec: &ServiceSpec) -> Value {
        Value {
            w: spec.labels.get(LABEL).cloned().unwrap_or_default(),
            replicas: match spec.mode {
                ServiceMode::Replicated { replicas } => replicas,
                _ => 0,
            },
            gen: spec
                .task
                .container
                .env
                .iter()
                .find_map(|e| e.strip_prefix(&format!("{GEN_ENV}=")).map(str::to_string))
                .unwrap_or_default(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({"w": self.w, "replicas": self.replicas, "gen": self.gen})
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Create(Value),
    /// Full spec replacement (`service update` based on the latest version).
    Update(Value),
    Scale(u64),
    Remove,
    /// Linearizable `service inspect`.
    Read,
}

impl Input {
    pub fn is_write(&self) -> bool {
        !matches!(self, Input::Read)
    }
    pub fn name(&self) -> &'static str {
        match self {
            Input::Create(_) => "create",
            Input::Update(_) => "update",
            Input::Scale(_) => "scale",
            Input::Remove => "remove",
            Input::Read => "read",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; a read carries what it saw (`None`: no such service).
    Ok(Option<Value>),
    /// Certainly not applied (validation, not found, conflict, "no quorum", "nothing was
    /// written").
    Fail(String),
    /// May or may not have applied.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub id: u64,
    pub client: usize,
    /// The service name (the register).
    pub key: String,
    /// Hostname of the manager the request went to.
    pub via: String,
    pub input: Input,
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

impl Op {
    pub fn json(&self) -> serde_json::Value {
        let (outcome, detail) = match &self.outcome {
            Outcome::Ok(v) => ("ok", v.as_ref().map(Value::json).unwrap_or_default()),
            Outcome::Fail(e) => ("fail", serde_json::Value::String(e.clone())),
            Outcome::Unknown(e) => ("unknown", serde_json::Value::String(e.clone())),
        };
        let input = match &self.input {
            Input::Create(v) | Input::Update(v) => v.json(),
            Input::Scale(r) => serde_json::json!({ "replicas": r }),
            Input::Remove | Input::Read => serde_json::Value::Null,
        };
        serde_json::json!({
            "id": self.id, "client": self.client, "key": self.key, "via": self.via,
            "op": self.input.name(), "input": input,
            "start_ms": self.start.as_secs_f64() * 1e3, "end_ms": self.end.as_secs_f64() * 1e3,
            "outcome": outcome, "result": detail,
        })
    }

    /// One line for humans: `[  12.345-  12.400] c2 via n1 update k1 {..} -> ok`.
    pub fn line(&self) -> String {
        let input = match &self.input {
            Input::Create(v) | Input::Update(v) => {
                format!("w={} r={} gen={}", v.w, v.replicas, v.gen)
            }
            Input::Scale(r) => format!("r={r}"),
            Input::Remove | Input::Read => String::new(),
        };
        let out = match &self.outcome {
            Outcome::Ok(Some(v)) => format!("ok w={} r={} gen={}", v.w, v.replicas, v.gen),
            Outcome::Ok(None) if self.input == Input::Read => "ok absent".into(),
            Outcome::Ok(None) => "ok".into(),
            Outcome::Fail(e) => format!("FAIL {}", short(e)),
            Outcome::Unknown(e) => format!("UNKNOWN {}", short(e)),
        };
        format!(
            "[{:9.3}-{:9.3}] #{} c{} via {} {} {} {} -> {}",
            self.start.as_secs_f64(),
            self.end.as_secs_f64(),
            self.id,
            self.client,
            self.via,
            self.input.name(),
            self.key,
            input,
            out
        )
    }
}

fn short(s: &str) -> String {
    let s = s.replace('\n', " ");
    if s.len() > 160 {
        let mut n = 160;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        format!("{}…", &s[..n])
    } else {
        s
    }
}

/// Sorts a gRPC result into the three outcomes. `read` requests turn "not found" into an
/// observation (the service is absent).
pub fn classify(status: &tonic::Status, read: bool) -> Outcome {
    use tonic::Code;
    let msg = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::NotFound if read => Outcome::Ok(None),
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::PermissionDenied
        | Code::ResourceExhausted => Outcome::Fail(msg),
        // The manager's promises: "no quorum …" and "… nothing was written" were refused before
        // reaching a log. Any other unavailability (a connection that broke mid-call) may have
        // applied.
        Code::Unavailable
            if status.message().starts_with("no quorum")
                || status.message().contains("nothing was written") =>
        {
            Outcome::Fail(msg)
        }
        _ => Outcome::Unknown(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_api_promises() {
        let s = |c, m: &str| tonic::Status::new(c, m);
        assert_eq!(
            classify(&s(tonic::Code::NotFound, "service x not found"), true),
            Outcome::Ok(None)
        );
        assert!(matches!(
            classify(&s(tonic::Code::NotFound, "service x not found"), false),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            classify(&s(tonic::Code::Unavailable, "no quorum: 1 of 3"), false),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            classify(
                &s(tonic::Code::DeadlineExceeded, "outcome unknown: the write"),
                false
            ),
            Outcome::Unknown(_)
        ));
        assert!(matches!(
            classify(&s(tonic::Code::Unavailable, "transport error"), false),
            Outcome::Unknown(_)
        ));
    }

    #[test]
    fn value_reads_label_replicas_and_generation() {
        let mut spec = ServiceSpec::replicated("a", "busybox", 3);
        spec.labels.insert(LABEL.into(), "c1-7".into());
        spec.task.container.env.push(format!("{GEN_ENV}=g2"));
        assert_eq!(
            Value::of(&spec),
            Value {
                w: "c1-7".into(),
                replicas: 3,
                gen: "g2".into()
            }
        );
    }
}
