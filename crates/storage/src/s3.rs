//! S3-compatible object storage blob store.
//!
//! ```text
//! <bucket>/<prefix>/
//!   blobs/<algorithm>/<first two hex>/<hex>     committed blobs, immutable
//!   uploads/<id>/<start offset, 20 digits>      segments of an upload area
//! ```
//!
//! All state lives in the bucket, so an upload begun on one node continues on any other node
//! sharing the bucket and the metadata database.
//!
//! # Upload areas
//!
//! An area is a run of segment objects `uploads/<id>/<start, 20 digits>.<nonce>`, where `start`
//! is the offset in the upload of the segment's first byte and `nonce` is fresh and random for
//! every append: an append only ever writes keys of its own nonce, so it never overwrites a
//! byte that another append wrote. Which segments make up the area is not found by listing but
//! named by the *area state* that `upload_append` returns and the caller records in its
//! metadata with the size, in one compare-and-set:
//!
//! ```text
//! <end>/<start>.<nonce>,<start>.<nonce>,...      ("" for the empty area)
//! ```
//!
//! Segment `i` of a state holds the bytes `[start_i, start_{i+1})` of the upload, the last one
//! `[start_last, end)`; an object may be physically longer (a later rewind). Two nodes appending
//! from the same state at the same offset write disjoint keys and return different states; only
//! the state that wins the caller's compare-and-set is ever read or committed, so a losing
//! writer's bytes can never end up in a blob (its keys are garbage, removed with the area).
//! `upload_create` writes nothing.
//!
//! Invariant: every segment but the last covers at least [`MIN_PART`] bytes (S3's minimum
//! multipart part size) and at most `segment_max` bytes (below the 5 GiB copy limit), so a
//! commit can assemble the blob inside the bucket with one `UploadPartCopy` per segment.
//!
//! `upload_append(id, state, offset, body)`:
//! 1. the state is cut at `offset` (segments starting at or past it are dropped from it);
//! 2. the last remaining segment keeps `k = offset - start` bytes. When `k >= MIN_PART` the
//!    body becomes new segment(s) at `offset`; when `k < MIN_PART` the segment is *folded*: its
//!    first `k` bytes (read back, under 5 MiB) and the body are written as a new segment at its
//!    start, under the new nonce, replacing it in the new state;
//! 3. the body is streamed in [`PART_SIZE`] parts (a `PutObject` when it fits one part, else a
//!    multipart upload), starting a new segment every `segment_max` bytes. An empty body writes
//!    nothing: the new state is the cut state.
//!
//! Objects are written whole (`PutObject` or `CompleteMultipartUpload`) and never rewritten, so
//! a crash or a failed body at any point leaves every recorded state intact. Memory per request
//! is bounded by two part buffers ([`PART_SIZE`]: one filling, one being sent) whatever the body
//! size.
//!
//! # Commit
//!
//! `upload_commit` keeps an existing blob (put-if-absent); otherwise it copies the first `size`
//! bytes that the state names to the blob key with `CopyObject` (one segment holding exactly
//! those bytes) or a multipart upload of `UploadPartCopy` parts (one per segment, ranged),
//! falling back to streaming the bytes through this node when the server does not implement
//! `UploadPartCopy`. The multipart upload is aborted on any failure; `CompleteMultipartUpload`
//! publishes the blob atomically. The area (every key under `uploads/<id>/`, losers' included)
//! is deleted afterwards.

use crate::{Appended, BlobStore, ByteStream, Result, StorageError};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use berth_oci::Digest;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::io;
use std::time::{Duration, SystemTime};

/// S3's minimum size of a multipart part other than the last (5 MiB).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// Size of the parts streamed to S3, and so the memory a request buffers (8 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Default largest segment of an upload area (1 GiB, well below the 5 GiB copy limit).
pub const SEGMENT_MAX: u64 = 1024 * 1024 * 1024;
/// Largest object `CopyObject` copies in one request (5 GiB).
const COPY_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Digits of a segment name (`u64::MAX` has 20).
const OFFSET_DIGITS: usize = 20;

/// Where and how to reach the bucket.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix (no leading or trailing `/`; empty for the bucket root).
    pub prefix: String,
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region to sign for; `None`: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Static access key id; with `secret_access_key`. `None`: the standard AWS credential chain.
    pub access_key_id: Option<String>,
    /// Static secret access key.
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted style.
    pub force_path_style: bool,
    /// S3 storage class of the blob objects this store writes (`None`: the bucket's default,
    /// `STANDARD`). Only classes whose objects can be read at once: see [`READABLE_CLASSES`].
    pub storage_class: Option<String>,
}

/// The S3 storage classes whose objects can be read without a restore request (`GLACIER` and
/// `DEEP_ARCHIVE` objects need `RestoreObject` and hours of waiting, which Berth does not do).
pub const READABLE_CLASSES: &[&str] =
    &["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"];

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("force_path_style", &self.force_path_style)
            .field("storage_class", &self.storage_class)
            .finish()
    }
}

impl S3Config {
    /// Parse `s3://bucket[/prefix]`. The other fields are left unset (`force_path_style` false);
    /// see [`S3Config::with_endpoint`].
    pub fn from_url(url: &str) -> std::result::Result<S3Config, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("expected s3://bucket/prefix, got '{url}'"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!("invalid bucket name '{bucket}' in '{url}'"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") && !prefix.is_empty() {
            return Err(format!("invalid key prefix '{prefix}' in '{url}'"));
        }
        Ok(S3Config { bucket: bucket.to_string(), prefix: prefix.to_string(), ..Default::default() })
    }

    /// Set the endpoint; an endpoint turns on path-style addressing (what S3-compatible
    /// servers such as MinIO or s3s-fs expect).
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> S3Config {
        self.force_path_style = endpoint.is_some();
        self.endpoint = endpoint;
        self
    }
}

/// One segment of an upload area, as named by an area state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    /// Offset in the upload of the segment's first byte.
    start: u64,
    /// The nonce of the append that wrote it.
    nonce: String,
}

/// A parsed area state (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Area {
    /// Bytes the area holds.
    end: u64,
    /// Segments by offset: the first starts at 0, starts increase, the last starts before `end`.
    segs: Vec<Segment>,
}

fn bad_state(state: &str) -> StorageError {
    StorageError::Inconsistent(format!("invalid upload area state '{}'", state.chars().take(80).collect::<String>()))
}

impl Area {
    fn parse(state: &str) -> Result<Area> {
        if state.is_empty() {
            return Ok(Area::default());
        }
        let (end, list) = state.split_once('/').ok_or_else(|| bad_state(state))?;
        let end: u64 = end.parse().map_err(|_| bad_state(state))?;
        let mut segs: Vec<Segment> = Vec::new();
        for item in list.split(',') {
            let (start, nonce) = item.split_once('.').ok_or_else(|| bad_state(state))?;
            let start: u64 = start.parse().map_err(|_| bad_state(state))?;
            let ordered = match segs.last() {
                None => start == 0,
                Some(prev) => start > prev.start,
            };
            if !ordered || start >= end || !valid_nonce(nonce) {
                return Err(bad_state(state));
            }
            segs.push(Segment { start, nonce: nonce.to_string() });
        }
        Ok(Area { end, segs })
    }

    fn render(&self) -> String {
        if self.segs.is_empty() {
            return String::new();
        }
        let list: Vec<String> = self.segs.iter().map(|s| format!("{}.{}", s.start, s.nonce)).collect();
        format!("{}/{}", self.end, list.join(","))
    }

    /// The area's first `offset` bytes (`offset <= end`).
    fn cut(&self, offset: u64) -> Area {
        let segs = self.segs.iter().filter(|s| s.start < offset).cloned().collect();
        Area { end: offset.min(self.end), segs }
    }

    /// End of segment `i`'s extent.
    fn extent_end(&self, i: usize) -> u64 {
        self.segs.get(i + 1).map_or(self.end, |n| n.start)
    }

    /// Bytes `[start, end)` of the area as (segment index, offset in segment, length) pieces.
    /// `Inconsistent` when the area holds fewer than `end` bytes.
    fn pieces(&self, start: u64, end: u64) -> Result<Vec<(usize, u64, u64)>> {
        if end > self.end || start > end {
            return Err(StorageError::Inconsistent(format!("upload area holds {} bytes, {end} needed", self.end)));
        }
        let mut out = Vec::new();
        let mut pos = start;
        for (i, s) in self.segs.iter().enumerate() {
            if pos >= end {
                break;
            }
            let to = self.extent_end(i).min(end);
            if pos >= to {
                continue;
            }
            out.push((i, pos - s.start, to - pos));
            pos = to;
        }
        Ok(out)
    }
}

/// Nonces are 32 lowercase hex digits.
fn valid_nonce(n: &str) -> bool {
    n.len() == 32 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A [`BlobStore`] on an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// `""` or `"prefix/"`.
    root: String,
    segment_max: u64,
    /// `false` once the server answered `NotImplemented` to `UploadPartCopy`.
    part_copy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Storage class of the blob objects written (`None`: the bucket's default).
    storage_class: Option<aws_sdk_s3::types::StorageClass>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("bucket", &self.bucket).field("root", &self.root).finish()
    }
}

fn io_err<E: std::error::Error>(op: &str, key: &str, e: E) -> StorageError {
    let text = format!("s3 {op} {key}: {}", DisplayErrorContext(&e));
    // The SDK's transport failures (no connection, timeouts) and throttling/unavailable answers
    // that survived its retries are "unavailable": the caller answers 503 and retries later.
    let kind = if text.contains("dispatch failure") || text.contains("Connection refused") {
        io::ErrorKind::ConnectionRefused
    } else if text.contains("timeout") || text.contains("TimedOut") {
        io::ErrorKind::TimedOut
    } else if text.contains("SlowDown") || text.contains("ServiceUnavailable") || text.contains("503") {
        io::ErrorKind::ConnectionAborted
    } else if text.contains("QuotaExceeded") || text.contains("EntityTooLarge") {
        io::ErrorKind::QuotaExceeded
    } else {
        io::ErrorKind::Other
    };
    StorageError::Io(io::Error::new(kind, text))
}

/// HTTP status of a failed request, when the server answered.
fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(e.code(), Some("NoSuchKey" | "NotFound" | "NoSuchUpload")) || status(e) == Some(404)
}

fn segment_name(seg: &Segment) -> String {
    format!("{:0width$}.{}", seg.start, seg.nonce, width = OFFSET_DIGITS)
}

impl S3Store {
    /// Build a client from `cfg` (static credentials when given, else the standard AWS chain).
    /// Makes no request; see [`S3Store::ensure_bucket`].
    pub async fn connect(cfg: &S3Config) -> Result<S3Store> {
        use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
        let region = cfg
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".to_string());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(Region::new(region));
        match (&cfg.access_key_id, &cfg.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "berth-config"));
            }
            (None, None) => {}
            _ => {
                return Err(StorageError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "s3: access key id and secret access key must be given together",
                )));
            }
        }
        if let Some(e) = &cfg.endpoint {
            loader = loader.endpoint_url(e);
        }
        let sdk = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.force_path_style)
            // Checksums only where S3 requires them: S3-compatible servers vary in support.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let root = if cfg.prefix.is_empty() { String::new() } else { format!("{}/", cfg.prefix.trim_matches('/')) };
        let storage_class = match cfg.storage_class.as_deref() {
            None => None,
            Some(c) if READABLE_CLASSES.contains(&c) => Some(aws_sdk_s3::types::StorageClass::from(c)),
            Some(c) => {
                return Err(StorageError::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "s3: storage class '{c}' is not supported: objects must be readable without a restore \
                         request; use one of {}",
                        READABLE_CLASSES.join(", ")
                    ),
                )));
            }
        };
        Ok(S3Store {
            client: Client::from_conf(conf),
            bucket: cfg.bucket.clone(),
            root,
            segment_max: SEGMENT_MAX,
            part_copy: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            storage_class,
        })
    }

    /// Check that the bucket is reachable; create it when it does not exist (convenient for
    /// S3-compatible test servers; on AWS, create the bucket beforehand with the policy you want).
    pub async fn ensure_bucket(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || matches!(e.code(), Some("NoSuchBucket")) => {
                match self.client.create_bucket().bucket(&self.bucket).send().await {
                    Ok(_) => Ok(()),
                    // Another node may have created it meanwhile.
                    Err(e) => match self.client.head_bucket().bucket(&self.bucket).send().await {
                        Ok(_) => Ok(()),
                        Err(_) => Err(io_err("CreateBucket", &self.bucket, e)),
                    },
                }
            }
            Err(e) => Err(io_err("HeadBucket", &self.bucket, e)),
        }
    }

    /// Set the largest segment of an upload area (at least [`MIN_PART`], at most 5 GiB); small
    /// values make tests exercise segment roll-over.
    pub fn with_segment_max(mut self, bytes: u64) -> S3Store {
        self.segment_max = bytes.clamp(MIN_PART, COPY_MAX);
        self
    }

    fn blob_key(&self, d: &Digest) -> String {
        let hex = d.hex();
        format!("{}blobs/{}/{}/{}", self.root, d.algorithm().as_str(), &hex[..2], hex)
    }

    fn area_prefix(&self, id: &str) -> Result<String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StorageError::Io(io::Error::new(io::ErrorKind::InvalidInput, "invalid upload id")));
        }
        Ok(format!("{}uploads/{id}/", self.root))
    }

    /// The `x-amz-copy-source` value for `key` of this bucket: `bucket/key`, URL-encoded.
    fn copy_source(&self, key: &str) -> String {
        let mut out = format!("{}/", self.bucket);
        for b in key.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// Every object key under `prefix` with its size, in key order.
    async fn list_all(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| io_err("ListObjectsV2", prefix, e))?;
            for o in resp.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
            token = resp.next_continuation_token().map(str::to_string);
            if !resp.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Stream `len` bytes of `key` from `start` (nothing requested when `len` is 0).
    async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<ByteStream> {
        if len == 0 {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", start, start + len - 1))
            .send()
            .await
            .map_err(|e| if is_not_found(&e) { StorageError::NotFound } else { io_err("GetObject", key, e) })?;
        let got = resp.content_length().unwrap_or(-1);
        if got != len as i64 {
            return Err(StorageError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("s3 GetObject {key}: asked {len} bytes at {start}, got {got}"),
            )));
        }
        let body = resp.body;
        Ok(Box::pin(futures::stream::unfold(Some(body), |body| async move {
            let mut body = body?;
            match body.next().await {
                None => None,
                Some(Ok(b)) => Some((Ok(b), Some(body))),
                Some(Err(e)) => Some((Err(io::Error::other(e)), None)),
            }
        })))
    }

    /// Stream the area's bytes `[start, start + len)` as `state` names them, opening one
    /// segment at a time.
    async fn area_stream(&self, id: &str, state: &str, start: u64, len: u64) -> Result<ByteStream> {
        let end = start.checked_add(len).ok_or_else(|| StorageError::Inconsistent("range overflows".into()))?;
        let prefix = self.area_prefix(id)?;
        let area = Area::parse(state)?;
        let pieces = area.pieces(start, end)?;
        let this = self.clone();
        let streams = futures::stream::iter(pieces).then(move |(i, off, n)| {
            let this = this.clone();
            let key = format!("{prefix}{}", segment_name(&area.segs[i]));
            async move {
                match this.get_range(&key, off, n).await {
                    Ok(s) => s,
                    Err(e) => Box::pin(futures::stream::once(async move { Err(io::Error::other(e.to_string())) })),
                }
            }
        });
        Ok(Box::pin(streams.flatten()))
    }

    /// Size of object `key`, `None` when absent.
    async fn object_size(&self, key: &str) -> Result<Option<u64>> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(io_err("HeadObject", key, e)),
        }
    }

    async fn delete_key(&self, key: &str) -> Result<()> {
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(io_err("DeleteObject", key, e)),
        }
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) {
        if let Err(e) =
            self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await
        {
            tracing::warn!(key, error = %DisplayErrorContext(e), "aborting an S3 multipart upload failed");
        }
    }

    /// The first `kept` bytes (under [`MIN_PART`]) of object `key`.
    async fn kept_bytes(&self, key: &str, kept: u64) -> Result<Bytes> {
        let mut keep = BytesMut::with_capacity(kept as usize);
        let mut old = self.get_range(key, 0, kept).await?;
        while let Some(c) = old.next().await {
            keep.extend_from_slice(&c?);
        }
        if keep.len() as u64 != kept {
            return Err(StorageError::Inconsistent(format!("segment {key} is short")));
        }
        Ok(keep.freeze())
    }

    /// Write `first` then the rest of `body` as segments of nonce `nonce` in area `prefix`, the
    /// first one at `seg_start` beginning with the kept bytes `keep`. Returns the body bytes
    /// written and the starts of the segments written. On failure, the segments already
    /// written are deleted (best effort: they are garbage of the area either way).
    async fn write_segments(
        &self,
        prefix: &str,
        nonce: &str,
        seg_start: u64,
        keep: Bytes,
        first: Bytes,
        body: &mut ByteStream,
    ) -> Result<(u64, Vec<u64>)> {
        let mut starts = Vec::new();
        let r = self.write_segments_inner(prefix, nonce, seg_start, keep, first, body, &mut starts).await;
        if r.is_err() {
            for start in starts.drain(..) {
                let key = format!("{prefix}{}", segment_name(&Segment { start, nonce: nonce.to_string() }));
                let _ = self.delete_key(&key).await;
            }
        }
        r.map(|written| (written, starts))
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_segments_inner(
        &self,
        prefix: &str,
        nonce: &str,
        mut seg_start: u64,
        keep: Bytes,
        first: Bytes,
        body: &mut ByteStream,
        starts: &mut Vec<u64>,
    ) -> Result<u64> {
        let key = |start: u64| format!("{prefix}{}", segment_name(&Segment { start, nonce: nonce.to_string() }));
        let mut seg = SegmentUpload::new(key(seg_start));
        seg.buf.extend_from_slice(&keep);
        let mut seg_len = keep.len() as u64;
        let mut written = 0u64;
        let mut pending = Some(first);
        loop {
            let mut chunk = match pending.take() {
                Some(c) => c,
                None => match body.next().await {
                    None => break,
                    Some(Ok(c)) => c,
                    Some(Err(e)) => {
                        seg.abort(self).await;
                        return Err(StorageError::Body(e));
                    }
                },
            };
            while !chunk.is_empty() {
                let room_seg = (self.segment_max - seg_len) as usize;
                let room_part = PART_SIZE - seg.buf.len();
                let n = chunk.len().min(room_seg).min(room_part);
                seg.buf.extend_from_slice(&chunk.split_to(n));
                seg_len += n as u64;
                written += n as u64;
                if seg_len == self.segment_max {
                    seg.finish(self).await?;
                    starts.push(seg_start);
                    seg_start += seg_len;
                    seg = SegmentUpload::new(key(seg_start));
                    seg_len = 0;
                } else if seg.buf.len() == PART_SIZE
                    && let Err(e) = seg.flush_part(self).await
                {
                    seg.abort(self).await;
                    return Err(e);
                }
            }
        }
        if seg_len > 0 {
            seg.finish(self).await?;
            starts.push(seg_start);
        }
        Ok(written)
    }

    /// Abort multipart uploads under the prefix started more than `older_than` ago (left by
    /// crashed appends or commits). Returns how many were aborted. Servers that do not
    /// implement `ListMultipartUploads` (s3s-fs) yield `Ok(0)`.
    pub async fn abort_stale_multipart(&self, older_than: Duration) -> Result<usize> {
        let cutoff = SystemTime::now().checked_sub(older_than).unwrap_or(SystemTime::UNIX_EPOCH);
        let cutoff = cutoff.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut n = 0;
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let resp = match self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.root)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) if matches!(e.code(), Some("NotImplemented")) || status(&e) == Some(501) => {
                    tracing::debug!("the S3 server does not list multipart uploads; nothing to abort");
                    return Ok(0);
                }
                Err(e) => return Err(io_err("ListMultipartUploads", &self.root, e)),
            };
            for u in resp.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else { continue };
                if u.initiated().is_some_and(|t| t.secs() < cutoff) {
                    self.abort_multipart(key, id).await;
                    n += 1;
                }
            }
            if !resp.is_truncated().unwrap_or(false) {
                break;
            }
            key_marker = resp.next_key_marker().map(str::to_string);
            id_marker = resp.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(n)
    }

    /// Copy the area's bytes `[0, size)` to `dst` as a multipart upload.
    async fn assemble(&self, prefix: &str, id: &str, state: &str, dst: &str, size: u64) -> Result<()> {
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(dst)
            .set_storage_class(self.storage_class.clone())
            .send()
            .await
            .map_err(|e| io_err("CreateMultipartUpload", dst, e))?;
        let upload_id = create.upload_id().unwrap_or_default().to_string();
        let r = self.assemble_parts(prefix, id, state, dst, &upload_id, size).await;
        let r = match r {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(dst)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| io_err("CompleteMultipartUpload", dst, e)),
            Err(e) => Err(e),
        };
        if r.is_err() {
            self.abort_multipart(dst, &upload_id).await;
        }
        r
    }

    async fn assemble_parts(
        &self,
        prefix: &str,
        id: &str,
        state: &str,
        dst: &str,
        upload_id: &str,
        size: u64,
    ) -> Result<Vec<CompletedPart>> {
        use std::sync::atomic::Ordering;
        if self.part_copy.load(Ordering::Relaxed) {
            let mut parts = Vec::new();
            let area = Area::parse(state)?;
            for (i, (seg, off, n)) in area.pieces(0, size)?.into_iter().enumerate() {
                let src = self.copy_source(&format!("{prefix}{}", segment_name(&area.segs[seg])));
                let r = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(dst)
                    .upload_id(upload_id)
                    .part_number(i as i32 + 1)
                    .copy_source(&src)
                    .copy_source_range(format!("bytes={}-{}", off, off + n - 1))
                    .send()
                    .await;
                match r {
                    Ok(out) => {
                        let etag = out.copy_part_result().and_then(|c| c.e_tag()).map(str::to_string);
                        parts.push(CompletedPart::builder().part_number(i as i32 + 1).set_e_tag(etag).build());
                    }
                    Err(e) if i == 0 && (matches!(e.code(), Some("NotImplemented")) || status(&e) == Some(501)) => {
                        tracing::info!("the S3 server does not implement UploadPartCopy; commits stream through");
                        self.part_copy.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if is_not_found(&e) => return Err(StorageError::NotFound),
                    Err(e) => return Err(io_err("UploadPartCopy", dst, e)),
                }
            }
            if self.part_copy.load(Ordering::Relaxed) {
                return Ok(parts);
            }
        }
        // Fallback: stream the bytes through this node in PART_SIZE parts (the caller aborts
        // the multipart upload on failure).
        let mut seg = SegmentUpload::new(dst.to_string());
        seg.upload_id = Some(upload_id.to_string());
        let r = async {
            let mut src = self.area_stream(id, state, 0, size).await?;
            while let Some(chunk) = src.next().await {
                let mut chunk = chunk?;
                while !chunk.is_empty() {
                    let n = chunk.len().min(PART_SIZE - seg.buf.len());
                    seg.buf.extend_from_slice(&chunk.split_to(n));
                    if seg.buf.len() == PART_SIZE {
                        seg.flush_part(self).await?;
                    }
                }
            }
            if !seg.buf.is_empty() || (seg.parts.is_empty() && seg.inflight.is_none()) {
                seg.flush_part(self).await?;
            }
            seg.settle().await
        }
        .await;
        if let Err(e) = r {
            if let Some(h) = seg.inflight.take() {
                h.abort();
            }
            return Err(e);
        }
        Ok(seg.parts)
    }
}

/// One object being written: buffered until a part is full, then a multipart upload whose
/// parts are sent one at a time in the background while the next part fills (at most two parts,
/// 2 × [`PART_SIZE`], in memory).
struct SegmentUpload {
    key: String,
    buf: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    inflight: Option<tokio::task::JoinHandle<Result<CompletedPart>>>,
}

impl SegmentUpload {
    fn new(key: String) -> SegmentUpload {
        SegmentUpload { key, buf: BytesMut::new(), upload_id: None, parts: Vec::new(), inflight: None }
    }

    /// Wait for the part in flight, if any.
    async fn settle(&mut self) -> Result<()> {
        if let Some(h) = self.inflight.take() {
            let part = h.await.map_err(|e| StorageError::Io(io::Error::other(e)))??;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Send the buffer as the next part (starting the multipart upload when needed), once the
    /// previous part is stored.
    async fn flush_part(&mut self, s: &S3Store) -> Result<()> {
        let upload_id = match &self.upload_id {
            Some(u) => u.clone(),
            None => {
                let out = s
                    .client
                    .create_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&self.key)
                    .send()
                    .await
                    .map_err(|e| io_err("CreateMultipartUpload", &self.key, e))?;
                let u = out.upload_id().unwrap_or_default().to_string();
                self.upload_id = Some(u.clone());
                u
            }
        };
        self.settle().await?;
        let number = self.parts.len() as i32 + 1;
        let data = self.buf.split().freeze();
        let req = s
            .client
            .upload_part()
            .bucket(&s.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .content_length(data.len() as i64)
            .body(S3Body::from(data));
        let key = self.key.clone();
        self.inflight = Some(tokio::spawn(async move {
            let out = req.send().await.map_err(|e| io_err("UploadPart", &key, e))?;
            Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(str::to_string)).build())
        }));
        Ok(())
    }

    /// Make the object durable: one `PutObject` when it never needed a part, else the last
    /// part and `CompleteMultipartUpload`. Aborts the multipart upload on failure.
    async fn finish(mut self, s: &S3Store) -> Result<()> {
        let Some(upload_id) = self.upload_id.clone() else {
            let data = self.buf.split().freeze();
            s.client
                .put_object()
                .bucket(&s.bucket)
                .key(&self.key)
                .content_length(data.len() as i64)
                .body(S3Body::from(data))
                .send()
                .await
                .map_err(|e| io_err("PutObject", &self.key, e))?;
            return Ok(());
        };
        let r = async {
            if !self.buf.is_empty() {
                self.flush_part(s).await?;
            }
            self.settle().await?;
            s.client
                .complete_multipart_upload()
                .bucket(&s.bucket)
                .key(&self.key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(self.parts.clone())).build())
                .send()
                .await
                .map_err(|e| io_err("CompleteMultipartUpload", &self.key, e))?;
            Ok(())
        }
        .await;
        if r.is_err() {
            self.abort(s).await;
        }
        r
    }

    /// Stop the part in flight and abort the multipart upload (nothing becomes visible).
    async fn abort(&mut self, s: &S3Store) {
        if let Some(h) = self.inflight.take() {
            h.abort();
            let _ = h.await;
        }
        if let Some(u) = &self.upload_id {
            s.abort_multipart(&self.key, u).await;
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.blob_key(digest);
        match self.client.head_object().bucket(&self.bucket).key(&key).send().await {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(io_err("HeadObject", &key, e)),
        }
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        let key = self.blob_key(digest);
        if len == 0 {
            // A Range header cannot ask for nothing: check existence instead.
            return match self.stat(digest).await? {
                Some(size) if start <= size => Ok(Box::pin(futures::stream::empty())),
                Some(_) => Err(StorageError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "range past the end"))),
                None => Err(StorageError::NotFound),
            };
        }
        self.get_range(&key, start, len).await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        self.delete_key(&self.blob_key(digest)).await
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        // Nothing to write: the empty area is the empty state.
        self.area_prefix(id)?;
        Ok(())
    }

    async fn upload_append(&self, id: &str, state: &str, offset: u64, mut body: ByteStream) -> Result<Appended> {
        let prefix = self.area_prefix(id)?;
        let area = Area::parse(state)?;
        if offset > area.end {
            return Err(StorageError::Inconsistent(format!(
                "upload area holds {} bytes, offset is {offset}",
                area.end
            )));
        }
        let mut base = area.cut(offset);
        let first = loop {
            match body.next().await {
                None => break None,
                Some(Ok(c)) if c.is_empty() => {}
                Some(Ok(c)) => break Some(c),
                Some(Err(e)) => return Err(StorageError::Body(e)),
            }
        };
        let Some(first) = first else {
            return Ok(Appended { written: 0, state: base.render() });
        };
        let nonce = new_nonce();
        // The segment holding `offset` (the last one of the cut state) keeps `offset - start`
        // bytes: a short one is folded into the new segment.
        let (seg_start, keep) = match base.segs.last() {
            Some(h) if offset - h.start < MIN_PART => {
                let h = base.segs.pop().expect("a last segment");
                let keep = self.kept_bytes(&format!("{prefix}{}", segment_name(&h)), offset - h.start).await?;
                (h.start, keep)
            }
            _ => (offset, Bytes::new()),
        };
        let (written, starts) = self.write_segments(&prefix, &nonce, seg_start, keep, first, &mut body).await?;
        base.segs.extend(starts.into_iter().map(|start| Segment { start, nonce: nonce.clone() }));
        base.end = offset + written;
        Ok(Appended { written, state: base.render() })
    }

    async fn upload_read(&self, id: &str, state: &str, start: u64, len: u64) -> Result<ByteStream> {
        self.area_stream(id, state, start, len).await
    }

    async fn upload_commit(&self, id: &str, state: &str, digest: &Digest, size: u64) -> Result<()> {
        let prefix = self.area_prefix(id)?;
        let area = Area::parse(state)?;
        let pieces = area.pieces(0, size)?;
        let dst = self.blob_key(digest);
        if self.stat(digest).await?.is_none() {
            match pieces.as_slice() {
                [] => {
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&dst)
                        .set_storage_class(self.storage_class.clone())
                        .content_length(0)
                        .body(S3Body::from(Bytes::new()))
                        .send()
                        .await
                        .map_err(|e| io_err("PutObject", &dst, e))?;
                }
                [(seg, 0, n)] if *n <= COPY_MAX => {
                    let key = format!("{prefix}{}", segment_name(&area.segs[*seg]));
                    match self.object_size(&key).await? {
                        None => return Err(StorageError::NotFound),
                        Some(len) if len == *n => {
                            self.client
                                .copy_object()
                                .bucket(&self.bucket)
                                .key(&dst)
                                .set_storage_class(self.storage_class.clone())
                                .copy_source(self.copy_source(&key))
                                .send()
                                .await
                                .map_err(|e| {
                                    if is_not_found(&e) {
                                        StorageError::NotFound
                                    } else {
                                        io_err("CopyObject", &dst, e)
                                    }
                                })?;
                        }
                        Some(_) => self.assemble(&prefix, id, state, &dst, size).await?,
                    }
                }
                _ => self.assemble(&prefix, id, state, &dst, size).await?,
            }
        }
        self.upload_abort(id).await
    }

    async fn upload_abort(&self, id: &str) -> Result<()> {
        let prefix = self.area_prefix(id)?;
        // Ordered by key, the longest-lived segment (at 0) last: the area stays listed until it
        // is wholly gone, so an interrupted abort is finished by the next cleanup.
        let mut keys: Vec<String> = self.list_all(&prefix).await?.into_iter().map(|(k, _)| k).collect();
        keys.reverse();
        for k in keys {
            self.delete_key(&k).await?;
        }
        Ok(())
    }

    /// A presigned `GetObject` URL for the blob key, valid for `ttl` (at most 7 days; the
    /// blob's existence is not checked).
    async fn presign_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        let key = self.blob_key(digest);
        let cfg = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StorageError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .presigned(cfg)
            .await
            .map_err(|e| io_err("presign GetObject", &key, e))?;
        Ok(Some(req.uri().to_string()))
    }

    async fn cleanup_stale(&self, older_than: Duration) -> Result<usize> {
        self.abort_stale_multipart(older_than).await
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<crate::ListedBlob>> {
        let prefix = format!("{}blobs/", self.root);
        let mut start_after = after.map(|d| self.blob_key(d));
        let mut out = Vec::new();
        while out.len() < limit {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_start_after(start_after.clone())
                .max_keys((limit - out.len()).min(1000) as i32)
                .send()
                .await
                .map_err(|e| io_err("ListObjectsV2", &prefix, e))?;
            for o in resp.contents() {
                let Some(key) = o.key() else { continue };
                start_after = Some(key.to_string());
                // <alg>/<first two hex>/<hex>
                let mut parts = key[prefix.len()..].split('/');
                let (Some(alg), Some(two), Some(hex), None) = (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Ok(digest) = format!("{alg}:{hex}").parse::<Digest>() else { continue };
                if !hex.starts_with(two) {
                    continue;
                }
                let modified_ms = o.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(0);
                out.push(crate::ListedBlob { digest, size: o.size().unwrap_or(0).max(0) as u64, modified_ms });
            }
            if !resp.is_truncated().unwrap_or(false) {
                break;
            }
        }
        Ok(out)
    }

    async fn upload_list(&self) -> Result<Vec<String>> {
        let prefix = format!("{}uploads/", self.root);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| io_err("ListObjectsV2", &prefix, e))?;
            for p in resp.common_prefixes() {
                if let Some(id) = p.prefix().and_then(|p| p.strip_prefix(&prefix)).map(|p| p.trim_end_matches('/'))
                    && !id.is_empty()
                {
                    out.push(id.to_string());
                }
            }
            token = resp.next_continuation_token().map(str::to_string);
            if !resp.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests;
