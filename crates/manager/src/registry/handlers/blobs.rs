//! Blobs: HEAD/GET with ranges, uploads (monolithic, chunked with resumable offsets,
//! cross-repository mount), the managers' internal blob path, and commits that copy a blob
//! to another manager before acknowledging.

use super::*;
use std::path::Path;

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against `size` → (start, end inclusive).
pub(super) fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
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

pub(super) async fn serve_file(path: &Path, digest: &str, range: Option<&str>, head: bool) -> Res {
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

pub(super) fn blob_unknown(d: &str) -> RegErr {
    err(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob {d} is not in this registry"),
    )
}

pub(super) async fn get_blob(reg: &Registry, req: &Req, d: &str, head: bool) -> Res {
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

pub(super) async fn internal_get(reg: &Registry, req: &Req, d: &str, head: bool) -> Res {
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

pub(super) async fn internal_put(reg: &Registry, req: &Req, d: &str) -> Res {
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
pub(super) async fn write_body(
    path: &Path,
    mut body: Incoming,
    append: bool,
) -> Result<u64, RegErr> {
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

pub(super) async fn commit(reg: &Registry, tmp: &Path, d: &str) -> Result<(), RegErr> {
    match reg.inner.blobs.commit(tmp, d).await {
        Ok(_) => {
            reg.touch(d);
            Ok(())
        }
        Err(e @ crate::registry::blobs::CommitError::Mismatch { .. }) => Err(err(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            e.to_string(),
        )),
        Err(e) => Err(RegErr::unavailable(format!("storing the blob: {e}"))),
    }
}

pub(super) fn new_upload_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub(super) fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

pub(super) fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

pub(super) fn upload_status(
    name: &str,
    id: &str,
    size: u64,
    status: StatusCode,
) -> Response<RBody> {
    Response::builder()
        .status(status)
        .header("location", upload_location(name, id))
        .header("range", range_header(size))
        .header("docker-upload-uuid", id)
        .header("content-length", 0)
        .body(empty())
        .expect("valid response")
}

pub(super) fn blob_created(name: &str, d: &str) -> Response<RBody> {
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
pub(super) async fn finish(reg: &Registry, file: &Path, name: &str, d: &str) -> Res {
    check_digest(d)?;
    commit(reg, file, d).await?;
    reg.replicate(d).await?;
    Ok(blob_created(name, d))
}

pub(super) async fn upload(reg: &Registry, req: &Req, name: &str, id: &str) -> Res {
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
