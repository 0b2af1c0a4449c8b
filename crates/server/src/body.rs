//! Reading control-plane request bodies (ECR JSON, IAM/STS Query) with bounded memory.
//!
//! The control plane needs a whole body before it can check SigV4's payload hash and parse it,
//! so bodies are buffered. What a client can make the server hold is bounded three ways:
//! - **Before any body byte:** the handlers check the header part of the signature (form,
//!   scope, date, known access key) and refuse a declared `Content-Length` over the operation's
//!   limit. An unauthenticated client never gets a body buffered.
//! - **Per request:** [`read`] stops at the operation's limit (bodies without `Content-Length`
//!   included) and at a body that stalls for [`STALL_TIMEOUT`].
//! - **Across requests:** every body being buffered or served holds a [`Reservation`] of its
//!   size from one process-wide budget of [`BUDGET_BYTES`]. A request that cannot get its
//!   reservation within [`BUDGET_WAIT`] is refused as throttled (the caller answers ECR's
//!   `ThrottlingException`, which SDKs retry with backoff); its body is never read.
//!
//! An answer sent before the body was read to its end keeps the connection usable through the
//! connection layer (`conn.rs`), which drains what is left or announces `Connection: close`.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body_util::BodyExt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Body bytes all control-plane requests together may hold at once (reserved, then buffered).
pub const BUDGET_BYTES: usize = 256 * 1024 * 1024;
/// How long a request waits for its share of [`BUDGET_BYTES`] before it is refused as throttled.
pub const BUDGET_WAIT: Duration = Duration::from_secs(5);
/// A body that sends nothing for this long fails.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

static BUDGET: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(BUDGET_BYTES)));

/// A share of [`BUDGET_BYTES`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

/// The `Content-Length` the client declared, if any (and parseable).
pub fn declared_len(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Reserve `bytes` of the body budget, waiting at most [`BUDGET_WAIT`]; `None` when the budget
/// stays exhausted that long. A request larger than the whole budget reserves all of it.
pub async fn reserve(bytes: u64) -> Option<Reservation> {
    reserve_within(bytes, BUDGET_WAIT).await
}

async fn reserve_within(bytes: u64, wait: Duration) -> Option<Reservation> {
    let n = bytes.min(BUDGET_BYTES as u64) as u32;
    let permit = tokio::time::timeout(wait, BUDGET.clone().acquire_many_owned(n)).await.ok()?.ok()?;
    Some(Reservation { _permit: permit })
}

/// Why [`read`] failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The body is longer than the limit (the rest is still unread).
    TooLarge,
    /// The body failed or stalled.
    Failed,
}

/// Read the whole of `body`, at most `limit` bytes. `capacity` is allocated up front (the
/// declared length, already reserved). On [`ReadError::TooLarge`] the excess stays unread in
/// `body` (see [`finish`]).
pub async fn read(body: &mut Body, limit: u64, capacity: u64) -> Result<Bytes, ReadError> {
    let mut buf = BytesMut::with_capacity(capacity.min(limit) as usize);
    loop {
        let frame = match tokio::time::timeout(STALL_TIMEOUT, body.frame()).await {
            Err(_) | Ok(Some(Err(_))) => return Err(ReadError::Failed),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_stops_at_the_limit() {
        let mut b = Body::from(vec![7u8; 100]);
        assert_eq!(read(&mut b, 100, 100).await.unwrap().len(), 100);
        let mut b = Body::from(vec![7u8; 101]);
        assert_eq!(read(&mut b, 100, 100).await, Err(ReadError::TooLarge));
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_given_back() {
        let short = Duration::from_millis(20);
        let half = reserve_within(BUDGET_BYTES as u64 / 2, short).await.expect("half the budget");
        let all = reserve_within(BUDGET_BYTES as u64 * 2, short).await;
        assert!(all.is_none(), "the whole budget is not available while half of it is held");
        drop(half);
        let all =
            reserve_within(BUDGET_BYTES as u64 * 2, short).await.expect("a request over the budget takes all of it");
        assert!(reserve_within(1, short).await.is_none(), "nothing left while the whole budget is held");
        drop(all);
        assert!(reserve_within(BUDGET_BYTES as u64, short).await.is_some());
    }
}
