//! Property tests: the `/v2` path grammar and manifest parsing never panic, whatever the input,
//! and what they accept is consistent. Cases per property: `PROPTEST_CASES` (default 256 here; a
//! longer run: `PROPTEST_CASES=100000 cargo test -p berth-oci --test never_panics`).

use berth_oci::manifest;
use berth_oci::path::{self, Route};
use proptest::prelude::*;

/// Path-like strings: segments drawn from registry words, names, digests and junk.
fn path_like() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("v2".to_string()),
        Just("blobs".to_string()),
        Just("uploads".to_string()),
        Just("manifests".to_string()),
        Just("tags".to_string()),
        Just("list".to_string()),
        Just("referrers".to_string()),
        Just("_catalog".to_string()),
        Just("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string()),
        "[a-z0-9._-]{0,12}",
        "\\PC{0,8}",
        Just(String::new()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
    ];
    prop::collection::vec(seg, 0..10).prop_map(|s| format!("/{}", s.join("/")))
}

/// JSON values shaped like manifests, with wrong types and odd values mixed in.
fn json_like() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "\\PC{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::json!("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")),
        Just(serde_json::json!("application/vnd.oci.image.manifest.v1+json")),
        Just(serde_json::json!("application/vnd.oci.image.index.v1+json")),
        Just(serde_json::json!(2)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("schemaVersion".to_string()),
            Just("mediaType".to_string()),
            Just("config".to_string()),
            Just("layers".to_string()),
            Just("manifests".to_string()),
            Just("digest".to_string()),
            Just("size".to_string()),
            Just("subject".to_string()),
            Just("artifactType".to_string()),
            Just("annotations".to_string()),
            "[a-zA-Z]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn path_parse_never_panics(p in path_like()) {
        if let Some(route) = path::parse(&p) {
            // Components are raw (callers validate them): a name that passes the repository-name
            // grammar cannot escape its namespace.
            let name = match route {
                Route::Tags { name } | Route::Manifest { name, .. } | Route::Blob { name, .. }
                | Route::UploadStart { name } | Route::Upload { name, .. } | Route::Referrers { name, .. } => Some(name),
                Route::Base | Route::Catalog => None,
            };
            if let Some(n) = name.filter(|n| n.parse::<berth_oci::RepoName>().is_ok()) {
                prop_assert!(!n.split('/').any(|s| s == ".." || s == "." || s.is_empty()), "{n}");
            }
        }
    }

    #[test]
    fn path_parse_never_panics_on_any_text(p in "\\PC{0,200}") {
        let _ = path::parse(&p);
    }

    #[test]
    fn manifest_parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), ct in prop::option::of("\\PC{0,40}")) {
        let _ = manifest::parse(ct.as_deref(), &bytes);
    }

    #[test]
    fn manifest_parse_never_panics_on_json(v in json_like(), ct in prop::option::of(prop_oneof![
        Just("application/vnd.oci.image.manifest.v1+json".to_string()),
        Just("application/vnd.docker.distribution.manifest.list.v2+json".to_string()),
        "\\PC{0,30}",
    ])) {
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(m) = manifest::parse(ct.as_deref(), &bytes) {
            // An accepted manifest has a supported media type and no control characters in it.
            prop_assert!(!m.media_type.chars().any(char::is_control));
        }
    }
}
