//! `swarmctl registry ...`: the cluster registry's content (list, remove) and access for
//! clients without a cluster certificate (Docker, skopeo).

use crate::client::{collect, status_err, Context};
use crate::commands::service::ListOutput;
use crate::output::{self, Format};
use clap::{Args, Subcommand};
use swarm_types::Object;

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Print a login token for the cluster registry. Use it as the password of
    /// `docker login` / `skopeo --creds USER:TOKEN` (any user name) or as a bearer token.
    LoginToken(LoginTokenArgs),
    /// List the images of the cluster registry: one line per tag (and per untagged
    /// manifest), optionally of one repository.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove NAME:TAG (the tag) or NAME@DIGEST (the manifest and every tag naming it) from
    /// the cluster registry. Layers no manifest uses any more are deleted by the managers'
    /// garbage collection (swarmd --registry-gc-interval). Running tasks keep their images.
    #[command(alias = "remove")]
    Rm {
        /// NAME:TAG or NAME@DIGEST.
        #[arg(required = true, value_name = "REFERENCE")]
        references: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only this repository.
    pub repository: Option<String>,
    #[command(flatten)]
    pub out: ListOutput,
}

/// (repository, tag or "<none>", digest) rows: the tags, then the manifests no tag names
/// (except the per-platform manifests an index lists, which belong to that index).
fn rows(repos: &[swarm_types::registry::Repository]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for r in repos {
        for (tag, d) in &r.tags {
            out.push((r.id.clone(), tag.clone(), d.clone()));
        }
        let children: std::collections::HashSet<&String> = r
            .manifests
            .values()
            .flat_map(|m| m.children.iter())
            .collect();
        for d in r.manifests.keys() {
            if !r.tags.values().any(|t| t == d) && !children.contains(d) {
                out.push((r.id.clone(), "<none>".into(), d.clone()));
            }
        }
    }
    out
}

#[derive(Args, Debug)]
pub struct LoginTokenArgs {
    /// Pull only (the default).
    #[arg(long, conflicts_with = "push")]
    pub pull: bool,
    /// Push and pull.
    #[arg(long)]
    pub push: bool,
    /// Lifetime of the token (e.g. 30m, 12h, 7d; at most 366d).
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
}

pub async fn run(ctx: &Context, cmd: RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::Ls(a) => {
            let mut c = ctx.control().await?;
            let mut repos: Vec<_> = collect(
                c.list_repositories(ctx.list_request())
                    .await
                    .map_err(status_err)?
                    .into_inner(),
            )
            .await?
            .into_iter()
            .filter_map(|o| match o {
                Object::Repository(r) => Some(r),
                _ => None,
            })
            .filter(|r| a.repository.as_ref().is_none_or(|n| *n == r.id))
            .collect();
            if let (Some(n), true) = (&a.repository, repos.is_empty()) {
                anyhow::bail!(
                    "the cluster registry has no repository {n} (swarmctl registry ls lists them)"
                );
            }
            repos.sort_by(|x, y| x.id.cmp(&y.id));
            let filters = output::Filters::parse(&a.out.filters, &["name", "tag", "dangling"])?;
            let mut rows = rows(&repos);
            rows.retain(|(repo, tag, _)| {
                filters.keep(|k, v| match k {
                    "name" => repo.starts_with(v),
                    "tag" => tag == v,
                    // Manifests no tag points to.
                    _ => (tag == "<none>") == (v == "true"),
                })
            });
            if a.out.quiet {
                for (repo, tag, d) in &rows {
                    if tag == "<none>" {
                        println!("{repo}@{d}");
                    } else {
                        println!("{repo}:{tag}");
                    }
                }
                return Ok(());
            }
            match &a.out.format {
                f @ (Format::Json | Format::Template(_)) => output::structured(
            f,
                    &rows
                        .iter()
                        .map(|(repo, tag, d)| {
                            serde_json::json!({"Repository": repo, "Tag": tag, "Digest": d})
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => output::table(
                    &["REPOSITORY", "TAG", "DIGEST"],
                    &rows
                        .into_iter()
                        .map(|(r, t, d)| vec![r, t, d])
                        .collect::<Vec<_>>(),
                )?,
            }
            Ok(())
        }
        RegistryCmd::Rm { references } => {
            let mut c = ctx.control().await?;
            let mut failed = 0;
            for r in references {
                match c
                    .remove_image_reference(swarm_api::control::RemoveRequest {
                        reference: r.clone(),
                        force: false,
                    })
                    .await
                {
                    Ok(_) if r.contains('@') => println!("Deleted: {r}"),
                    Ok(_) => println!("Untagged: {r}"),
                    Err(e) => {
                        eprintln!("Error: {}", status_err(e));
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of the references could not be removed");
            }
            Ok(())
        }
        RegistryCmd::LoginToken(a) => {
            if a.expires.as_secs() == 0 {
                anyhow::bail!("--expires must be at least 1s");
            }
            let scope = if a.push { "push" } else { "pull" };
            let r = ctx
                .control()
                .await?
                .registry_login_token(swarm_api::control::RegistryLoginTokenRequest {
                    scope: scope.into(),
                    expires_secs: a.expires.as_secs(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}", r.token);
            Ok(())
        }
    }
}
