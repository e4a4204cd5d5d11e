//! The Distribution API's routes: `/v2/`, blobs (HEAD/GET with a range), uploads (monolithic,
//! chunked with resumable offsets, cross-repository mount), manifests and indexes by tag or
//! digest, tag lists and the catalog with pagination, referrers; plus the managers' internal
//! blob path. Anything refused stores nothing.

use super::access::{self, Caller};
use super::{empty, full, RBody, RegErr, Registry};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use swarm_api::tls::TlsConnectInfo;
use swarm_types::registry::{
    valid_digest, valid_repo_name, valid_tag, ManifestRecord, Repository, MAX_MANIFEST_BYTES,
    MAX_REPOSITORY_BYTES,
};
use swarm_types::store::{Op, StoreError, WriteBatch};
use swarm_types::Object;
use tokio::io::AsyncWriteExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Page size when a list request gives no `n`, and the largest accepted.
const DEFAULT_PAGE: usize = 1000;

type Res = Result<Response<RBody>, RegErr>;

/// A request whose body a handler takes when it reads it; what is left untaken when the
/// answer is an error is drained first, so the client reads the answer instead of a reset.
type Req = Request<BodySlot>;

pub(super) struct BodySlot(std::sync::Mutex<Option<Incoming>>);

impl BodySlot {
    fn take(&self) -> Result<Incoming, RegErr> {
        self.0
            .lock()
            .expect("body lock")
            .take()
            .ok_or_else(|| RegErr::unavailable("request body already read"))
    }
}

/// Reads and drops what is left of a body (bounded by [`DRAIN_LIMIT`]).
async fn drain(mut body: Incoming) {
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(d) = frame.into_data() {
            seen += d.len();
            if seen > DRAIN_LIMIT {
                return;
            }
        }
    }
}

fn err(status: StatusCode, code: &'static str, msg: impl Into<String>) -> RegErr {
    RegErr::new(status, code, msg)
}

fn query(req: &Req) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((k.to_string(), percent_decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'%' => return None,
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn header<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Which route a `/v2/...` path is.
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Upload(String, String),
    Blob(String, String),
    Referrers(String, String),
    Internal(String),
}

fn route(path: &str) -> Option<Route> {
    if let Some(d) = path.strip_prefix("/swarm/internal/blobs/") {
        return Some(Route::Internal(d.to_string()));
    }
    if path == "/v2/" || path == "/v2" {
        return Some(Route::Base);
    }
    let rest = path.strip_prefix("/v2/")?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.into()));
    }
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let tail = &rest[i + "/blobs/uploads".len()..];
        let id = tail.trim_start_matches('/');
        return Some(Route::Upload(rest[..i].into(), id.into()));
    }
    for (sep, f) in [
        (
            "/manifests/",
            Route::Manifest as fn(String, String) -> Route,
        ),
        ("/blobs/", Route::Blob),
        ("/referrers/", Route::Referrers),
    ] {
        if let Some(i) = rest.rfind(sep) {
            return Some(f(rest[..i].into(), rest[i + sep.len()..].into()));
        }
    }
    None
}

pub(super) async fn handle(
    reg: &Registry,
    req: Request<Incoming>,
    info: &TlsConnectInfo,
) -> Response<RBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, BodySlot(std::sync::Mutex::new(Some(body))));
    let res = dispatch(reg, &req, info).await;
    if res.is_err() {
        if let Ok(rest) = req.body().take() {
            drain(rest).await;
        }
    }
    let mut resp = res.unwrap_or_else(|e| {
        if e.status.is_client_error() {
            tracing::info!(%method, %path, code = e.code, message = %e.message, "registry: refused");
        } else {
            tracing::warn!(%method, %path, code = e.code, message = %e.message, "registry: failed");
        }
        e.response()
    });
    if method == Method::HEAD {
        // Headers only (an error's JSON body would break HTTP/2 framing of a HEAD answer).
        *resp.body_mut() = empty();
    }
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        hyper::header::HeaderValue::from_static("registry/2.0"),
    );
    resp
}

async fn dispatch(reg: &Registry, req: &Req, info: &TlsConnectInfo) -> Res {
    let Some((root, cluster_id)) = reg.ca() else {
        return Err(RegErr::unavailable("the cluster is not initialized yet"));
    };
    let store = reg.manager().store().clone();
    let caller = access::identify(
        info.peer.as_ref(),
        header(req, "authorization"),
        &cluster_id,
        &root.key_pem,
        swarm_api::now_ms() / 1000,
        |id| {
            store.read(|s| {
                s.nodes
                    .contains_key(&swarm_types::NodeId::new(id.to_string()))
            })
        },
    )
    .map_err(|m| RegErr {
        challenge: true,
        ..err(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m)
    })?;
    let Some(r) = route(req.uri().path()) else {
        return Err(err(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such registry route",
        ));
    };
    let anonymous_pull = reg.inner.cfg.anonymous_pull;
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let allowed = match &r {
        Route::Internal(_) => caller == Caller::Manager,
        _ if write => caller.can_push(),
        _ => caller.can_pull(anonymous_pull),
    };
    if !allowed {
        let mut e = if caller == Caller::Anonymous {
            let mut e = err(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required: use a cluster certificate or a token from `swarmctl registry login-token` (as a bearer token or the password of basic auth)",
            );
            e.challenge = true;
            e
        } else {
            err(
                StatusCode::FORBIDDEN,
                "DENIED",
                format!(
                    "{caller:?} may not {} here",
                    if write { "push" } else { "pull" }
                ),
            )
        };
        if matches!(r, Route::Internal(_)) {
            e.message = "only managers use the internal blob path".into();
        }
        return Err(e);
    }
    let name_ok = |n: &str| {
        if valid_repo_name(n) {
            Ok(())
        } else {
            Err(err(
                StatusCode::BAD_REQUEST,
                "NAME_INVALID",
                format!("invalid repository name {n:?}: lowercase path components of [a-z0-9] joined by . _ __ or -, separated by /"),
            ))
        }
    };
    let m = req.method().clone();
    match r {
        Route::Base => Ok(Response::builder()
            .header("content-type", "application/json")
            .body(full("{}"))
            .expect("valid response")),
        Route::Catalog if m == Method::GET => catalog(reg, req),
        Route::Tags(n) if m == Method::GET => {
            name_ok(&n)?;
            tags(reg, req, &n).await
        }
        Route::Manifest(n, r) => {
            name_ok(&n)?;
            match m {
                Method::GET | Method::HEAD => get_manifest(reg, &n, &r, m == Method::HEAD).await,
                Method::PUT => put_manifest(reg, req, &n, &r).await,
                Method::DELETE => delete_manifest(reg, &n, &r).await,
                _ => Err(unsupported()),
            }
        }
        Route::Blob(n, d) => {
            name_ok(&n)?;
            check_digest(&d)?;
            match m {
                Method::GET | Method::HEAD => get_blob(reg, req, &d, m == Method::HEAD).await,
                Method::DELETE => Err(err(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "UNSUPPORTED",
                    "blobs are shared by all repositories and collected, not deleted one by one; delete the manifests",
                )),
                _ => Err(unsupported()),
            }
        }
        Route::Upload(n, id) => {
            name_ok(&n)?;
            upload(reg, req, &n, &id).await
        }
        Route::Referrers(n, d) if m == Method::GET => {
            name_ok(&n)?;
            check_digest(&d)?;
            referrers(reg, &n, &d).await
        }
        Route::Internal(d) => {
            check_digest(&d)?;
            match m {
                Method::GET | Method::HEAD => internal_get(reg, req, &d, m == Method::HEAD).await,
                Method::PUT => internal_put(reg, req, &d).await,
                _ => Err(unsupported()),
            }
        }
        _ => Err(unsupported()),
    }
}

fn unsupported() -> RegErr {
    err(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "method not supported on this route",
    )
}

fn check_digest(d: &str) -> Result<(), RegErr> {
    if valid_digest(d) {
        Ok(())
    } else {
        Err(err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {d:?}: expected sha256: and 64 lowercase hex digits"),
        ))
    }
}

// ---------- lists ----------

/// `n` and `last` of a list request, and the page of `all` (sorted) they select, plus the
/// `Link` header for the next page.
fn page(req: &Req, all: Vec<String>, base: &str) -> Result<(Vec<String>, Option<String>), RegErr> {
    let q = query(req);
    let n = match q.get("n") {
        Some(v) => v.parse::<usize>().map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("invalid n {v:?}"),
            )
        })?,
        None => DEFAULT_PAGE,
    }
    .min(DEFAULT_PAGE);
    let last = q.get("last").cloned();
    let rest: Vec<String> = all
        .into_iter()
        .filter(|x| last.as_ref().is_none_or(|l| x > l))
        .collect();
    let more = rest.len() > n;
    let items: Vec<String> = rest.into_iter().take(n).collect();
    let link = (more && n > 0).then(|| {
        format!(
            "<{base}?n={n}&last={}>; rel=\"next\"",
            items.last().cloned().unwrap_or_default()
        )
    });
    Ok((items, link))
}

fn json_response(v: serde_json::Value, link: Option<String>) -> Res {
    let mut r = Response::builder().header("content-type", "application/json");
    if let Some(l) = link {
        r = r.header("link", l);
    }
    Ok(r.body(full(v.to_string())).expect("valid response"))
}

fn catalog(reg: &Registry, req: &Req) -> Res {
    let all: Vec<String> = reg
        .manager()
        .store()
        .read(|s| s.repositories.keys().cloned().collect());
    let (items, link) = page(req, all, "/v2/_catalog")?;
    json_response(serde_json::json!({ "repositories": items }), link)
}

async fn tags(reg: &Registry, req: &Req, name: &str) -> Res {
    let Some(repo) = repo(reg, name).await? else {
        return Err(name_unknown(name));
    };
    let (items, link) = page(
        req,
        repo.tags.keys().cloned().collect(),
        &format!("/v2/{name}/tags/list"),
    )?;
    json_response(serde_json::json!({ "name": name, "tags": items }), link)
}

fn name_unknown(name: &str) -> RegErr {
    err(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("repository {name} is not known to this registry"),
    )
}

/// The repository from this manager's store; on a miss, after a read barrier (the write may
/// have been acknowledged by another manager a moment ago).
async fn repo(reg: &Registry, name: &str) -> Result<Option<Repository>, RegErr> {
    let get = || {
        reg.manager()
            .store()
            .read(|s| s.repositories.get(name).cloned())
    };
    if let Some(r) = get() {
        return Ok(Some(r));
    }
    reg.manager()
        .read_barrier(false)
        .await
        .map_err(|e| RegErr::unavailable(e.to_string()))?;
    Ok(get())
}

// ---------- manifests ----------

async fn find_manifest(
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

async fn get_manifest(reg: &Registry, name: &str, reference: &str, head: bool) -> Res {
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
async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, Result<(), String>> {
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
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// (media type, blobs, child manifests, subject).
type ParsedManifest = (String, Vec<String>, Vec<String>, Option<String>);

/// What a manifest references, from its JSON: (media type, blobs, child manifests, subject).
fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, RegErr> {
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

async fn put_manifest(reg: &Registry, req: &Req, name: &str, reference: &str) -> Res {
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

async fn delete_manifest(reg: &Registry, name: &str, reference: &str) -> Res {
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

async fn referrers(reg: &Registry, name: &str, digest: &str) -> Res {
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

// ---------- blobs ----------

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against `size` → (start, end inclusive).
fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let r = h.trim().strip_prefix("bytes=")?;
    if r.contains(',') {
        return None;
    }
    let (a, b) = r.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && end < size).then_some((start, end))
}

async fn serve_file(path: &Path, digest: &str, range: Option<&str>, head: bool) -> Res {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| RegErr::unavailable(format!("open blob: {e}")))?;
    let size = f
        .metadata()
        .await
        .map_err(|e| RegErr::unavailable(format!("blob: {e}")))?
        .len();
    let mut r = Response::builder()
        .header("content-type", "application/octet-stream")
        .header("docker-content-digest", digest)
        .header("etag", format!("\"{digest}\""))
        .header("accept-ranges", "bytes");
    let (start, len) = match range {
        Some(h) => {
            let Some((s, e)) = parse_range(h, size) else {
                return Ok(Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header("content-range", format!("bytes */{size}"))
                    .body(empty())
                    .expect("valid response"));
            };
            r = r
                .status(StatusCode::PARTIAL_CONTENT)
                .header("content-range", format!("bytes {s}-{e}/{size}"));
            (s, e - s + 1)
        }
        None => (0, size),
    };
    r = r.header("content-length", len);
    if head {
        return Ok(r.body(empty()).expect("valid response"));
    }
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| RegErr::unavailable(format!("blob: {e}")))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024);
    use futures::TryStreamExt;
    let body = http_body_util::StreamBody::new(stream.map_ok(hyper::body::Frame::data));
    Ok(r.body(BodyExt::boxed(body)).expect("valid response"))
}

fn blob_unknown(d: &str) -> RegErr {
    err(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob {d} is not in this registry"),
    )
}

async fn get_blob(reg: &Registry, req: &Req, d: &str, head: bool) -> Res {
    if head {
        // Existence only (a full check happens on GET); a blob a peer has counts.
        if reg.inner.blobs.size(d).is_none() && !reg.ensure_local(d).await? {
            return Err(blob_unknown(d));
        }
    } else if !reg.ensure_local(d).await? {
        return Err(blob_unknown(d));
    }
    // A client that found the blob may push a manifest using it next: spare it meanwhile.
    reg.touch(d);
    serve_file(&reg.inner.blobs.path(d), d, header(req, "range"), head).await
}

async fn internal_get(reg: &Registry, req: &Req, d: &str, head: bool) -> Res {
    // Only this manager's verified copy: peers never forward to each other.
    let ok = reg
        .inner
        .blobs
        .verified(d)
        .await
        .map_err(|e| RegErr::unavailable(e.to_string()))?;
    if !ok {
        return Err(blob_unknown(d));
    }
    serve_file(&reg.inner.blobs.path(d), d, header(req, "range"), head).await
}

async fn internal_put(reg: &Registry, req: &Req, d: &str) -> Res {
    if !reg
        .inner
        .blobs
        .verified(d)
        .await
        .map_err(|e| RegErr::unavailable(e.to_string()))?
    {
        let tmp = reg.inner.blobs.tmp_path();
        write_body(&tmp, req.body().take()?, false).await?;
        commit(reg, &tmp, d).await?;
    }
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .body(empty())
        .expect("valid response"))
}

/// Streams a request body into `path` (appending or creating); returns the file's new size.
async fn write_body(path: &Path, mut body: Incoming, append: bool) -> Result<u64, RegErr> {
    let io = |e: std::io::Error| RegErr::unavailable(format!("writing the upload: {e}"));
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .await
        .map_err(io)?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                format!("reading the upload: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            f.write_all(&data).await.map_err(io)?;
        }
    }
    f.flush().await.map_err(io)?;
    Ok(f.metadata().await.map_err(io)?.len())
}

async fn commit(reg: &Registry, tmp: &Path, d: &str) -> Result<(), RegErr> {
    match reg.inner.blobs.commit(tmp, d).await {
        Ok(_) => {
            reg.touch(d);
            Ok(())
        }
        Err(e @ super::blobs::CommitError::Mismatch { .. }) => Err(err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            e.to_string(),
        )),
        Err(e) => Err(RegErr::unavailable(format!("storing the blob: {e}"))),
    }
}

fn new_upload_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_status(name: &str, id: &str, size: u64, status: StatusCode) -> Response<RBody> {
    Response::builder()
        .status(status)
        .header("location", upload_location(name, id))
        .header("range", range_header(size))
        .header("docker-upload-uuid", id)
        .header("content-length", 0)
        .body(empty())
        .expect("valid response")
}

fn blob_created(name: &str, d: &str) -> Response<RBody> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header("location", format!("/v2/{name}/blobs/{d}"))
        .header("docker-content-digest", d)
        .header("content-length", 0)
        .body(empty())
        .expect("valid response")
}

/// Commits a finished upload file as `digest` and copies it to another manager before
/// acknowledging.
async fn finish(reg: &Registry, file: &Path, name: &str, d: &str) -> Res {
    check_digest(d)?;
    commit(reg, file, d).await?;
    reg.replicate(d).await?;
    Ok(blob_created(name, d))
}

async fn upload(reg: &Registry, req: &Req, name: &str, id: &str) -> Res {
    let q = query(req);
    let m = req.method().clone();
    if id.is_empty() {
        if m != Method::POST {
            return Err(unsupported());
        }
        if let (Some(d), Some(_from)) = (q.get("mount"), q.get("from")) {
            // Blobs are shared by all repositories: a mount succeeds when the blob exists.
            if valid_digest(d) && reg.ensure_local(d).await? {
                return Ok(blob_created(name, d));
            }
        }
        if let Some(d) = q.get("digest") {
            // Monolithic upload in one POST.
            check_digest(d)?;
            let tmp = reg.inner.blobs.tmp_path();
            write_body(&tmp, req.body().take()?, false).await?;
            return finish(reg, &tmp, name, d).await;
        }
        let id = new_upload_id();
        reg.inner
            .blobs
            .begin_upload(&id, name)
            .map_err(|e| RegErr::unavailable(format!("creating the upload: {e}")))?;
        reg.inner
            .uploads
            .lock()
            .expect("uploads lock")
            .insert(id.clone(), name.to_string());
        return Ok(upload_status(name, &id, 0, StatusCode::ACCEPTED));
    }
    let known = id.bytes().all(|c| c.is_ascii_hexdigit())
        && reg
            .inner
            .uploads
            .lock()
            .expect("uploads lock")
            .get(id)
            .map(String::as_str)
            == Some(name);
    if !known {
        return Err(err(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            format!("upload {id} is not in progress in {name} (it finished or was cancelled, or it was started on another manager); start a new upload"),
        ));
    }
    let path = reg.inner.blobs.upload_path(id);
    let size = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let forget = || {
        reg.inner.uploads.lock().expect("uploads lock").remove(id);
        let _ = std::fs::remove_file(path.with_extension("repo"));
    };
    match m {
        Method::GET => Ok(upload_status(name, id, size, StatusCode::NO_CONTENT)),
        Method::DELETE => {
            forget();
            let _ = tokio::fs::remove_file(&path).await;
            Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(empty())
                .expect("valid response"))
        }
        Method::PATCH | Method::PUT => {
            if let Some(cr) = header(req, "content-range") {
                let start = cr
                    .trim()
                    .trim_start_matches("bytes")
                    .trim()
                    .trim_start_matches('=')
                    .split('-')
                    .next()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(size) {
                    let mut r = upload_status(name, id, size, StatusCode::RANGE_NOT_SATISFIABLE);
                    *r.body_mut() = full(
                        serde_json::json!({"errors":[{"code":"BLOB_UPLOAD_INVALID","message":format!("chunk starts at {cr:?} but the upload has {size} bytes; resume from offset {size}"),"detail":null}]}).to_string(),
                    );
                    return Ok(r);
                }
            }
            let put = m == Method::PUT;
            let digest = q.get("digest").cloned();
            if put {
                let Some(d) = digest else {
                    return Err(err(
                        StatusCode::BAD_REQUEST,
                        "DIGEST_INVALID",
                        "finishing an upload needs ?digest=",
                    ));
                };
                check_digest(&d)?;
                write_body(&path, req.body().take()?, true).await?;
                forget();
                return finish(reg, &path, name, &d).await;
            }
            let size = write_body(&path, req.body().take()?, true).await?;
            Ok(upload_status(name, id, size, StatusCode::ACCEPTED))
        }
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_from_the_right() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(route("/v2/"), Some(Route::Base)));
        assert!(matches!(route("/v2/_catalog"), Some(Route::Catalog)));
        assert!(matches!(route("/v2/a/b/tags/list"), Some(Route::Tags(n)) if n == "a/b"));
        assert!(
            matches!(route(&format!("/v2/a/blobs/x/blobs/{d}")), Some(Route::Blob(n, x)) if n == "a/blobs/x" && x == d)
        );
        assert!(
            matches!(route("/v2/a/manifests/v1"), Some(Route::Manifest(n, r)) if n == "a" && r == "v1")
        );
        assert!(
            matches!(route("/v2/a/blobs/uploads/"), Some(Route::Upload(n, i)) if n == "a" && i.is_empty())
        );
        assert!(
            matches!(route("/v2/a/blobs/uploads/abc"), Some(Route::Upload(n, i)) if n == "a" && i == "abc")
        );
        assert!(route("/other").is_none());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn manifests_are_parsed_strictly() {
        let d = format!("sha256:{}", "a".repeat(64));
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{d}","size":1}},"layers":[{{"digest":"{d}","size":1}}]}}"#
        );
        let (mt, blobs, children, _) = parse_manifest(m.as_bytes(), None).unwrap();
        assert_eq!(
            (mt.as_str(), blobs.len(), children.len()),
            (OCI_MANIFEST, 1, 0)
        );
        for bad in [
            "not json".to_string(),
            "[]".into(),
            r#"{"schemaVersion":1}"#.into(),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"sha256:zz"}},"layers":[]}}"#
            ),
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#),
            r#"{"schemaVersion":2,"mediaType":"text/plain"}"#.into(),
        ] {
            let e = parse_manifest(bad.as_bytes(), None).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("a%2").as_deref(), None);
    }
}
