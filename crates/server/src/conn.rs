//! Connections: the accept loop, a connection limit, timeouts, and keep-alive after answers
//! sent before the request body was read.
//!
//! - **Connection limit.** At most [`ConnLimits::max_connections`] connections are served at
//!   once; past that, new connections wait in the listen backlog until one closes.
//! - **Header timeout.** Once the first byte of a request head arrived, the whole head must
//!   arrive within [`ConnLimits::header_timeout`], or the connection is closed.
//! - **Idle timeout.** A keep-alive connection with no request in flight is closed after
//!   [`ConnLimits::idle_timeout`] without a byte. It is longer than Go's `IdleConnTimeout`
//!   (90 s) by default, so that Go clients (docker, containerd, crane) close first and never
//!   send a request on a connection the server is closing.
//! - **Stalled bodies.** Each chunk of a request body must arrive within
//!   [`ConnLimits::body_timeout`] of the previous one; a handler reading the body sees an error.
//! - **Early answers.** A handler may answer (401, 404, 413, 416, 400 ...) without reading the
//!   request body. The connection must then stay usable: Go's `net/http` reuses it and does not
//!   retry a POST that fails on a dead socket. What is left of the body is read and discarded
//!   when it is at most [`ConnLimits::drain_limit`] bytes and arrives promptly; otherwise the
//!   answer carries `Connection: close` and the connection closes after it.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderValue, Request, Response, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Sleep;
use tower::ServiceExt;

/// Limits of the HTTP connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time allowed for a request head once its first byte arrived.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long without a byte.
    pub idle_timeout: Duration,
    /// Longest pause allowed between two chunks of a request body.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// After an answer sent before the body was read, at most this many remaining body bytes
    /// are read and discarded to keep the connection; more, and the connection is closed.
    pub drain_limit: u64,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(95),
            body_timeout: Duration::from_secs(300),
            max_connections: 8192,
            drain_limit: 4 << 20,
        }
    }
}

/// How long draining the rest of a body may take before the connection is closed instead.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A connection that came over TLS (a request extension): `aws:SecureTransport` is true.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecureConn;

/// A plain or a TLS stream.
type MaybeTls = tokio_util::either::Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// Serve `app` on `listener` (over TLS with `tls`) until `shutdown` completes, then stop
/// accepting and wait for the connections to finish their requests (the caller bounds that
/// wait).
///
/// With TLS, the handshake must finish within the header timeout, and a connection whose first
/// byte is not a TLS handshake gets a plain-text `400` saying that it spoke HTTP to an HTTPS
/// server.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    tls: Option<crate::tls::Tls>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, builder, watcher, tls) = (app.clone(), builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let secure = tls.is_some();
            let io: MaybeTls = match tls {
                None => tokio_util::either::Either::Left(tcp),
                Some(tls) => match accept_tls(&tls, tcp, limits.header_timeout).await {
                    Some(s) => tokio_util::either::Either::Right(s),
                    None => return drop(permit),
                },
            };
            let state = Arc::new(ConnState::new());
            let io = TokioIo::new(TimedIo::new(io, state.clone(), limits));
            let svc =
                hyper::service::service_fn(move |req| handle(app.clone(), peer, secure, state.clone(), limits, req));
            let conn = builder.serve_connection(io, svc).into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The TLS handshake of a new connection, within `timeout`; `None` when it failed or the
/// client spoke plain HTTP (answered with [`crate::tls::PLAIN_HTTP_ANSWER`]).
async fn accept_tls(
    tls: &crate::tls::Tls,
    tcp: TcpStream,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    // A TLS connection starts with a handshake record (content type 22).
    if first[0] != 0x16 {
        let mut tcp = tcp;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::AsyncWriteExt;
            tcp.write_all(crate::tls::PLAIN_HTTP_ANSWER).await?;
            tcp.shutdown().await
        })
        .await;
        return None;
    }
    match tokio::time::timeout(timeout, tls.acceptor().accept(tcp)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// What a request body left behind when the handler was done with it.
enum Leftover {
    /// The handler dropped the body before its end: the rest, and whether it was ever polled.
    Unread(Incoming, bool),
    /// The body failed (client error or stalled past the body timeout).
    Failed,
}

/// Serve one request: track its body, then keep or close the connection after the answer.
async fn handle(
    app: Router,
    peer: SocketAddr,
    secure: bool,
    state: Arc<ConnState>,
    limits: ConnLimits,
    req: Request<Incoming>,
) -> Result<Response<DoneBody>, std::convert::Infallible> {
    state.begin();
    let done = InFlight(state);
    let http1 = req.version() < Version::HTTP_2;
    let (parts, body) = req.into_parts();
    let has_body = !body.is_end_stream();
    let expects_continue =
        parts.headers.get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (tx, mut rx) = oneshot::channel();
    let tracked = Tracked { inner: Some(body), timeout: limits.body_timeout, sleep: None, polled: false, tx: Some(tx) };
    let mut req = Request::from_parts(parts, Body::new(tracked));
    req.extensions_mut().insert(ConnectInfo(peer));
    if secure {
        req.extensions_mut().insert(SecureConn);
    }
    let mut resp = match std::panic::AssertUnwindSafe(app.oneshot(req)).catch_unwind().await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => match e {},
        Err(panic) => panicked(http1, panic),
    };
    if has_body && http1 {
        let keep = match rx.try_recv() {
            // Read to its end by the handler.
            Err(oneshot::error::TryRecvError::Closed) => true,
            // A client that waits for `100 Continue` has sent nothing: it must not send the body now.
            Ok(Leftover::Unread(_, false)) if expects_continue => false,
            Ok(Leftover::Unread(rest, _)) => drain(rest, limits.drain_limit).await,
            Ok(Leftover::Failed) => false,
            // The handler still holds the body (it answered while something reads it).
            Err(oneshot::error::TryRecvError::Empty) => false,
        };
        if !keep {
            resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    Ok(resp.map(|b| DoneBody { inner: b, _done: done }))
}

/// The answer to a request whose handler panicked: 500 with a request id that the log names
/// too; the connection closes after it (the body's state is unknown).
fn panicked(http1: bool, panic: Box<dyn std::any::Any + Send>) -> Response<Body> {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    let request_id = uuid::Uuid::new_v4().to_string();
    tracing::error!(request_id, panic = %what, "a request handler panicked");
    let body = serde_json::json!({"errors": [{
        "code": "UNKNOWN",
        "message": "internal server error",
        "detail": {"requestId": request_id},
    }]});
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    if http1 {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Read and discard what is left of a body, if it is small and arrives promptly.
async fn drain(mut body: Incoming, limit: u64) -> bool {
    if body.size_hint().lower() > limit {
        return false;
    }
    let mut seen = 0u64;
    let read_all = async {
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return true,
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        seen += d.len() as u64;
                        if seen > limit {
                            return false;
                        }
                    }
                }
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(DRAIN_TIME, read_all).await.unwrap_or(false)
}

/// A request body that times out between chunks and hands what is left back to [`handle`]
/// when dropped before its end.
struct Tracked {
    inner: Option<Incoming>,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    polled: bool,
    tx: Option<oneshot::Sender<Leftover>>,
}

impl Tracked {
    fn fail(&mut self) {
        self.inner = None;
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Leftover::Failed);
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        this.polled = true;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                this.sleep = None;
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail();
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
            Poll::Ready(None) => {
                // Read to its end: dropping the sender tells `handle` so.
                this.inner = None;
                this.tx = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.fail();
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("request body stalled for {}s", timeout.as_secs()),
                    ))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let (Some(tx), Some(inner)) = (self.tx.take(), self.inner.take()) {
            if inner.is_end_stream() {
                return;
            }
            let _ = tx.send(Leftover::Unread(inner, self.polled));
        }
    }
}

/// A response body that marks the request finished when it is dropped (written or abandoned).
pub struct DoneBody {
    inner: Body,
    _done: InFlight,
}

impl HttpBody for DoneBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request in flight on a connection, until dropped.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// What the timeouts of one connection need to know.
struct ConnState {
    start: Instant,
    /// Requests being served (HTTP/2 serves several at once).
    in_flight: AtomicUsize,
    /// When the connection last became idle (ms since `start`).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived (ms since `start`, plus one; 0: none).
    head_started: AtomicU64,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(0, Ordering::SeqCst);
    }

    fn end(&self) {
        self.idle_since.store(self.now_ms(), Ordering::SeqCst);
        self.head_started.store(0, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The TCP stream, closed when the header or idle timeout passes with no request in flight.
/// When dropped, what the client still sends is read and discarded for a moment (a lingering
/// close), so that closing with unread request bytes does not reset the connection before the
/// client has read the answer.
struct TimedIo {
    io: Option<MaybeTls>,
    state: Arc<ConnState>,
    limits: ConnLimits,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is armed for (ms since the connection's start).
    armed: Option<u64>,
}

impl TimedIo {
    fn new(io: MaybeTls, state: Arc<ConnState>, limits: ConnLimits) -> TimedIo {
        TimedIo { io: Some(io), state, limits, sleep: Box::pin(tokio::time::sleep(Duration::ZERO)), armed: None }
    }

    fn io(&mut self) -> Pin<&mut MaybeTls> {
        Pin::new(self.io.as_mut().expect("stream present until drop"))
    }
}

/// How long and how much a lingering close reads before it gives up.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 64 << 20;

impl Drop for TimedIo {
    fn drop(&mut self) {
        let (Some(io), Ok(rt)) = (self.io.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut io = io;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
            let mut buf = vec![0u8; 64 << 10];
            let mut seen = 0u64;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while seen < LINGER_BYTES {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen += n as u64,
                    }
                }
            })
            .await;
        });
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match this.io().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let s = &this.state;
                if buf.filled().len() > before
                    && s.in_flight.load(Ordering::SeqCst) == 0
                    && s.head_started.load(Ordering::SeqCst) == 0
                {
                    s.head_started.store(s.now_ms() + 1, Ordering::SeqCst);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let s = &this.state;
                if s.in_flight.load(Ordering::SeqCst) > 0 {
                    return Poll::Pending;
                }
                let head = s.head_started.load(Ordering::SeqCst);
                let (deadline, idle) = if head > 0 {
                    (head - 1 + this.limits.header_timeout.as_millis() as u64, false)
                } else {
                    (s.idle_since.load(Ordering::SeqCst) + this.limits.idle_timeout.as_millis() as u64, true)
                };
                if this.armed != Some(deadline) {
                    this.sleep.as_mut().reset((s.start + Duration::from_millis(deadline)).into());
                    this.armed = Some(deadline);
                }
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if idle {
                    // A clean end of an idle keep-alive connection.
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")))
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }
}
