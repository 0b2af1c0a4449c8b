//! Upload integrity under races: a committed blob always hashes to its digest.
//!
//! With `BERTH_TEST_BACKEND=postgres` (and, to matter most, `BERTH_TEST_STORAGE=s3`) the racing
//! requests go to two nodes sharing metadata and storage; on the embedded configuration (SQLite
//! and the filesystem) to one node, where they race on the same session all the same.

mod common;

use common::{Berth, sha256};
use reqwest::StatusCode;

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
}

/// Two writers PATCH different bytes (X and Y) at the same offset of one session at once, then
/// the session is finished with `?digest=sha256(X)`. Whatever the interleaving, the finish is
/// either refused with an OCI error, or answers 201 and the blob then serves exactly X; and a
/// later clean push of X serves X (no poisoned blob is ever deduplicated onto).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_patches_never_commit_a_losers_bytes() {
    let a = Berth::start();
    let two_nodes = std::env::var("BERTH_TEST_BACKEND").ok().as_deref() == Some("postgres");
    let b = two_nodes.then(|| a.another_node(&[]));
    let (url_a, url_b) = (a.url.clone(), b.as_ref().map_or(a.url.clone(), |b| b.url.clone()));
    let c = a.client();
    const ROUNDS: u64 = 30;
    let (mut committed, mut refused) = (0, 0);
    for i in 0..ROUNDS {
        // Small chunks (one S3 segment, folded) and, every third round, a chunk on top of a
        // first one past S3's minimum part size (a segment of its own at the racing offset).
        let prefix = if i % 3 == 2 { data(5 * 1024 * 1024 + 10, 1000 + i) } else { Vec::new() };
        let x = data(3000 + i as usize, 2 * i);
        let y = data(3000 + i as usize, 2 * i + 1);
        let mut whole = prefix.clone();
        whole.extend_from_slice(&x);
        let digest = sha256(&whole);

        let r = c.post(format!("{url_a}/v2/race/blobs/uploads/")).send().await.unwrap();
        assert_eq!(r.status(), 202, "round {i}: POST");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let abs = |base: &str| if loc.starts_with("http") { loc.clone() } else { format!("{base}{loc}") };
        let mut loc_a = abs(&url_a);
        if !prefix.is_empty() {
            let r = c
                .patch(&loc_a)
                .header("content-range", format!("0-{}", prefix.len() - 1))
                .body(prefix.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "round {i}: first chunk");
            loc_a = abs(&url_a);
        }
        let loc_b = loc_a.replace(&url_a, &url_b);
        let range = format!("{}-{}", prefix.len(), prefix.len() + x.len() - 1);
        let (rx, ry) = tokio::join!(
            c.patch(&loc_a).header("content-range", &range).body(x.clone()).send(),
            c.patch(&loc_b).header("content-range", &range).body(y.clone()).send(),
        );
        let (sx, sy) = (rx.unwrap().status(), ry.unwrap().status());
        for s in [sx, sy] {
            assert!(
                [StatusCode::ACCEPTED, StatusCode::NOT_FOUND, StatusCode::RANGE_NOT_SATISFIABLE].contains(&s),
                "round {i}: racing PATCH answered {s}"
            );
        }
        // Finish on the node that sent X, where its hash may be in memory.
        let sep = if loc_a.contains('?') { '&' } else { '?' };
        let r = c.put(format!("{loc_a}{sep}digest={digest}")).send().await.unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        if status == StatusCode::CREATED {
            committed += 1;
            for base in [&url_a, &url_b] {
                let r = c.get(format!("{base}/v2/race/blobs/{digest}")).send().await.unwrap();
                assert_eq!(r.status(), 200, "round {i}: GET the committed blob");
                let got = r.bytes().await.unwrap();
                assert_eq!(sha256(&got), digest, "round {i}: the committed blob does not hash to its digest");
            }
        } else {
            refused += 1;
            let code = error_code(&body);
            let ok = (status == StatusCode::BAD_REQUEST && code == "DIGEST_INVALID")
                || (status == StatusCode::NOT_FOUND && code == "BLOB_UPLOAD_UNKNOWN");
            assert!(ok, "round {i}: finish refused with {status} {code}: {}", String::from_utf8_lossy(&body));
        }
    }
    eprintln!("{ROUNDS} rounds: {committed} committed, {refused} refused");
    // Clean pushes of every X, from a repository of their own: each serves exactly X.
    for i in 0..ROUNDS {
        let prefix = if i % 3 == 2 { data(5 * 1024 * 1024 + 10, 1000 + i) } else { Vec::new() };
        let mut whole = prefix;
        whole.extend_from_slice(&data(3000 + i as usize, 2 * i));
        let digest = sha256(&whole);
        let r = c
            .post(format!("{url_a}/v2/clean/blobs/uploads/?digest={digest}"))
            .body(whole.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "round {i}: clean push");
        let r = c.get(format!("{url_b}/v2/clean/blobs/{digest}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap() == whole, "round {i}: a clean push of X serves other bytes");
    }
}
