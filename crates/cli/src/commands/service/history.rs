//! `swarmctl service history SERVICE` (our extension; docker keeps only the previous spec):
//! the kept spec versions, newest first, with what each changed into the next one.

use super::get_service;
use crate::client::Context;
use crate::output::{self, Format};
use clap::Args;
use serde_json::json;
use swarm_types::spec::{ServiceMode, ServiceSpec};

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Output format: table, json, or a template ('{{.Name}}\t{{.ID}}'; 'table …' adds a header).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Service id, id prefix or name.
    pub service: String,
}

fn replicas_of(m: &ServiceMode) -> String {
    match m {
        ServiceMode::Replicated { replicas } => replicas.to_string(),
        other => other.name().to_string(),
    }
}

/// A short description of what changed from `old` to `new` ("image a → b, replicas 3 → 5,
/// env"); "no change" when the specs are equal.
pub fn change_summary(old: &ServiceSpec, new: &ServiceSpec) -> String {
    let mut out: Vec<String> = Vec::new();
    let (a, b) = (&old.task.container, &new.task.container);
    if a.image != b.image {
        out.push(format!("image {} → {}", a.image, b.image));
    }
    if old.mode != new.mode {
        if std::mem::discriminant(&old.mode) == std::mem::discriminant(&new.mode)
            && matches!(old.mode, ServiceMode::Replicated { .. })
        {
            out.push(format!(
                "replicas {} → {}",
                replicas_of(&old.mode),
                replicas_of(&new.mode)
            ));
        } else {
            out.push("mode".into());
        }
    }
    let mut flag = |changed: bool, what: &str| {
        if changed {
            out.push(what.to_string());
        }
    };
    flag(a.command != b.command, "entrypoint");
    flag(a.args != b.args, "command");
    flag(a.env != b.env, "env");
    flag(a.workdir != b.workdir, "workdir");
    flag(a.user != b.user, "user");
    flag(a.hostname != b.hostname, "hostname");
    flag(a.labels != b.labels, "container labels");
    flag(
        a.stop_grace_period != b.stop_grace_period,
        "stop grace period",
    );
    flag(a.healthcheck != b.healthcheck, "health check");
    flag(old.task.resources != new.task.resources, "resources");
    flag(
        old.task.restart_policy != new.task.restart_policy,
        "restart policy",
    );
    flag(old.task.placement != new.task.placement, "placement");
    flag(old.task.force_update != new.task.force_update, "force");
    flag(old.labels != new.labels, "labels");
    flag(old.name != new.name, "name");
    flag(old.update_config != new.update_config, "update config");
    flag(
        old.rollback_config != new.rollback_config,
        "rollback config",
    );
    if out.is_empty() {
        "no change".into()
    } else {
        out.join(", ")
    }
}

pub async fn run(ctx: &Context, a: HistoryArgs) -> anyhow::Result<()> {
    let svc = get_service(ctx, &a.service).await?;
    // (version, replaced, image, changes into the next version), newest first.
    let mut rows: Vec<[String; 4]> = vec![[
        svc.spec_version.max(1).to_string(),
        "current".into(),
        svc.spec.task.container.image.clone(),
        String::new(),
    ]];
    let h = &svc.spec_history;
    for (i, v) in h.iter().enumerate().rev() {
        let next = h.get(i + 1).map(|n| &n.spec).unwrap_or(&svc.spec);
        rows.push([
            v.version.to_string(),
            output::ago(v.replaced_at),
            v.spec.task.container.image.clone(),
            change_summary(&v.spec, next),
        ]);
    }
    match &a.format {
        f @ (Format::Json | Format::Template(_)) => output::structured(
            f,
            &rows
                .iter()
                .map(|r| json!({"Version": r[0], "Replaced": r[1], "Image": r[2], "Changes": r[3]}))
                .collect::<Vec<_>>(),
        )?,
        Format::Table => output::table(
            &["VERSION", "REPLACED", "IMAGE", "CHANGES"],
            &rows.into_iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        let mut s = ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            task: Default::default(),
            mode: ServiceMode::Replicated { replicas: 3 },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        };
        s.task.container.image = "busybox:1".into();
        s
    }

    #[test]
    fn change_summary_names_what_changed() {
        let a = spec();
        assert_eq!(change_summary(&a, &a), "no change");
        let mut b = a.clone();
        b.task.container.image = "busybox:2".into();
        b.mode = ServiceMode::Replicated { replicas: 5 };
        b.task.container.env.push("A=1".into());
        assert_eq!(
            change_summary(&a, &b),
            "image busybox:1 → busybox:2, replicas 3 → 5, env"
        );
        let mut c = a.clone();
        c.task.container.args = vec!["sleep".into(), "9".into()];
        c.update_config.parallelism = 2;
        c.task.force_update = 1;
        assert_eq!(change_summary(&a, &c), "command, force, update config");
        let mut d = a.clone();
        d.mode = ServiceMode::Global;
        d.task.container.healthcheck = Some(Default::default());
        assert_eq!(change_summary(&a, &d), "mode, health check");
    }
}
