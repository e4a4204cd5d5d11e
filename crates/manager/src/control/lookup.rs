//! Reading objects for clients: references resolved (id, prefix, name, with a "did you mean"),
//! secrets redacted from what is shown.

use super::*;

/// The cluster object as shown to clients: never includes the CA key.
pub fn redact_cluster(mut c: Cluster) -> Cluster {
    c.root_ca.key_pem = String::new();
    c
}

pub(super) fn redact(o: Object) -> Object {
    use crate::registry::seal::{redact as redact_auth, redact_spec};
    match o {
        Object::Cluster(c) => Object::Cluster(redact_cluster(c)),
        // Registry credentials: clients see that they exist, never their bytes.
        Object::Service(mut s) => {
            redact_spec(&mut s.spec);
            s.previous_spec.iter_mut().for_each(|p| redact_spec(p));
            s.spec_history
                .iter_mut()
                .for_each(|v| redact_spec(&mut v.spec));
            Object::Service(s)
        }
        Object::Task(mut t) => {
            if !t.spec.container.registry_auth.is_empty() {
                redact_auth(
                    &mut std::sync::Arc::make_mut(&mut t.spec)
                        .container
                        .registry_auth,
                );
            }
            Object::Task(t)
        }
        other => other,
    }
}

/// Seals the registry credentials a client sent with `spec` (`--with-registry-auth`);
/// `current` is the service's spec before an update.
pub(super) fn seal_auth(
    s: &StoreState,
    spec: &mut ServiceSpec,
    current: Option<&ServiceSpec>,
) -> Result<(), Status> {
    let auth = &spec.task.container.registry_auth;
    let has_current = current.is_some_and(|c| !c.task.container.registry_auth.is_empty());
    if auth.is_empty() && !has_current {
        return Ok(());
    }
    let key = s
        .cluster()
        .map(|c| c.root_ca.key_pem.clone())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            Status::failed_precondition(
                "this cluster has no CA key to seal registry credentials with",
            )
        })?;
    crate::registry::seal::seal_spec(&key, spec, current).map_err(Status::invalid_argument)
}

/// Resolves a reference among `(id, name)` pairs: exact id, then exact name, then unique id
/// prefix.
pub(super) fn resolve<'a, T>(
    kind: &str,
    reference: &str,
    items: impl Iterator<Item = (&'a str, &'a str, &'a T)> + Clone,
) -> Result<&'a T, Status> {
    if reference.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{kind} reference is empty"
        )));
    }
    if let Some((_, _, t)) = items.clone().find(|(id, _, _)| *id == reference) {
        return Ok(t);
    }
    if let Some((_, _, t)) = items.clone().find(|(_, name, _)| *name == reference) {
        return Ok(t);
    }
    let matches: Vec<_> = items
        .clone()
        .filter(|(id, _, _)| id.starts_with(reference))
        .collect();
    match matches.len() {
        1 => Ok(matches[0].2),
        0 => {
            let near = items
                .map(|(_, name, _)| (edit_distance(name, reference), name))
                .filter(|(d, name)| !name.is_empty() && *d <= 2 && *d < reference.len())
                .min();
            Err(Status::not_found(match near {
                Some((_, name)) => format!("{kind} {reference} not found; did you mean {name}?"),
                None => format!("{kind} {reference} not found"),
            }))
        }
        _ => Err(Status::invalid_argument(format!(
            "{kind} reference {reference:?} is ambiguous: it matches {}; use more characters of the id",
            matches.iter().map(|m| m.0).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Levenshtein distance (names are short: the quadratic table is fine).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(super) fn find_service(s: &StoreState, r: &str) -> Result<Service, Status> {
    resolve(
        "service",
        r,
        s.services
            .values()
            .map(|v| (v.id.as_str(), v.spec.name.as_str(), &**v)),
    )
    .cloned()
}

pub(super) fn find_node(s: &StoreState, r: &str) -> Result<Node, Status> {
    resolve(
        "node",
        r,
        s.nodes
            .values()
            .map(|v| (v.id.as_str(), v.description.hostname.as_str(), v)),
    )
    .cloned()
}

pub(super) fn object_response(o: Object) -> Response<ObjectResponse> {
    Response::new(ObjectResponse {
        object: wire::to_bytes(&redact(o)),
        warnings: Vec::new(),
    })
}
