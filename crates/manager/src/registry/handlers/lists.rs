//! Tag lists and the catalog, paginated (`n`, `last`, `Link`), read from the store after a
//! read barrier on a miss.

use super::*;

/// `n` and `last` of a list request, and the page of `all` (sorted) they select, plus the
/// `Link` header for the next page.
pub(super) fn page(
    req: &Req,
    all: Vec<String>,
    base: &str,
) -> Result<(Vec<String>, Option<String>), RegErr> {
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

pub(super) fn json_response(v: serde_json::Value, link: Option<String>) -> Res {
    let mut r = Response::builder().header("content-type", "application/json");
    if let Some(l) = link {
        r = r.header("link", l);
    }
    Ok(r.body(full(v.to_string())).expect("valid response"))
}

pub(super) fn catalog(reg: &Registry, req: &Req) -> Res {
    let all: Vec<String> = reg
        .manager()
        .store()
        .read(|s| s.repositories.keys().cloned().collect());
    let (items, link) = page(req, all, "/v2/_catalog")?;
    json_response(serde_json::json!({ "repositories": items }), link)
}

pub(super) async fn tags(reg: &Registry, req: &Req, name: &str) -> Res {
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

pub(super) fn name_unknown(name: &str) -> RegErr {
    err(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("repository {name} is not known to this registry"),
    )
}

/// The repository from this manager's store; on a miss, after a read barrier (the write may
/// have been acknowledged by another manager a moment ago).
pub(super) async fn repo(reg: &Registry, name: &str) -> Result<Option<Repository>, RegErr> {
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
