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
use std::time::{Duration, Instant};
use swarm_api::tls::TlsConnectInfo;
use swarm_types::registry::{
    valid_digest, valid_repo_name, valid_tag, ManifestRecord, Repository, MAX_MANIFEST_BYTES,
    MAX_REPOSITORY_BYTES,
};
use swarm_types::store::{Op, StoreError, WriteBatch};
use swarm_types::Object;
use tokio::io::AsyncWriteExt;

mod blobs;
mod lists;
mod manifests;
use blobs::*;
use lists::*;
pub(crate) use manifests::update_repo;
use manifests::*;

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
