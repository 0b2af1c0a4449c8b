//! Streaming digests. Hashing runs on its own task, fed through a bounded channel, so that
//! receiving, writing and hashing a blob overlap; it holds a blocking thread only while there
//! are bytes to hash.

use berth_oci::{Algorithm, Digest};
use berth_storage::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use ring::digest::{Context, SHA256, SHA512};
use tokio::sync::mpsc;

/// A running digest and how many bytes it has seen.
#[derive(Clone)]
pub struct HashState {
    pub offset: u64,
    ctx: Ctx,
}

/// The implementation behind a digest, picked by measurement (BENCHMARKS.md): on CPUs with SHA
/// extensions RustCrypto's `sha2` (SHA-NI intrinsics) is the fastest SHA-256 we measured
/// (0.89 s/GiB vs ring 1.05, OpenSSL 1.02); without them ring's assembly (AVX2/SSSE3) is far
/// ahead of portable code. SHA-512 always uses ring.
#[derive(Clone)]
enum Ctx {
    Sha2(sha2::Sha256),
    Ring(Algorithm, Context),
}

fn has_sha_extensions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("sha"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl HashState {
    /// A fresh sha256 state.
    pub fn new() -> HashState {
        Self::with_algorithm(Algorithm::Sha256)
    }

    /// A fresh state for `alg`.
    pub fn with_algorithm(alg: Algorithm) -> HashState {
        let ctx = match alg {
            Algorithm::Sha256 if has_sha_extensions() => Ctx::Sha2(sha2::Sha256::default()),
            Algorithm::Sha256 => Ctx::Ring(alg, Context::new(&SHA256)),
            Algorithm::Sha512 => Ctx::Ring(alg, Context::new(&SHA512)),
        };
        HashState { offset: 0, ctx }
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.ctx {
            Ctx::Sha2(h) => sha2::Digest::update(h, data),
            Ctx::Ring(_, c) => c.update(data),
        }
        self.offset += data.len() as u64;
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self.ctx {
            Ctx::Sha2(h) => Digest::from_raw(Algorithm::Sha256, &sha2::Digest::finalize(h)),
            Ctx::Ring(alg, c) => Digest::from_raw(alg, c.finish().as_ref()),
        }
    }
}

/// The sha256 digest of `data`.
pub(crate) fn sha256_digest(data: &[u8]) -> Digest {
    let mut h = HashState::new();
    h.update(data);
    h.finish()
}

/// A hash running beside a stream.
pub struct Hasher {
    handle: tokio::task::JoinHandle<HashState>,
}

/// Chunks buffered between the stream and the hashing task.
const DEPTH: usize = 8;
/// A chunk this small that arrives alone is hashed on the async task (a few microseconds)
/// rather than handed to a blocking thread.
const INLINE_BYTES: usize = 16 * 1024;
/// Bytes hashed, at most, per turn on a blocking thread before it is given back.
const RUN_BYTES: usize = 64 * 1024 * 1024;

impl Hasher {
    /// Wrap `body` so that every chunk it yields is also hashed into `state`.
    ///
    /// The hashing runs on its own task, so that receiving, writing and hashing overlap. It
    /// takes a blocking thread only while chunks are waiting to be hashed, never while waiting
    /// for the client: a slow upload costs a task and at most [`DEPTH`] chunks, not a thread.
    pub fn tap(state: HashState, body: ByteStream) -> (ByteStream, Hasher) {
        let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
        let handle = tokio::spawn(hash_from(state, rx));
        let stream = futures::stream::unfold((body, Some(tx)), |(mut body, tx)| async move {
            let item = body.next().await?;
            let mut tx = tx;
            if let (Ok(chunk), Some(t)) = (&item, &tx)
                && t.send(chunk.clone()).await.is_err()
            {
                tx = None;
            }
            if item.is_err() {
                tx = None;
            }
            Some((item, (body, tx)))
        });
        (Box::pin(stream), Hasher { handle })
    }

    /// Wait for the hash of everything the stream yielded. Only meaningful when the stream
    /// was consumed to its end (it is dropped by then, which closes the channel).
    pub async fn finish(self) -> HashState {
        self.handle.await.expect("hashing task panicked")
    }
}

/// Hash every chunk `rx` yields until it closes. Each chunk awaited here is hashed, with the
/// chunks queued behind it (up to [`RUN_BYTES`]), in one short turn on a blocking thread.
async fn hash_from(mut state: HashState, mut rx: mpsc::Receiver<Bytes>) -> HashState {
    while let Some(first) = rx.recv().await {
        if first.len() <= INLINE_BYTES && rx.is_empty() {
            state.update(&first);
            continue;
        }
        (state, rx) = tokio::task::spawn_blocking(move || {
            let mut next = Some(first);
            let mut run = 0;
            while let Some(chunk) = next.take() {
                state.update(&chunk);
                run += chunk.len();
                if run < RUN_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            (state, rx)
        })
        .await
        .expect("hashing panicked");
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implementations_agree() {
        let data = vec![42u8; 100_000];
        let mut a = HashState::new();
        a.update(&data[..7]);
        let mut b = a.clone();
        a.update(&data[7..]);
        b.update(&data[7..]);
        let mut r = HashState { offset: 0, ctx: Ctx::Ring(Algorithm::Sha256, Context::new(&SHA256)) };
        r.update(&data);
        let ring = r.finish();
        assert_eq!(a.finish(), ring);
        assert_eq!(b.finish(), ring);
        let mut e = HashState::new();
        e.update(b"");
        assert_eq!(e.finish().as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
