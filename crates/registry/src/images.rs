//! Image and layer operations of the control plane (ECR PutImage, BatchGetImage,
//! BatchDeleteImage, DescribeImages, ListImages, ListImageReferrers and the layer-upload API).
//! They act on a namespace (account, region) and share the data plane's code paths.

use crate::{Error, PushedManifest, Registry, RepoEntry, Result, UploadStatus};
use berth_meta::{Image, Namespace, Referrer};
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

    /// Every image of a repository with its tags, oldest first.
    pub async fn images(&self, ns: &Namespace, name: &str) -> Result<Vec<Image>> {
        let repo = self.repo_in(ns, name).await?;
        Ok(self.meta.images(repo.id).await?)
    }

    /// Resolve an image id against a repository's images: the image, or the batch failure.
    pub fn resolve_image<'a>(images: &'a [Image], id: &ImageId) -> std::result::Result<&'a Image, ImageFailure> {
        let not_found = || ImageFailure::new("ImageNotFound", "Requested image not found");
        match (&id.image_digest, &id.image_tag) {
            (None, None) => Err(ImageFailure::new("MissingDigestAndTag", "Missing image digest and tag")),
            (Some(d), tag) => {
                if d.parse::<Digest>().is_err() {
                    return Err(ImageFailure::new(
                        "InvalidImageDigest",
                        "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
                    ));
                }
                let img = images.iter().find(|i| &i.digest == d).ok_or_else(not_found)?;
                if let Some(t) = tag
                    && !img.tags.iter().any(|x| x == t)
                {
                    return Err(ImageFailure::new(
                        "ImageTagDoesNotMatchDigest",
                        "Invalid request parameters: given tag does not map to the given digest",
                    ));
                }
                Ok(img)
            }
            (None, Some(t)) => {
                if t.parse::<Tag>().is_err() {
                    return Err(ImageFailure::new(
                        "InvalidImageTag",
                        "Invalid request parameters: image tag should satisfy the regex '[a-zA-Z0-9-_.]+'",
                    ));
                }
                images.iter().find(|i| i.tags.iter().any(|x| x == t)).ok_or_else(not_found)
            }
        }
    }

    /// Whether the repository holds manifest `digest`, and whether `tag` (if given) points at it.
    pub async fn image_state(
        &self,
        ns: &Namespace,
        name: &str,
        digest: &str,
        tag: Option<&str>,
    ) -> Result<(bool, bool)> {
        let repo = self.repo_in(ns, name).await?;
        let tagged = match tag {
            Some(t) => self.meta.resolve_tag(repo.id, t).await?.as_deref() == Some(digest),
            None => false,
        };
        let exists = tagged || self.meta.manifest(repo.id, digest).await?.is_some();
        Ok((exists, tagged))
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
        let pushed = self.put_manifest_in(ns, &repo, name, &reference, media_type, manifest, &[]).await?;
        Ok(pushed)
    }

    /// Delete one image id (BatchDeleteImage semantics): a tag removes that tag and, when it was
    /// the image's last tag, the image; a digest removes the image with all its tags. Returns the
    /// deleted image's digest and tag.
    pub async fn delete_image(
        &self,
        ns: &Namespace,
        name: &str,
        images: &[Image],
        id: &ImageId,
    ) -> Result<std::result::Result<ImageId, ImageFailure>> {
        let repo = self.repo_in(ns, name).await?;
        let img = match Self::resolve_image(images, id) {
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

    /// Manifests whose subject is `subject` (ListImageReferrers).
    pub async fn referrers_in(&self, ns: &Namespace, name: &str, subject: &Digest) -> Result<Vec<Referrer>> {
        let repo = self.repo_in(ns, name).await?;
        Ok(self.meta.referrers(repo.id, subject.as_str(), None).await?)
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
