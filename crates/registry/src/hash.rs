//! Streaming digests. Hashing runs on its own blocking thread, fed through a bounded channel,
//! so that receiving, writing and hashing a blob overlap.

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
    alg: Algorithm,
    ctx: Context,
}

impl HashState {
    /// A fresh sha256 state.
    pub fn new() -> HashState {
        Self::with_algorithm(Algorithm::Sha256)
    }

    /// A fresh state for `alg`.
    pub fn with_algorithm(alg: Algorithm) -> HashState {
        let ctx = match alg {
            Algorithm::Sha256 => Context::new(&SHA256),
            Algorithm::Sha512 => Context::new(&SHA512),
        };
        HashState {
            offset: 0,
            alg,
            ctx,
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.offset += data.len() as u64;
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_raw(self.alg, self.ctx.finish().as_ref())
    }
}

/// A hash running beside a stream.
pub struct Hasher {
    handle: tokio::task::JoinHandle<HashState>,
}

/// Chunks buffered between the stream and the hashing thread.
const DEPTH: usize = 8;

impl Hasher {
    /// Wrap `body` so that every chunk it yields is also hashed into `state`.
    pub fn tap(mut state: HashState, body: ByteStream) -> (ByteStream, Hasher) {
        let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
        let handle = tokio::task::spawn_blocking(move || {
            while let Some(b) = rx.blocking_recv() {
                state.update(&b);
            }
            state
        });
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
        self.handle.await.expect("hasher thread panicked")
    }
}
