//! The HTTP listener: hyper's HTTP/1.1 server with the limits that keep a hostile or broken
//! client from tying the process up.
//!
//! - **header timeout**: a connection that has not sent a complete request head within
//!   [`ServerLimits::header_timeout`] is closed (hyper's `header_read_timeout`, which needs a
//!   timer; `axum::serve` sets none). It runs from the accept and again after each response,
//!   so idle keep-alive connections are closed by it too: a slowloris holds a connection for
//!   at most this long.
//! - **body idle timeout**: a request body that stops arriving for
//!   [`ServerLimits::body_timeout`] fails the request (the handler sees a body error; a tus
//!   PATCH keeps what arrived).
//! - **write stall timeout**: a client that reads nothing of its response for the same
//!   time is disconnected (a slow reader is fine; one that stopped is not kept forever).
//! - **connection cap**: at most [`ServerLimits::max_connections`] connections are served at
//!   once; one beyond is answered `503` and closed at once, so the listen backlog never fills
//!   with connections that wait for a slot.
//!
//! Only HTTP/1.1 is spoken (browsers use it without TLS; a reverse proxy in front may speak
//! HTTP/2 to clients).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits of the HTTP listener.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Time a client has to send a complete request head (from the accept, and from the end
    /// of the previous response on a kept-alive connection).
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body, and longest time a response
    /// waits for a client that reads nothing.
    pub body_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Read and write buffer limit of one connection.
const MAX_BUF: usize = 64 * 1024;

/// What a connection beyond the cap is told before it is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Retry-After: 5\r\nContent-Type: application/json\r\nContent-Length: 63\r\n\r\n\
{\"error\":\"too many connections to this server; try again soon\"}";

/// Serves `app` on `listener` with `limits` until the listener fails for good (never, in
/// practice: accept errors such as running out of descriptors are logged and retried).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM: wait a little for descriptors to be freed (the header
                // timeout closes stalled connections) rather than spinning.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused = refused.saturating_add(1);
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    max = limits.max_connections,
                    "HTTP connection cap reached; connections refused with 503"
                );
            }
            // Non-blocking: a client that does not read gets nothing, not a task.
            let _ = stream.try_write(OVER_CAPACITY);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The client's address, for what limits per address (sign-in attempts).
        let client = ClientAddr(peer.ip());
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(client);
                request
            },
        ));
        let header_timeout = limits.header_timeout;
        let stream = StallGuard::new(stream, limits.body_timeout);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    // What a connection buffers, either way: a request head of up to 64 KiB,
                    // and at most 64 KiB of response queued for a client that does not read
                    // (hyper's default, ~400 KiB, times thousands of slow readers adds up).
                    .max_buf_size(MAX_BUF);
                b
            };
            let served = match acceptor {
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                }
                Some(acceptor) => {
                    // The handshake within the header timeout: a client that stalls it holds
                    // a slot no longer than one that stalls its request head.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            builder
                                .serve_connection(TokioIo::new(tls), service)
                                .with_upgrades()
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// The address of the client of a request (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// A connection whose writes fail once they have been blocked for `timeout` (the client
/// stopped reading); reads pass through.
struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// `Pending` from the socket starts (or continues) the stall clock; progress resets it.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match polled {
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Errors of one incoming connection (it went away before it was accepted), as opposed to
/// errors of the listener.
fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Raises this process's soft limit on open files to its hard limit (a server with thousands
/// of connections needs more than the usual 1024); returns the soft limit in force afterwards,
/// or `None` where it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        // `rlim_t` is not `u64` on every platform.
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Arenas of glibc's malloc in `radport serve`: see [`tune_malloc`].
pub const MALLOC_ARENAS: i32 = 4;

/// Allocations up to this size come from malloc's heap rather than from a fresh `mmap`:
/// received instances, WADO-RS reads and upload chunks (up to a few MiB) reuse memory.
pub const MALLOC_MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Free memory malloc keeps at the top of a heap before returning it to the system.
pub const MALLOC_TRIM_THRESHOLD: i32 = 16 * 1024 * 1024;

/// Sets glibc's malloc up for a server that moves objects of about a MiB.
///
/// - Four arenas ([`MALLOC_ARENAS`]): glibc reserves 64 MiB of address space for each arena
///   and makes up to eight per core as threads contend, which is most of a 1 GiB `RLIMIT_AS`
///   on a small machine without holding any memory; four keep the address space bounded (and
///   do not slow a server that mostly waits for I/O).
/// - Fixed mmap and trim thresholds ([`MALLOC_MMAP_THRESHOLD`], [`MALLOC_TRIM_THRESHOLD`]).
///   glibc's own adapt to the largest block freed so far (0.5 MiB for a CT slice) and trim
///   the heap whenever 1 MiB is free at its top, so each slice read or received lands in
///   freshly mapped pages: a page fault per 4 KiB and the kernel zeroing every page. Kept,
///   a WADO-RS retrieval needs 40 % less CPU (`docs/performance.md`); the memory kept is at
///   most the trim threshold per arena.
///
/// glibc's own settings in the environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`, or `GLIBC_TUNABLES` naming malloc) win. Elsewhere a no-op.
pub fn tune_malloc() {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let set_outside = |variable: &str, tunable: &str| {
        std::env::var_os(variable).is_some() || tunables.contains(tunable)
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, tunable, parameter, value) in [
        (
            "MALLOC_ARENA_MAX",
            "glibc.malloc.arena_max",
            libc::M_ARENA_MAX,
            MALLOC_ARENAS,
        ),
        (
            "MALLOC_MMAP_THRESHOLD_",
            "glibc.malloc.mmap_threshold",
            libc::M_MMAP_THRESHOLD,
            MALLOC_MMAP_THRESHOLD,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            "glibc.malloc.trim_threshold",
            libc::M_TRIM_THRESHOLD,
            MALLOC_TRIM_THRESHOLD,
        ),
    ] {
        if !set_outside(variable, tunable) {
            // SAFETY: mallopt takes two integers.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = set_outside;
}

/// The connection cap that fits `open_files` descriptors: `wanted`, or fewer so that
/// `reserve` descriptors stay for DICOM associations, the archive and the catalog.
pub fn connection_cap(wanted: usize, open_files: Option<u64>, reserve: u64) -> usize {
    match open_files {
        Some(n) => {
            let room = usize::try_from(n.saturating_sub(reserve)).unwrap_or(usize::MAX);
            wanted.min(room).max(16)
        }
        None => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: ServerLimits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
            );
        tokio::spawn(serve(listener, app, limits, None));
        addr
    }

    async fn read_all(s: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_stalled_request_head_is_closed_after_the_header_timeout() {
        let addr = start(ServerLimits {
            header_timeout: Duration::from_millis(300),
            ..Default::default()
        })
        .await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("closed before 5 s")
            .unwrap_or(0);
        assert!(started.elapsed() >= Duration::from_millis(250));
        // Closed (possibly with a 408 first), not answered with a page.
        assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"));
        // A fresh client is served meanwhile.
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_all(&mut ok).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_stalled_body_fails_the_request() {
        let addr = start(ServerLimits {
            body_timeout: Duration::from_millis(300),
            ..Default::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let answer = read_all(&mut s).await;
        assert!(
            answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_get_503() {
        let addr = start(ServerLimits {
            max_connections: 2,
            ..Default::default()
        })
        .await;
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = read_all(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        drop(_a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut d = tokio::net::TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_all(&mut d).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_disconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/big",
            axum::routing::get(|| async {
                // Endless: only the stall timeout ends it.
                let chunks = futures::stream::repeat_with(|| {
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 64 * 1024]))
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
        let limits = ServerLimits {
            body_timeout: Duration::from_millis(500),
            ..Default::default()
        };
        tokio::spawn(serve(listener, app, limits, None));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        // Read nothing for a while: the server's writes block, then it gives up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "the connection was closed");
        assert!(total > 0 && total < 64 << 20, "{total}");
    }

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_cap(4096, Some(20_000), 512), 4096);
        assert_eq!(connection_cap(4096, Some(1024), 512), 512);
        assert_eq!(connection_cap(4096, Some(100), 512), 16);
        assert_eq!(connection_cap(4096, None, 512), 4096);
    }
}
