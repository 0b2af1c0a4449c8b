//! Readers that count bytes and enforce the size and ratio caps, and the
//! decompressor selection.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use crate::{Compression, Limits, ScanError};

/// Marker carried inside an `io::Error` when a cap is hit while reading.
#[derive(Debug)]
pub(crate) struct LimitHit(pub String);

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitHit {}

/// Shared counters of one layer read.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meter {
    /// Bytes read from the caller's reader.
    pub compressed: Rc<Cell<u64>>,
    /// Set when the caller's reader returned an error.
    pub raw_failed: Rc<Cell<bool>>,
}

impl Meter {
    /// Maps an I/O error seen by the tar reader to a [`ScanError`].
    pub fn error(&self, e: io::Error) -> ScanError {
        if let Some(hit) = e.get_ref().and_then(|inner| inner.downcast_ref::<LimitHit>()) {
            return ScanError::LimitExceeded(hit.0.clone());
        }
        if self.raw_failed.get() {
            return ScanError::Io(e);
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return ScanError::Corrupt("truncated layer".into());
        }
        ScanError::Corrupt(format!("decompression failed: {e}"))
    }
}

/// Counts the bytes of the caller's reader and remembers its failures.
pub(crate) struct Raw<R> {
    inner: R,
    meter: Meter,
}

impl<R: Read> Read for Raw<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.meter.compressed.set(self.meter.compressed.get().saturating_add(n as u64));
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.meter.raw_failed.set(true);
                }
                Err(e)
            }
        }
    }
}

type Source<R> = io::Chain<io::Cursor<Vec<u8>>, Raw<R>>;

/// The decompressed tar stream of one layer.
pub(crate) enum Decoded<R: Read> {
    Plain(Source<R>),
    Gzip(Box<flate2::read::MultiGzDecoder<Source<R>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<Source<R>>>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
        }
    }
}

/// Wraps the caller's reader in the counting reader and the decompressor.
pub(crate) fn decoder<R: Read>(
    compression: Compression,
    reader: R,
    meter: &Meter,
) -> Result<(Decoded<R>, bool), ScanError> {
    let mut raw = Raw { inner: reader, meter: meter.clone() };
    let mut prefix = Vec::new();
    let compression = if compression == Compression::Detect {
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < buf.len() {
            match raw.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(meter.error(e)),
            }
        }
        prefix.extend_from_slice(&buf[..got]);
        Compression::sniff(&prefix)
    } else {
        compression
    };
    let src = io::Cursor::new(prefix).chain(raw);
    Ok(match compression {
        Compression::Gzip => (Decoded::Gzip(Box::new(flate2::read::MultiGzDecoder::new(src))), true),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(src).map_err(|e| meter.error(e))?;
            d.window_log_max(27).map_err(|e| meter.error(e))?;
            (Decoded::Zstd(Box::new(d)), true)
        }
        Compression::None | Compression::Detect => (Decoded::Plain(src), false),
    })
}

/// Counts uncompressed bytes and enforces the total-size and ratio caps.
pub(crate) struct Metered<'l, D> {
    pub inner: D,
    pub meter: Meter,
    pub limits: &'l Limits,
    /// Uncompressed bytes of the layers before this one.
    pub before: u64,
    /// Uncompressed bytes of this layer so far.
    pub bytes: u64,
    /// Whether the ratio cap applies (the layer is compressed).
    pub compressed: bool,
}

impl<D: Read> Read for Metered<'_, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes = self.bytes.saturating_add(n as u64);
        if self.before.saturating_add(self.bytes) > self.limits.max_total_size {
            return Err(io::Error::other(LimitHit(format!(
                "max_total_size: more than {} uncompressed bytes",
                self.limits.max_total_size
            ))));
        }
        if self.compressed && self.bytes > self.limits.ratio_grace {
            let packed = self.meter.compressed.get().max(1);
            if self.bytes > packed.saturating_mul(self.limits.max_ratio) {
                return Err(io::Error::other(LimitHit(format!(
                    "max_ratio: {} uncompressed bytes from {packed} compressed bytes exceeds ratio {}",
                    self.bytes, self.limits.max_ratio
                ))));
            }
        }
        Ok(n)
    }
}
