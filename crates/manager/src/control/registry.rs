//! The control API's cluster-registry calls: list repositories (tags and manifest digests)
//! and remove a tag or a manifest. Blobs are not touched here: what no manifest references
//! any more is collected by each manager's registry GC (`registry::gc`).

use super::{pages, ControlService};
use crate::pages::PageStream;
use swarm_api::control::{Empty, ListRequest, RemoveRequest};
use swarm_types::registry::ImageRef;
use swarm_types::Object;
use tonic::{Response, Status};

impl ControlService {
    pub(super) async fn do_list_repositories(
        &self,
        r: ListRequest,
    ) -> Result<Response<PageStream>, Status> {
        self.manager.read_barrier(r.stale).await?;
        // Manifest bodies stay out of lists (a repository may hold megabytes of them).
        let objs: Vec<Object> = self.read(|s| {
            s.repositories
                .values()
                .cloned()
                .map(|mut repo| {
                    for m in repo.manifests.values_mut() {
                        m.content.clear();
                    }
                    Object::Repository(repo)
                })
                .collect()
        });
        Ok(pages(objs))
    }

    pub(super) async fn do_remove_image_reference(
        &self,
        r: RemoveRequest,
    ) -> Result<Response<Empty>, Status> {
        let image = ImageRef::parse(&r.reference).map_err(Status::invalid_argument)?;
        if let Some(host) = image.registry {
            return Err(Status::invalid_argument(format!(
                "{} names the registry {host}; only images of the cluster registry can be removed here (NAME:TAG or NAME@DIGEST)",
                r.reference
            )));
        }
        // A bare name means NAME:latest, as everywhere else; say which was meant if absent.
        self.manager.read_barrier(false).await?;
        let name = image.repository.clone();
        let reference = image.reference.clone();
        let exists = self.read(|s| {
            s.repositories.get(&name).map(|repo| {
                if image.is_digest() {
                    repo.manifests.contains_key(&reference)
                } else {
                    repo.tags.contains_key(&reference)
                }
            })
        });
        match exists {
            None => {
                return Err(Status::not_found(format!(
                    "the cluster registry has no repository {name}"
                )))
            }
            Some(false) => {
                return Err(Status::not_found(format!(
                    "the cluster registry has no {}{}{reference} (see swarmctl registry ls {name})",
                    name,
                    if image.is_digest() { "@" } else { ":" },
                )))
            }
            Some(true) => {}
        }
        let found = std::sync::atomic::AtomicBool::new(false);
        crate::registry::update_repo(&self.manager, &name, |repo| {
            let had = repo.remove_reference(&reference);
            found.store(had, std::sync::atomic::Ordering::Relaxed);
            Ok(had)
        })
        .await
        .map_err(|e| Status::unavailable(e.message))?;
        if !found.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Status::not_found(format!(
                "{} was removed meanwhile by someone else",
                r.reference
            )));
        }
        tracing::info!(reference = %r.reference, "registry reference removed");
        Ok(Response::new(Empty {}))
    }
}
