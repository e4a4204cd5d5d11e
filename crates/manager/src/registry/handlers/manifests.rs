//! Manifests and indexes by tag or digest: read, write (what they reference must exist),
//! delete, referrers; repositories change by read-modify-write through Raft.

use super::*;

pub(super) async fn find_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
) -> Result<Option<(String, ManifestRecord)>, RegErr> {
    let lookup = |r: &Repository| {
        let d = if valid_digest(reference) {
            reference.to_string()
        } else {
            r.tags.get(reference)?.clone()
        };
        r.manifests.get(&d).map(|m| (d, m.clone()))
    };
    let local = reg
        .manager()
        .store()
        .read(|s| s.repositories.get(name).and_then(lookup));
    if local.is_some() {
        return Ok(local);
    }
    reg.manager()
        .read_barrier(false)
        .await
        .map_err(|e| RegErr::unavailable(e.to_string()))?;
    Ok(reg
        .manager()
        .store()
        .read(|s| s.repositories.get(name).and_then(lookup)))
}

pub(super) async fn get_manifest(reg: &Registry, name: &str, reference: &str, head: bool) -> Res {
    if !valid_digest(reference) && !valid_tag(reference) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("invalid tag or digest {reference:?}"),
        ));
    }
    let Some((digest, m)) = find_manifest(reg, name, reference).await? else {
        return Err(err(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest unknown: {name}:{reference} is not in this registry"),
        ));
    };
    let r = Response::builder()
        .header("content-type", m.media_type.as_str())
        .header("docker-content-digest", digest.as_str())
        .header("etag", format!("\"{digest}\""))
        .header("content-length", m.content.len());
    Ok(r.body(if head { empty() } else { full(m.content) })
        .expect("valid response"))
}

/// Reads a request body up to `limit` bytes; `Err(Ok(()))` when it is larger. A larger body
/// is still read (and dropped, up to [`DRAIN_LIMIT`]) so the client gets the answer instead
/// of a reset stream.
pub(super) async fn read_limited(
    mut body: Incoming,
    limit: usize,
) -> Result<Bytes, Result<(), String>> {
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Err(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        return Err(Ok(()));
    }
    Ok(buf.freeze())
}

/// How much of an oversized manifest body is read and dropped before answering.
pub(super) const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// (media type, blobs, child manifests, subject).
pub(super) type ParsedManifest = (String, Vec<String>, Vec<String>, Option<String>);

/// What a manifest references, from its JSON: (media type, blobs, child manifests, subject).
pub(super) fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<ParsedManifest, RegErr> {
    let invalid = |m: String| err(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", m);
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object".into()))?;
    if obj.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2) {
        return Err(invalid("manifest schemaVersion must be 2".into()));
    }
    let body_type = obj.get("mediaType").and_then(|m| m.as_str());
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    let media_type = match (body_type, ct) {
        (Some(b), Some(c)) if b != c => {
            return Err(invalid(format!(
                "manifest mediaType {b} differs from the Content-Type {c}"
            )))
        }
        (Some(b), _) => b.to_string(),
        (None, Some(c)) => c.to_string(),
        (None, None) if obj.contains_key("manifests") => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    let digest_of = |d: &serde_json::Value, what: &str| -> Result<String, RegErr> {
        let s = d
            .get("digest")
            .and_then(|x| x.as_str())
            .ok_or_else(|| invalid(format!("{what} has no digest")))?;
        if !valid_digest(s) {
            return Err(invalid(format!("{what} has an invalid digest {s:?}")));
        }
        Ok(s.to_string())
    };
    let subject = match obj.get("subject") {
        Some(s) => Some(digest_of(s, "subject")?),
        None => None,
    };
    let (mut blobs, mut children) = (Vec::new(), Vec::new());
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = obj
                .get("config")
                .ok_or_else(|| invalid("image manifest has no config".into()))?;
            blobs.push(digest_of(config, "config")?);
            let layers = obj
                .get("layers")
                .and_then(|l| l.as_array())
                .ok_or_else(|| invalid("image manifest has no layers array".into()))?;
            for (i, l) in layers.iter().enumerate() {
                blobs.push(digest_of(l, &format!("layer {i}"))?);
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            let ms = obj
                .get("manifests")
                .and_then(|l| l.as_array())
                .ok_or_else(|| invalid("index has no manifests array".into()))?;
            for (i, l) in ms.iter().enumerate() {
                children.push(digest_of(l, &format!("manifest {i}"))?);
            }
        }
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?}: use an OCI image manifest or index, or a Docker v2 manifest or manifest list"
            )))
        }
    }
    blobs.dedup();
    Ok((media_type, blobs, children, subject))
}

pub(super) async fn put_manifest(reg: &Registry, req: &Req, name: &str, reference: &str) -> Res {
    let is_digest = valid_digest(reference);
    if !is_digest && !valid_tag(reference) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("invalid tag {reference:?}: use letters, digits, _ . - (at most 128, not starting with . or -)"),
        ));
    }
    let content_type = header(req, "content-type").map(str::to_string);
    let bytes = match read_limited(req.body().take()?, MAX_MANIFEST_BYTES).await {
        Ok(b) => b,
        Err(Ok(())) => {
            return Err(err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("manifest larger than {MAX_MANIFEST_BYTES} bytes"),
            ))
        }
        Err(Err(e)) => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("reading the manifest: {e}"),
            ))
        }
    };
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    if is_digest && digest != reference {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the manifest's digest is {digest}, not {reference}"),
        ));
    }
    let (media_type, blobs, children, subject) = parse_manifest(&bytes, content_type.as_deref())?;
    let content = String::from_utf8(bytes.to_vec()).map_err(|_| {
        err(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            "manifest is not UTF-8",
        )
    })?;
    for b in &blobs {
        if !reg.ensure_local(b).await? {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("manifest references blob {b}, which was not pushed to this registry; push the blob first"),
            ));
        }
    }
    let record = ManifestRecord {
        media_type: media_type.clone(),
        content,
        blobs,
        children: children.clone(),
        subject: subject.clone(),
    };
    let tag = (!is_digest).then(|| reference.to_string());
    update_repo(reg.manager(), name, |r| {
        for c in &children {
            if !r.manifests.contains_key(c) {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_BLOB_UNKNOWN",
                    format!("index references manifest {c}, which is not in repository {name}; push it first"),
                ));
            }
        }
        r.manifests.insert(digest.clone(), record.clone());
        if let Some(t) = &tag {
            r.tags.insert(t.clone(), digest.clone());
        }
        if r.manifest_bytes() > MAX_REPOSITORY_BYTES {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "DENIED",
                format!("repository {name} would hold more than {MAX_REPOSITORY_BYTES} bytes of manifests; delete old manifests or use another repository"),
            ));
        }
        Ok(true)
    })
    .await?;
    let mut r = Response::builder()
        .status(StatusCode::CREATED)
        .header("location", format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest.as_str());
    if let Some(s) = subject {
        r = r.header("oci-subject", s);
    }
    Ok(r.body(empty()).expect("valid response"))
}

/// Read-modify-write of a repository through Raft (optimistic concurrency, retried on
/// conflicts). `f` returns whether it changed anything; a repository left empty is deleted.
pub(crate) async fn update_repo(
    m: &crate::Manager,
    name: &str,
    f: impl Fn(&mut Repository) -> Result<bool, RegErr>,
) -> Result<(), RegErr> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = m.store().read(|s| s.repositories.get(name).cloned());
        let mut repo = current.clone().unwrap_or_else(|| Repository {
            id: name.to_string(),
            ..Default::default()
        });
        if !f(&mut repo)? {
            return Ok(());
        }
        let op = match (&current, repo.manifests.is_empty() && repo.tags.is_empty()) {
            (Some(c), true) => Op::Delete {
                kind: swarm_types::ObjectKind::Repository,
                id: name.to_string(),
                version: Some(c.meta.version),
            },
            (Some(_), false) => Op::Update(Object::Repository(repo)),
            (None, _) => Op::Create(Object::Repository(repo)),
        };
        match m
            .write(WriteBatch {
                ops: vec![op],
                now_ms: 0,
            })
            .await
        {
            Ok(objs) => {
                // Read-your-writes on this manager: wait until it applied the write.
                let index = objs.first().map(|o| o.meta().version).unwrap_or(0);
                while m.store().last_applied_index() < index && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return Ok(());
            }
            Err(crate::WriteError::Store(
                StoreError::VersionMismatch { .. }
                | StoreError::Exists { .. }
                | StoreError::NotFound { .. },
            )) if Instant::now() < deadline => {
                // Someone else wrote the repository meanwhile: read it again.
                let _ = m.read_barrier(false).await;
            }
            Err(e) => {
                return Err(RegErr::unavailable(format!(
                    "writing repository {name}: {e}"
                )))
            }
        }
    }
}

pub(super) async fn delete_manifest(reg: &Registry, name: &str, reference: &str) -> Res {
    if repo(reg, name).await?.is_none() {
        return Err(name_unknown(name));
    }
    let missing = std::sync::atomic::AtomicBool::new(false);
    update_repo(reg.manager(), name, |r| {
        let found = r.remove_reference(reference);
        missing.store(!found, std::sync::atomic::Ordering::Relaxed);
        Ok(found)
    })
    .await?;
    if missing.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(err(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("{name}: {reference} is not in this repository"),
        ));
    }
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(empty())
        .expect("valid response"))
}

pub(super) async fn referrers(reg: &Registry, name: &str, digest: &str) -> Res {
    let repo = repo(reg, name).await?.unwrap_or_default();
    let manifests: Vec<serde_json::Value> = repo
        .manifests
        .iter()
        .filter(|(_, m)| m.subject.as_deref() == Some(digest))
        .map(|(d, m)| {
            let v: serde_json::Value = serde_json::from_str(&m.content).unwrap_or_default();
            let mut desc = serde_json::json!({
                "mediaType": m.media_type, "digest": d, "size": m.content.len(),
            });
            let at = v
                .get("artifactType")
                .cloned()
                .or_else(|| v.pointer("/config/mediaType").cloned());
            if let Some(at) = at {
                desc["artifactType"] = at;
            }
            if let Some(a) = v.get("annotations") {
                desc["annotations"] = a.clone();
            }
            desc
        })
        .collect();
    let body =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    Ok(Response::builder()
        .header("content-type", OCI_INDEX)
        .body(full(body.to_string()))
        .expect("valid response"))
}
