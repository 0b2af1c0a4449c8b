//! A lenient manifest model: validates what the registry relies on and ignores unknown fields.
//! The raw bytes stay the source of truth; this only extracts references.

use crate::{Digest, media};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON or not a valid manifest of its type.
    #[error("{0}")]
    Invalid(String),
}

/// A content descriptor (lenient).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Whether a manifest lists blobs (image) or other manifests (index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// What the registry needs to know about a pushed manifest.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The effective media type (body `mediaType`, else `Content-Type`, else inferred).
    pub media_type: String,
    pub kind: Kind,
    /// Blobs the manifest needs in the repository (config + distributable layers), with their
    /// declared sizes.
    pub blobs: Vec<(Digest, i64)>,
    /// Child manifests (indexes only), with their declared sizes.
    pub children: Vec<(Digest, i64)>,
    pub subject: Option<Digest>,
    /// `artifactType`, else (image manifests) the config media type, as the referrers API reports it.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// The config descriptor's media type (image manifests).
    pub config_media_type: Option<String>,
}

/// `true` for the media types Berth accepts as manifests.
pub fn is_manifest_type(mt: &str) -> bool {
    matches!(mt, media::OCI_MANIFEST | media::OCI_INDEX | media::DOCKER_MANIFEST | media::DOCKER_LIST)
}

/// Strip parameters (`; charset=...`) and whitespace from a Content-Type value.
pub fn base_media_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

fn digest_of(d: &Descriptor, what: &str) -> Result<Digest, ManifestError> {
    if d.size < 0 {
        return Err(ManifestError::Invalid(format!("{what} descriptor has a negative size")));
    }
    d.digest
        .parse()
        .map_err(|_| ManifestError::Invalid(format!("{what} descriptor has an invalid digest '{}'", d.digest)))
}

/// Parse and validate manifest bytes pushed with `content_type`.
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Parsed, ManifestError> {
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Invalid(format!("manifest is not valid JSON: {e}")))?;
    match raw.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err(ManifestError::Invalid("schema 1 manifests are not supported".into()));
        }
        Some(v) => {
            return Err(ManifestError::Invalid(format!("unsupported schemaVersion {v}")));
        }
        None => return Err(ManifestError::Invalid("schemaVersion is missing".into())),
    }
    let ct = content_type.map(base_media_type).filter(|c| is_manifest_type(c));
    let media_type = match (&raw.media_type, ct) {
        (Some(body), Some(ct)) if body != ct => {
            return Err(ManifestError::Invalid(format!("mediaType '{body}' does not match Content-Type '{ct}'")));
        }
        (Some(body), _) => body.clone(),
        (None, Some(ct)) => ct.to_string(),
        (None, None) => {
            if raw.manifests.is_some() {
                media::OCI_INDEX.to_string()
            } else {
                media::OCI_MANIFEST.to_string()
            }
        }
    };
    let kind = match media_type.as_str() {
        media::OCI_MANIFEST | media::DOCKER_MANIFEST => Kind::Image,
        media::OCI_INDEX | media::DOCKER_LIST => Kind::Index,
        other => {
            return Err(ManifestError::Invalid(format!("unsupported manifest media type '{other}'")));
        }
    };
    let subject = raw.subject.as_ref().map(|s| digest_of(s, "subject")).transpose()?;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let mut config_media_type = None;
    match kind {
        Kind::Image => {
            if raw.manifests.is_some() {
                return Err(ManifestError::Invalid("an image manifest cannot have 'manifests'".into()));
            }
            let config = raw.config.as_ref().ok_or_else(|| ManifestError::Invalid("config is missing".into()))?;
            blobs.push((digest_of(config, "config")?, config.size));
            config_media_type = Some(config.media_type.clone());
            let layers = raw.layers.as_ref().ok_or_else(|| ManifestError::Invalid("layers is missing".into()))?;
            for l in layers {
                let d = digest_of(l, "layer")?;
                if !media::is_non_distributable(&l.media_type) {
                    blobs.push((d, l.size));
                }
            }
        }
        Kind::Index => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(ManifestError::Invalid("an index cannot have 'config' or 'layers'".into()));
            }
            let ms = raw.manifests.as_ref().ok_or_else(|| ManifestError::Invalid("manifests is missing".into()))?;
            for m in ms {
                children.push((digest_of(m, "manifest")?, m.size));
            }
        }
    }
    // Media types follow RFC 6838: no control characters (nor can every store keep them).
    let types = [Some(&media_type), raw.artifact_type.as_ref(), config_media_type.as_ref()];
    let layer_types = raw.layers.iter().flatten().chain(raw.manifests.iter().flatten()).map(|d| Some(&d.media_type));
    if let Some(bad) = types.into_iter().chain(layer_types).flatten().find(|t| t.chars().any(char::is_control)) {
        return Err(ManifestError::Invalid(format!("media type {bad:?} holds control characters")));
    }
    let artifact_type = raw.artifact_type.clone().filter(|a| !a.is_empty()).or_else(|| match kind {
        Kind::Image if media_type == media::OCI_MANIFEST => config_media_type.clone(),
        _ => None,
    });
    Ok(Parsed {
        media_type,
        kind,
        blobs,
        children,
        subject,
        artifact_type,
        annotations: raw.annotations,
        config_media_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn image_and_index() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"x","digest":"{D}","size":2}},"layers":[],"extra":1}}"#,
            media::OCI_MANIFEST
        );
        let p = parse(Some(media::OCI_MANIFEST), m.as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Image);
        assert_eq!(p.artifact_type.as_deref(), Some("x"));
        assert!(parse(Some(media::DOCKER_MANIFEST), m.as_bytes()).is_err());
        let i = format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{D}","size":2}}]}}"#);
        let p = parse(None, i.as_bytes()).unwrap();
        assert_eq!(p.media_type, media::OCI_INDEX);
        assert_eq!(p.children.len(), 1);
        assert!(parse(None, b"{").is_err());
        assert!(parse(None, br#"{"schemaVersion":1}"#).is_err());
        assert!(parse(None, br#"{"schemaVersion":2,"config":{"digest":"x","size":1},"layers":[]}"#).is_err());
    }
}
