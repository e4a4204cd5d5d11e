//! Pushing an image of this node's store to the cluster registry (or another one): blobs the
//! registry lacks, then the manifest, with the node's credentials.

use super::*;

impl Puller {
    /// Pushes the local image `name` as `target` (blobs the registry lacks, then the
    /// manifest). Returns (manifest digest, blobs uploaded).
    pub async fn push(&self, name: &str, target: &str) -> Result<(String, u32), String> {
        let r = ImageRef::parse(&normalize_name(target))?;
        if r.is_digest() {
            return Err(format!("push to a tag, not a digest: {target}"));
        }
        let images = self.images.clone();
        let n = normalize_name(name);
        let (md, bytes, media_type, blobs) = tokio::task::spawn_blocking(move || {
            let md = images.resolve(&n).map_err(|e| e.to_string())?;
            let bytes = images.read_blob(&md).map_err(|e| e.to_string())?;
            let m = images.manifest(&md).map_err(|e| e.to_string())?;
            let blobs: Vec<(Digest, u64)> = std::iter::once(&m.config)
                .chain(m.layers.iter())
                .map(|d| (d.digest.clone(), d.size))
                .collect();
            Ok::<_, String>((md, bytes, m.media_type, blobs))
        })
        .await
        .map_err(|e| e.to_string())??;
        let media_type =
            media_type.unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        let mut errors = Vec::new();
        for (client, base) in self.targets(&r)? {
            match self
                .push_to(&client, &base, &r, &bytes, &media_type, &blobs)
                .await
            {
                Ok(uploaded) => return Ok((md.to_string(), uploaded)),
                Err(PullError::Registry(m)) => return Err(m),
                Err(PullError::Transport(m)) => errors.push(format!("{base}: {m}")),
            }
        }
        Err(format!("no registry reachable: {}", errors.join("; ")))
    }

    pub(super) async fn push_to(
        &self,
        client: &reqwest::Client,
        base: &str,
        r: &ImageRef,
        manifest: &[u8],
        media_type: &str,
        blobs: &[(Digest, u64)],
    ) -> Result<u32, PullError> {
        let repo = &r.repository;
        let send = |req: reqwest::RequestBuilder| async move {
            let resp = req
                .send()
                .await
                .map_err(|e| PullError::Transport(swarm_api::error_chain(&e)))?;
            if resp.status().is_success() {
                Ok(resp)
            } else {
                Err(registry_error(resp).await)
            }
        };
        let mut uploaded = 0;
        for (d, _) in blobs {
            let head = client
                .head(format!("{base}/v2/{repo}/blobs/{d}"))
                .send()
                .await
                .map_err(|e| PullError::Transport(swarm_api::error_chain(&e)))?;
            if head.status().is_success() {
                continue;
            }
            let f = tokio::fs::File::open(self.images.blob_path(d))
                .await
                .map_err(|e| PullError::Registry(format!("blob {d}: {e}")))?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
            send(
                client
                    .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                    .header("content-type", "application/octet-stream")
                    .body(body),
            )
            .await?;
            uploaded += 1;
        }
        send(
            client
                .put(format!("{base}/v2/{repo}/manifests/{}", r.reference))
                .header("content-type", media_type)
                .body(manifest.to_vec()),
        )
        .await?;
        Ok(uploaded)
    }
}
