//! OSV JSON → [`Advisory`].

use serde::Deserialize;
use serde_json::Value;

use crate::{Advisory, Affected, Cvss3, Error, Event, Range, Severity};

#[derive(Deserialize)]
struct RawAdvisory {
    id: String,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    affected: Option<Vec<RawAffected>>,
    #[serde(default)]
    references: Option<Vec<RawReference>>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawReference {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    events: Option<Vec<RawEvent>>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// The `severity` word of a `*_specific` object, if it is one we know.
fn word_severity(v: Option<&Value>) -> Option<Severity> {
    v?.get("severity")?.as_str().and_then(Severity::from_word)
}

fn first_cvss3(list: Option<&Vec<RawSeverity>>) -> Option<Cvss3> {
    list?.iter().filter(|s| s.kind == "CVSS_V3").find_map(|s| Cvss3::parse(&s.score))
}

/// Parses one OSV record (JSON object).
///
/// Requires `id`; every other field is optional, and `null` counts as absent.
/// Unknown fields are ignored. `affected[]` entries without a `package` (GIT-only
/// entries) are dropped. Events with no or several keys are dropped.
pub fn parse(json: &[u8]) -> Result<Advisory, Error> {
    // A record is an object: serde would also fill the struct from an array, positionally.
    let value: serde_json::Value = serde_json::from_slice(json)?;
    if !value.is_object() {
        return Err(Error::Invalid("an OSV record must be a JSON object".into()));
    }
    let raw: RawAdvisory = serde_json::from_value(value)?;
    if raw.id.trim().is_empty() {
        return Err(Error::Invalid("empty id".into()));
    }
    let aliases = raw.aliases.unwrap_or_default();
    let cve = std::iter::once(&raw.id).chain(&aliases).find(|a| a.starts_with("CVE-")).cloned();

    let raw_affected = raw.affected.unwrap_or_default();
    let cvss3 = first_cvss3(raw.severity.as_ref())
        .or_else(|| raw_affected.iter().find_map(|a| first_cvss3(a.severity.as_ref())));

    let mut affected = Vec::with_capacity(raw_affected.len());
    for a in raw_affected {
        let Some(package) = a.package else { continue };
        let severity =
            word_severity(a.ecosystem_specific.as_ref()).or_else(|| word_severity(a.database_specific.as_ref()));
        let ranges = a
            .ranges
            .unwrap_or_default()
            .into_iter()
            .map(|r| Range {
                kind: r.kind,
                repo: r.repo,
                events: r
                    .events
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|e| match (e.introduced, e.fixed, e.last_affected, e.limit) {
                        (Some(v), None, None, None) => Some(Event::Introduced(v)),
                        (None, Some(v), None, None) => Some(Event::Fixed(v)),
                        (None, None, Some(v), None) => Some(Event::LastAffected(v)),
                        (None, None, None, Some(v)) => Some(Event::Limit(v)),
                        _ => None,
                    })
                    .collect(),
            })
            .collect();
        affected.push(Affected {
            ecosystem: package.ecosystem,
            name: package.name,
            ranges,
            versions: a.versions.unwrap_or_default(),
            severity,
        });
    }

    let severity = match &cvss3 {
        Some(c) => Severity::from_score(c.base_score),
        None => word_severity(raw.database_specific.as_ref())
            .or_else(|| affected.iter().find_map(|a| a.severity))
            .unwrap_or(Severity::Undefined),
    };

    let refs = raw.references.unwrap_or_default();
    let by_kind =
        |k: &str| refs.iter().find(|r| r.kind.as_deref() == Some(k) && r.url.is_some()).and_then(|r| r.url.clone());
    let url = by_kind("ADVISORY").or_else(|| by_kind("WEB")).or_else(|| refs.iter().find_map(|r| r.url.clone()));

    Ok(Advisory {
        id: raw.id,
        aliases,
        summary: raw.summary,
        details: raw.details,
        modified: raw.modified,
        published: raw.published,
        withdrawn: raw.withdrawn.is_some(),
        cve,
        severity,
        cvss3,
        url,
        affected,
    })
}
