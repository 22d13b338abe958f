//! Connection hygiene of the API listener: a cap on open connections, header-read and
//! idle keep-alive timeouts, back-off with a rate-limited warning when `accept` fails,
//! and draining request bodies a handler answered without reading.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::request::BoxError;

/// Upstream's `ReadHeaderTimeout` ("just shy of requestTimeoutUpperBound").
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// Upstream's `IdleTimeout` (Go's `http.DefaultTransport` keep-alive).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Open connections served at once. A busy single-node cluster uses a few dozen (agents,
/// controllers, kubectl, watches multiplexed over HTTP/2); 1,024 idle TLS connections
/// cost about 100 MB, which a 1 GB Raspberry Pi can afford. The cap is lowered to fit the
/// process's open-file limit (768 under systemd's default soft limit of 1,024; see
/// [`effective_max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long a connection that timed out may take to close gracefully.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Longest pause between failed `accept` calls.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// At most one warning per this interval about failing accepts or the connection cap.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Most bytes of an unread request body drained after the answer, so the client reads
/// the answer instead of a reset connection (larger bodies are cut off).
const MAX_DRAIN_BYTES: usize = 8 * 1024 * 1024;
/// Longest time spent draining an unread request body.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits on the connections of the API listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (from connecting, or from
    /// its first byte after an idle spell).
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight is kept open.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// `wanted`, lowered so that the connections take at most three quarters of the
/// open-file limit `soft_fd_limit` (the rest is for the datastore and the embedded
/// agent's containers, logs and sockets), and at least 16.
pub fn effective_max_connections(wanted: usize, soft_fd_limit: Option<u64>) -> usize {
    let fits = soft_fd_limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX)
    });
    wanted.min(fits).max(16)
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
pub fn soft_fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a connection is doing, for its timeouts.
#[derive(Debug)]
pub struct Activity(Mutex<ActivityState>);

#[derive(Debug)]
struct ActivityState {
    /// Requests whose answer is not fully sent yet.
    in_flight: usize,
    /// When the last answer finished (or the connection opened).
    idle_since: Instant,
    /// When the first byte of a request not yet dispatched arrived (set from the start:
    /// the first request's headers are due within the header-read timeout).
    reading_since: Option<Instant>,
}

impl Activity {
    pub fn new(now: Instant) -> Arc<Activity> {
        Arc::new(Activity(Mutex::new(ActivityState {
            in_flight: 0,
            idle_since: now,
            reading_since: Some(now),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes_read(&self, now: Instant) {
        let mut s = self.state();
        if s.in_flight == 0 && s.reading_since.is_none() {
            s.reading_since = Some(now);
        }
    }

    /// A request was dispatched; the guard marks its answer finished when dropped.
    pub fn request_started(self: &Arc<Activity>) -> RequestGuard {
        let mut s = self.state();
        s.in_flight += 1;
        s.reading_since = None;
        RequestGuard(self.clone())
    }

    fn request_finished(&self, now: Instant) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = now;
            s.reading_since = None;
        }
    }

    /// When the connection is to be closed if nothing changes (`None` while a request is
    /// in flight: watches and streams last as long as they need).
    pub fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let s = self.state();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.reading_since {
            Some(since) => since + limits.header_read_timeout,
            None => s.idle_since + limits.idle_timeout,
        })
    }
}

/// Marks a request's answer finished when dropped (it travels with the response body).
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished(Instant::now());
    }
}

/// An I/O stream that reports reads to the connection's [`Activity`].
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Tracked<S> {
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read(Instant::now());
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A connection being served that can be asked to finish gracefully.
pub trait GracefulConnection: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, E, B> GracefulConnection
    for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    Self: Future,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self)
    }
}

/// Drives `conn` until it ends, or until its [`Activity`] deadline passes (then it gets
/// [`SHUTDOWN_GRACE`] to close gracefully and is dropped). `None` when it timed out.
pub async fn drive<C: GracefulConnection>(
    conn: C,
    activity: &Activity,
    limits: &ConnectionLimits,
) -> Option<C::Output> {
    let mut conn = std::pin::pin!(conn);
    loop {
        let wake = activity
            .deadline(limits)
            .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        tokio::select! {
            out = conn.as_mut() => return Some(out),
            _ = tokio::time::sleep_until(wake) => {
                if activity.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
                    return None;
                }
            }
        }
    }
}

/// The pause after the `failures`-th failed `accept` in a row: doubling from 5 ms up to
/// one second.
pub fn accept_backoff(failures: u32) -> Duration {
    let doubled = MIN_ACCEPT_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_ACCEPT_BACKOFF)
}

/// Whether a failed `accept` concerns only the one connection (retry at once) rather than
/// the process (out of file descriptors or memory: back off).
pub fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Allows one warning per interval and counts the ones it held back.
#[derive(Debug)]
pub struct RateLimitedWarning {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarning {
    pub fn new(interval: Duration) -> RateLimitedWarning {
        RateLimitedWarning {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(count of warnings suppressed since the last one)` when a warning may be
    /// logged now, `None` when this one is to be suppressed.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A request body that, when dropped before its end (the handler answered without
/// reading it), keeps reading it in the background up to [`MAX_DRAIN_BYTES`] and
/// [`DRAIN_TIMEOUT`]: otherwise the connection closes with unread data and the client's
/// kernel resets it, often before the client has read the answer.
pub struct DrainOnDrop<B: Body<Data = Bytes> + Send + Unpin + 'static>(Option<B>);

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> DrainOnDrop<B> {
    pub fn new(body: B) -> DrainOnDrop<B> {
        DrainOnDrop(Some(body))
    }
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> Body for DrainOnDrop<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> Drop for DrainOnDrop<B> {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut drained = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    drained += frame.data_ref().map_or(0, Bytes::len);
                    if drained > MAX_DRAIN_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        });
    }
}

/// A response body that holds its request's [`RequestGuard`] until it is sent or dropped.
pub struct Guarded<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Guarded<B> {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 10,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
        }
    }

    #[test]
    fn first_request_headers_are_due_within_the_header_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        assert_eq!(a.deadline(&limits()), Some(t0 + Duration::from_secs(30)));
        a.bytes_read(t0 + Duration::from_secs(5));
        assert_eq!(a.deadline(&limits()), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn requests_in_flight_have_no_deadline_and_idle_connections_get_the_idle_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        let guard = a.request_started();
        let second = a.request_started();
        assert_eq!(a.deadline(&limits()), None);
        drop(guard);
        assert_eq!(a.deadline(&limits()), None);
        let t1 = t0 + Duration::from_secs(100);
        a.request_finished(t1);
        std::mem::forget(second);
        assert_eq!(a.deadline(&limits()), Some(t1 + Duration::from_secs(90)));
        // A client that starts the next request but never finishes its headers.
        let t2 = t1 + Duration::from_secs(60);
        a.bytes_read(t2);
        assert_eq!(a.deadline(&limits()), Some(t2 + Duration::from_secs(30)));
    }

    #[test]
    fn accept_backoff_doubles_up_to_a_second() {
        assert_eq!(accept_backoff(1), Duration::from_millis(5));
        assert_eq!(accept_backoff(2), Duration::from_millis(10));
        assert_eq!(accept_backoff(5), Duration::from_millis(80));
        assert_eq!(accept_backoff(12), Duration::from_secs(1));
        assert_eq!(accept_backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn warnings_are_rate_limited_and_count_what_they_held_back() {
        let t0 = Instant::now();
        let mut w = RateLimitedWarning::new(Duration::from_secs(10));
        assert_eq!(w.allow(t0), Some(0));
        for i in 1..=199 {
            assert_eq!(w.allow(t0 + Duration::from_millis(50 * i)), None);
        }
        assert_eq!(w.allow(t0 + Duration::from_secs(10)), Some(199));
        assert_eq!(w.allow(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_connection_cap_fits_the_open_file_limit() {
        assert_eq!(effective_max_connections(1024, Some(1_048_576)), 1024);
        assert_eq!(effective_max_connections(1024, Some(1024)), 768);
        assert_eq!(effective_max_connections(1024, None), 1024);
        assert_eq!(effective_max_connections(1024, Some(64)), 48);
        assert_eq!(effective_max_connections(1024, Some(8)), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_shut_down_at_its_deadline() {
        struct Forever(bool);
        impl Future for Forever {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                if self.0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
        impl GracefulConnection for Forever {
            fn graceful_shutdown(mut self: Pin<&mut Self>) {
                self.0 = true;
            }
        }
        let started = Instant::now();
        let a = Activity::new(Instant::now());
        let out = tokio::time::timeout(
            Duration::from_secs(3600),
            drive(Forever(false), &a, &limits()),
        )
        .await
        .expect("drive deadlocked");
        assert_eq!(out, None);
        assert_eq!(started.elapsed().as_secs(), 30);
    }
}
