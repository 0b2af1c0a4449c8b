//! Image and layer operations of the control plane (ECR PutImage, BatchGetImage,
//! BatchDeleteImage, DescribeImages, ListImages, ListImageReferrers and the layer-upload API).
//! They act on a namespace (account, region) and share the data plane's code paths.

use crate::{Error, PushedManifest, Registry, RepoEntry, Result, UploadStatus};
use berth_meta::ImageStatus;
use berth_meta::{Image, ImageKey, ImagesFrom, Namespace, Referrer, TagStatus};
use berth_oci::{Digest, Reference, Tag};
use berth_storage::ByteStream;
use bytes::Bytes;
use std::sync::Arc;

/// An image reference as the ECR API spells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageId {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
}

/// Why one image of a batch could not be resolved (ECR's `ImageFailureCode` and reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    pub code: &'static str,
    pub reason: String,
}

/// Where a listing of image ids continues: after the id of the image at `key` with `tag`, or
/// after the image's digest-only id when `tag` is `None` (an untagged image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageIdCursor {
    pub key: ImageKey,
    pub tag: Option<String>,
}

impl ImageIdCursor {
    /// The cursor as an opaque `nextToken`.
    pub fn to_token(&self) -> String {
        token("l", &self.key, self.tag.as_deref().unwrap_or(""))
    }

    /// A cursor from a `nextToken` of [`ImageIdCursor::to_token`]; `None` when it is not one.
    pub fn from_token(t: &str) -> Option<ImageIdCursor> {
        let (key, tag) = from_token(t, "l")?;
        let tag = if tag.is_empty() { None } else { Some(tag.parse::<Tag>().ok()?.to_string()) };
        Some(ImageIdCursor { key, tag })
    }
}

/// An image key as an opaque `nextToken` (DescribeImages, ListImageReferrers).
pub fn image_key_token(key: &ImageKey) -> String {
    token("d", key, "")
}

/// The image key of a `nextToken` of [`image_key_token`]; `None` when it is not one.
pub fn image_key_from_token(t: &str) -> Option<ImageKey> {
    from_token(t, "d").filter(|(_, rest)| rest.is_empty()).map(|(key, _)| key)
}

/// `kind|pushed_at|digest|rest`, hex-encoded: a token tied to one kind of listing.
fn token(kind: &str, key: &ImageKey, rest: &str) -> String {
    hex::encode(format!("{kind}|{}|{}|{rest}", key.pushed_at, key.digest))
}

/// The key and the rest of a [`token`] of `kind`; `None` when it is not one.
fn from_token(t: &str, kind: &str) -> Option<(ImageKey, String)> {
    let text = String::from_utf8(hex::decode(t).ok()?).ok()?;
    let mut parts = text.splitn(4, '|');
    let (k, at, digest, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if k != kind || digest.parse::<Digest>().is_err() {
        return None;
    }
    Some((ImageKey { pushed_at: at.parse().ok()?, digest: digest.to_string() }, rest.to_string()))
}

/// Cut a page read with one item more than `limit`: whether there are more.
fn cut_page<T>(items: &mut Vec<T>, limit: u32) -> bool {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    more
}

impl ImageFailure {
    fn new(code: &'static str, reason: impl Into<String>) -> ImageFailure {
        ImageFailure { code, reason: reason.into() }
    }
}

impl Registry {
    /// A repository of a namespace, or RepositoryNotFound.
    pub(crate) async fn repo_in(&self, ns: &Namespace, name: &str) -> Result<Arc<RepoEntry>> {
        self.repo_entry_in(ns, name)
            .await?
            .ok_or_else(|| Error::RepositoryNotFound { name: name.to_string(), registry: ns.account_id.clone() })
    }

    /// The image an image id names in a repository (one or two index lookups, whatever the
    /// repository's size), or why it names none (ECR's batch failure codes).
    pub async fn image_by_id(
        &self,
        ns: &Namespace,
        name: &str,
        id: &ImageId,
    ) -> Result<std::result::Result<Image, ImageFailure>> {
        let repo = self.repo_in(ns, name).await?;
        self.image_in(repo.id, id).await
    }

    pub(crate) async fn image_in(
        &self,
        repo_id: i64,
        id: &ImageId,
    ) -> Result<std::result::Result<Image, ImageFailure>> {
        let not_found = || ImageFailure::new("ImageNotFound", "Requested image not found");
        let digest = match (&id.image_digest, &id.image_tag) {
            (None, None) => return Ok(Err(ImageFailure::new("MissingDigestAndTag", "Missing image digest and tag"))),
            (Some(d), _) => {
                if d.parse::<Digest>().is_err() {
                    return Ok(Err(ImageFailure::new(
                        "InvalidImageDigest",
                        "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
                    )));
                }
                d.clone()
            }
            (None, Some(t)) => {
                if t.parse::<Tag>().is_err() {
                    return Ok(Err(ImageFailure::new(
                        "InvalidImageTag",
                        "Invalid request parameters: image tag should satisfy the regex '[a-zA-Z0-9-_.]+'",
                    )));
                }
                match self.meta.resolve_tag(repo_id, t).await? {
                    Some(d) => d,
                    None => return Ok(Err(not_found())),
                }
            }
        };
        let Some(img) = self.meta.image(repo_id, &digest).await? else { return Ok(Err(not_found())) };
        if let (Some(_), Some(t)) = (&id.image_digest, &id.image_tag)
            && !img.tags.iter().any(|x| x == t)
        {
            return Ok(Err(ImageFailure::new(
                "ImageTagDoesNotMatchDigest",
                "Invalid request parameters: given tag does not map to the given digest",
            )));
        }
        Ok(Ok(img))
    }

    /// One page of a repository's images (DescribeImages): at most `limit` matching `status`
    /// and `image_status` (`None`: any) after `after`, and where the next page starts when
    /// there are more.
    pub async fn images_page(
        &self,
        ns: &Namespace,
        name: &str,
        status: TagStatus,
        image_status: Option<berth_meta::ImageStatus>,
        after: Option<&ImageKey>,
        limit: u32,
    ) -> Result<(Vec<Image>, Option<ImageKey>)> {
        let repo = self.repo_in(ns, name).await?;
        let from = after.map_or(ImagesFrom::Start, ImagesFrom::After);
        let mut page = self.meta.images_page(repo.id, status, image_status, from, limit.saturating_add(1)).await?;
        let next = if cut_page(&mut page, limit) { page.last().map(Image::key) } else { None };
        Ok((page, next))
    }

    /// One page of a repository's image ids (ListImages): one id per tag, and a digest-only id
    /// for each untagged image, in listing order, at most `limit` after `after`; and where the
    /// next page starts when there are more. Reads about `limit` images, whatever the
    /// repository's size.
    pub async fn image_ids_page(
        &self,
        ns: &Namespace,
        name: &str,
        status: TagStatus,
        image_status: Option<berth_meta::ImageStatus>,
        after: Option<&ImageIdCursor>,
        limit: u32,
    ) -> Result<(Vec<ImageId>, Option<ImageIdCursor>)> {
        let repo = self.repo_in(ns, name).await?;
        let want = limit as usize + 1;
        let mut ids: Vec<ImageIdCursor> = Vec::new();
        // The cursor's image again when it stopped inside the image's tags, else after it.
        let mut from: Option<(ImageKey, bool)> = after.map(|c| (c.key.clone(), c.tag.is_some()));
        loop {
            let batch = (want - ids.len()) as u32 + 1;
            let start = match &from {
                None => ImagesFrom::Start,
                Some((k, true)) => ImagesFrom::At(k),
                Some((k, false)) => ImagesFrom::After(k),
            };
            let page = self.meta.images_page(repo.id, status, image_status, start, batch).await?;
            for img in &page {
                let key = img.key();
                let at_cursor = after.filter(|c| c.key == key);
                if img.tags.is_empty() {
                    // An image listed by a tag before, untagged since, is not listed again.
                    if at_cursor.is_none() {
                        ids.push(ImageIdCursor { key, tag: None });
                    }
                    continue;
                }
                let done = at_cursor.and_then(|c| c.tag.as_deref());
                for t in img.tags.iter().filter(|t| done.is_none_or(|d| t.as_str() > d)) {
                    ids.push(ImageIdCursor { key: key.clone(), tag: Some(t.clone()) });
                }
            }
            if ids.len() >= want || page.len() < batch as usize {
                break;
            }
            from = page.last().map(|i| (i.key(), false));
        }
        let next = if cut_page(&mut ids, limit) { ids.last().cloned() } else { None };
        let out = ids.into_iter().map(|c| ImageId { image_digest: Some(c.key.digest), image_tag: c.tag }).collect();
        Ok((out, next))
    }

    /// Whether the repository holds manifest `digest` (active), and whether `tag` (if given)
    /// points at it.
    pub async fn image_state(
        &self,
        ns: &Namespace,
        name: &str,
        digest: &str,
        tag: Option<&str>,
    ) -> Result<(bool, bool)> {
        let repo = self.repo_in(ns, name).await?;
        // An archived image counts as absent: pushing it again restores it.
        let active = self.meta.manifest(repo.id, digest).await?.is_some_and(|m| m.status == ImageStatus::Active);
        let tagged = active
            && match tag {
                Some(t) => self.meta.resolve_tag(repo.id, t).await?.as_deref() == Some(digest),
                None => false,
            };
        Ok((active, tagged))
    }

    /// The exact bytes of a manifest of the repository.
    pub async fn manifest_bytes(&self, ns: &Namespace, name: &str, digest: &str) -> Result<Option<(String, Vec<u8>)>> {
        let repo = self.repo_in(ns, name).await?;
        Ok(self.meta.manifest(repo.id, digest).await?.map(|m| (m.media_type, m.content)))
    }

    /// Push a manifest through the control plane (PutImage), tagged or by digest.
    pub async fn put_image(
        &self,
        ns: &Namespace,
        name: &str,
        manifest: Bytes,
        media_type: Option<&str>,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<PushedManifest> {
        let repo = self.repo_in(ns, name).await?;
        let reference = match (tag, digest) {
            (Some(t), _) => Reference::Tag(t.parse().map_err(|_| Error::TagInvalid(t.to_string()))?),
            (None, Some(d)) => Reference::Digest(d.clone()),
            (None, None) => {
                let mut h = crate::hash::HashState::new();
                h.update(&manifest);
                Reference::Digest(h.finish())
            }
        };
        let pushed = self.put_manifest_in(ns, &repo, name, &reference, media_type, manifest, &[], false).await?;
        Ok(pushed)
    }

    /// Delete one image id (BatchDeleteImage semantics): a tag removes that tag and, when it was
    /// the image's last tag, the image; a digest removes the image with all its tags. Returns the
    /// deleted image's digest and tag.
    pub async fn delete_image(
        &self,
        ns: &Namespace,
        name: &str,
        id: &ImageId,
    ) -> Result<std::result::Result<ImageId, ImageFailure>> {
        let repo = self.repo_in(ns, name).await?;
        let img = match self.image_in(repo.id, id).await? {
            Ok(i) => i,
            Err(f) => return Ok(Err(f)),
        };
        let whole = id.image_tag.is_none() || img.tags.len() <= 1;
        if whole && self.meta.referenced_by_index(repo.id, &img.digest).await? {
            return Ok(Err(ImageFailure::new(
                "ImageReferencedByManifestList",
                "Requested image referenced by manifest list: [image index]",
            )));
        }
        if whole {
            self.meta.delete_manifest(repo.id, &img.digest, self.now()).await?;
        } else if let Some(t) = &id.image_tag {
            self.meta.delete_tag(repo.id, t, self.now()).await?;
        }
        self.cache.invalidate(repo.id);
        Ok(Ok(ImageId { image_digest: Some(img.digest.clone()), image_tag: id.image_tag.clone() }))
    }

    /// One page of the manifests whose subject is `subject` (ListImageReferrers): at most
    /// `limit` after `after`, of one of `artifact_types` when any are given (at most five) and of
    /// `status` when given; and where the next page starts when there are more.
    #[allow(clippy::too_many_arguments)]
    pub async fn referrers_page(
        &self,
        ns: &Namespace,
        name: &str,
        subject: &Digest,
        artifact_types: &[&str],
        status: Option<ImageStatus>,
        after: Option<&ImageKey>,
        limit: u32,
    ) -> Result<(Vec<Referrer>, Option<ImageKey>)> {
        let repo = self.repo_in(ns, name).await?;
        let mut page = self
            .meta
            .referrers_page(repo.id, subject.as_str(), artifact_types, status, after, limit.saturating_add(1))
            .await?;
        let more = cut_page(&mut page, limit);
        let next = page.last().filter(|_| more).map(|r| ImageKey { pushed_at: r.pushed_at, digest: r.digest.clone() });
        Ok((page, next))
    }

    /// Size of a blob linked to the repository.
    pub async fn layer_size(&self, ns: &Namespace, name: &str, digest: &str) -> Result<Option<u64>> {
        let repo = self.repo_in(ns, name).await?;
        Ok(self.meta.blob_in_repo(repo.id, digest).await?)
    }

    /// Open a layer upload (InitiateLayerUpload).
    pub async fn initiate_layer_upload(&self, ns: &Namespace, name: &str) -> Result<UploadStatus> {
        let repo = self.repo_in(ns, name).await?;
        self.start_upload_in(repo.id).await
    }

    /// Append a part (UploadLayerPart); `range` must start where the upload ends.
    pub async fn upload_layer_part(
        &self,
        ns: &Namespace,
        name: &str,
        id: &str,
        range: berth_oci::range::ChunkRange,
        part: Bytes,
    ) -> Result<u64> {
        let repo = self.repo_in(ns, name).await?;
        let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(part) }));
        Ok(self.patch_in(Some(repo.id), id, Some(range), body).await?.size)
    }

    /// Complete a layer upload as `digest` (CompleteLayerUpload).
    pub async fn complete_layer_upload(&self, ns: &Namespace, name: &str, id: &str, digest: &Digest) -> Result<u64> {
        let repo = self.repo_in(ns, name).await?;
        let up = self.session_in(Some(repo.id), id).await?;
        if up.size == 0 {
            return Err(Error::EmptyUpload(id.to_string()));
        }
        if self.meta.blob_in_repo(repo.id, digest.as_str()).await?.is_some() {
            self.discard_upload(id).await?;
            return Err(Error::LayerAlreadyExists(digest.to_string()));
        }
        self.finish_in(Some(repo.id), id, digest, None, None)
            .await
            .map_err(|e| e.gone_as_not_found(name, &ns.account_id))
    }

    /// A URL that downloads one layer without credentials for an hour (GetDownloadUrlForLayer),
    /// like ECR's presigned layer URLs: the query carries an expiry and an HMAC (server key) over
    /// the namespace, repository, digest and expiry, so the URL grants that one blob only.
    pub fn download_url(&self, base: &str, ns: &Namespace, name: &str, digest: &str) -> String {
        let expires = (self.now().max(0) / 1000) as u64 + DOWNLOAD_URL_LIFETIME_SECS;
        let sig = ring::hmac::sign(&self.keys.urls, download_url_message(ns, name, digest, expires).as_bytes());
        let mut url =
            format!("{base}/v2/{name}/blobs/{digest}?X-Berth-Expires={expires}&X-Berth-Signature={}", hex::encode(sig));
        // The plain address serves the default account to a caller without credentials: name
        // any other account (the signature covers it).
        if self.settings.registry_domain.is_none() && ns.account_id != self.settings.namespace.account_id {
            url.push_str(&format!("&X-Berth-Account={}", ns.account_id));
        }
        url
    }

    /// Check a download URL's query against the blob it addresses.
    pub fn verify_download_url(
        &self,
        ns: &Namespace,
        name: &str,
        digest: &str,
        expires: &str,
        sig: &str,
    ) -> Result<()> {
        let expires: u64 = expires.parse().map_err(|_| Error::Unauthenticated)?;
        let sig = hex::decode(sig).map_err(|_| Error::Unauthenticated)?;
        ring::hmac::verify(&self.keys.urls, download_url_message(ns, name, digest, expires).as_bytes(), &sig)
            .map_err(|_| Error::Unauthenticated)?;
        if (self.now().max(0) / 1000) as u64 > expires {
            return Err(Error::Denied("Request has expired".into()));
        }
        Ok(())
    }
}

/// How long a layer download URL works.
const DOWNLOAD_URL_LIFETIME_SECS: u64 = 3600;

fn download_url_message(ns: &Namespace, name: &str, digest: &str, expires: u64) -> String {
    format!("berth-layer-url\0{}\0{}\0{name}\0{digest}\0{expires}", ns.account_id, ns.region)
}
