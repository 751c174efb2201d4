//! The one HTTP server every Tapline service runs on (`tapline relay serve`, the relay's and the
//! loader's and puller's Cloud Run services): hyper's HTTP/1 with a header-read timeout, a
//! deadline for the request body, an idle keep-alive timeout, a connection cap and a bounded
//! graceful shutdown. What a client sees past each limit: functions/webhook-relay/README.md.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Seconds a client has to send a complete request head, from connecting or from the end of the
/// previous answer (hyper's timer; past it the connection is closed without an answer).
pub const ENV_HEADER_TIMEOUT_SECS: &str = "TAPLINE_HTTP_HEADER_TIMEOUT_SECS";
/// Seconds a client has to send the whole body once the head is in (past it: 408, closed).
pub const ENV_REQUEST_TIMEOUT_SECS: &str = "TAPLINE_HTTP_REQUEST_TIMEOUT_SECS";
/// Seconds a kept-alive connection may wait for its next request before it is closed.
pub const ENV_IDLE_TIMEOUT_SECS: &str = "TAPLINE_HTTP_IDLE_TIMEOUT_SECS";
/// Connections held at once (default: 1024, or three quarters of the open-file limit if lower).
pub const ENV_MAX_CONNECTIONS: &str = "TAPLINE_HTTP_MAX_CONNECTIONS";
/// Seconds requests in flight may take to finish after SIGTERM before connections are closed.
pub const ENV_SHUTDOWN_GRACE_SECS: &str = "TAPLINE_HTTP_SHUTDOWN_GRACE_SECS";

/// Default [`ServerLimits::header_read_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerLimits::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerLimits::max_connections`] when the open-file limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`ServerLimits::shutdown_grace`]: Cloud Run kills 10 s after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// The limits a server runs under; [`Default`] is what the services use unless the
/// `TAPLINE_HTTP_*` variables say otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to receive a complete request head, from the connection's start or the end of the
    /// previous answer. Past it hyper closes the connection without answering (slow headers).
    pub header_read_timeout: Duration,
    /// Time to receive the body once the head is in. Past it the answer is 408 and the
    /// connection is closed (slow bodies). Handling time after the body is not counted.
    pub request_timeout: Duration,
    /// Time a connection with no request in flight stays open.
    pub idle_timeout: Duration,
    /// Connections held at once. A new one past the cap takes the place of the connection idle
    /// the longest; when every one is busy it is answered 503 and closed.
    pub max_connections: usize,
    /// After the shutdown signal: time requests in flight may take before connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(open_files_limit()),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// A `TAPLINE_HTTP_*` variable that is not a positive whole number.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?} is not a positive whole number")]
pub struct ServerLimitsError {
    /// The variable.
    pub var: &'static str,
    /// What it held.
    pub value: String,
}

impl From<ServerLimitsError> for std::io::Error {
    fn from(err: ServerLimitsError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, err)
    }
}

impl ServerLimits {
    /// The defaults, overridden by the `TAPLINE_HTTP_*` variables of the process.
    pub fn from_env() -> Result<Self, ServerLimitsError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// The defaults, overridden by the variables `env` resolves.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Self, ServerLimitsError> {
        let number = |var: &'static str| -> Result<Option<u64>, ServerLimitsError> {
            match env(var).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(ServerLimitsError { var, value }),
                },
            }
        };
        let secs = |var: &'static str, default: Duration| {
            Ok::<_, ServerLimitsError>(number(var)?.map_or(default, Duration::from_secs))
        };
        let defaults = Self::default();
        Ok(Self {
            header_read_timeout: secs(ENV_HEADER_TIMEOUT_SECS, defaults.header_read_timeout)?,
            request_timeout: secs(ENV_REQUEST_TIMEOUT_SECS, defaults.request_timeout)?,
            idle_timeout: secs(ENV_IDLE_TIMEOUT_SECS, defaults.idle_timeout)?,
            max_connections: number(ENV_MAX_CONNECTIONS)?
                .map_or(defaults.max_connections, |n| n as usize),
            shutdown_grace: secs(ENV_SHUTDOWN_GRACE_SECS, defaults.shutdown_grace)?,
        })
    }
}

/// The soft open-file limit of this process (Linux `/proc/self/limits`), if known.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The cap that keeps `accept` clear of the open-file limit: a quarter of the descriptors stay
/// for the queue, the outbound clients and the logs. A server that ran out of descriptors
/// could not accept at all, so past the cap it still answers (503 or by evicting idle ones).
fn default_max_connections(open_files: Option<u64>) -> usize {
    match open_files {
        Some(n) => ((n / 4 * 3) as usize).clamp(8, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// Lets one log line through per key and period, and counts the ones held back, so that a flood
/// (refused requests, refused connections) costs a line per period rather than one per request.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    keys: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogThrottle {
    /// At most one line per key every `period`. Keys must come from a bounded set.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when a line for `key` may be written now, `n` being the number of lines held
    /// back since the last one; `None` when this one is held back (and counted).
    pub fn allow(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match keys.get_mut(key) {
            Some((last, held)) if now.duration_since(*last) < self.period => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                keys.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

/// What the server knows of one connection: whether a request is in flight and since when it
/// has been quiet, so that the cap can evict the one idle the longest.
struct Activity {
    in_flight: AtomicUsize,
    last_active_ms: AtomicU64,
    evict: Notify,
    epoch: Instant,
}

impl Activity {
    fn touch(&self) {
        self.last_active_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When this connection may be closed as idle, if no request starts before.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        self.epoch + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed)) + idle
    }
}

/// Marks a request in flight on its connection for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections, for the cap.
struct ConnectionTable {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl ConnectionTable {
    /// Registers a new connection; at the cap, evicts the connection idle the longest first.
    /// `None` when every connection has a request in flight.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Activity>)> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= max {
            let victim = open
                .iter()
                .filter(|(_, a)| a.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|(id, a)| (a.last_active_ms.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id)?;
            if let Some(evicted) = open.remove(&victim) {
                // Stored as a permit if its task is not waiting yet.
                evicted.evict.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        activity.touch();
        open.insert(id, activity.clone());
        Some((id, activity))
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The body did not arrive within [`ServerLimits::request_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("request body not received in time")]
pub struct RequestBodyTimedOut;

/// A request body that fails with [`RequestBodyTimedOut`] past its deadline, and says so
/// through `timed_out` so that the answer can be a 408 whatever the handler made of the error.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        // Most bodies arrive with their head: the timer is only armed for those that do not.
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(RequestBodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn json_answer(status: StatusCode, body: &'static str) -> Response<axum::body::Body> {
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Written to a connection past the cap when every connection is busy; then it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 46\r\n\r\n\
{\"error\":\"too many connections, retry later\"}";

/// Answers 503 without reading the request and closes: no task, no buffer, nothing to hold.
fn refuse(stream: TcpStream) {
    // Reading what already arrived first makes the close a FIN rather than a reset that could
    // reach the client before the answer does.
    let mut scratch = [0u8; 4096];
    let _ = stream.try_read(&mut scratch);
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish for at most `limits.shutdown_grace`, and closes
/// whatever is still open. Each request carries its peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let table = Arc::new(ConnectionTable {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let refusals = LogThrottle::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Finished connections are collected here so the set stays as large as what is open.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or memory: give the open connections a moment to close
                // rather than spinning on accept.
                if let Some(held) = refusals.allow("accept") {
                    warn!(error = %err, held_back = held, "Cannot accept a connection.");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((id, activity)) = table.admit(limits.max_connections) else {
            if let Some(held) = refusals.allow("full") {
                warn!(%peer, max_connections = limits.max_connections, refused_since_last = held,
                      "Connection refused with 503: every connection is busy.");
            }
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = serve_connection(
            stream,
            peer,
            router.clone(),
            limits.clone(),
            activity,
            stop_rx.clone(),
        );
        let table = table.clone();
        connections.spawn(async move {
            connection.await;
            table.remove(id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "Shutdown grace over: closing connections still open."
        );
        connections.shutdown().await;
    } else {
        debug!(open, "Connections closed.");
    }
    info!("Server stopped.");
    Ok(())
}

/// One connection, until the client leaves, a limit closes it, it is evicted, or shutdown.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Arc<ServerLimits>,
    activity: Arc<Activity>,
    mut stop: watch::Receiver<bool>,
) {
    let request_timeout = limits.request_timeout;
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let in_flight = InFlight::start(&service_activity);
        async move {
            let timed_out = Arc::new(AtomicBool::new(false));
            let deadline = Instant::now() + request_timeout;
            let mut request = request.map(|inner| DeadlineBody {
                inner,
                deadline,
                sleep: None,
                timed_out: timed_out.clone(),
            });
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
            drop(in_flight);
            if timed_out.load(Ordering::Relaxed) {
                debug!(%peer, "Request body not received in time: 408.");
                return Ok::<_, Infallible>(json_answer(
                    StatusCode::REQUEST_TIMEOUT,
                    r#"{"error":"request body not received in time"}"#,
                ));
            }
            Ok(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let idle_at = activity.idle_deadline(limits.idle_timeout);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    debug!(%peer, error = %err, "Connection ended on an error.");
                }
                return;
            }
            // Evicted for a newer connection: it had no request in flight, so dropping it loses
            // nothing the client was told about.
            () = activity.evict.notified() => return,
            _ = stop.changed(), if !closing => {
                // Idle connections close now; busy ones after their answer.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(idle_at), if !closing => {
                if activity.in_flight.load(Ordering::Relaxed) == 0
                    && activity.idle_deadline(limits.idle_timeout) <= Instant::now()
                {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                } else if activity.in_flight.load(Ordering::Relaxed) > 0 {
                    // Busy: look again one idle period from now.
                    activity.touch();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_cap_stays_clear_of_the_open_file_limit() {
        assert_eq!(default_max_connections(Some(256)), 192);
        assert_eq!(
            default_max_connections(Some(1 << 20)),
            DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(default_max_connections(Some(4)), 8);
        assert_eq!(default_max_connections(None), DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn limits_come_from_the_environment_and_refuse_nonsense() {
        let env = |var: &str| match var {
            ENV_HEADER_TIMEOUT_SECS => Some("3".to_string()),
            ENV_MAX_CONNECTIONS => Some("17".to_string()),
            _ => None,
        };
        let limits = ServerLimits::from_lookup(env).unwrap();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(3));
        assert_eq!(limits.max_connections, 17);
        assert_eq!(limits.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        let err = ServerLimits::from_lookup(|var| {
            (var == ENV_SHUTDOWN_GRACE_SECS).then(|| "0".to_string())
        })
        .unwrap_err();
        assert_eq!(err.var, ENV_SHUTDOWN_GRACE_SECS);
    }

    #[test]
    fn the_log_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.allow("a"), Some(0));
        assert_eq!(throttle.allow("a"), None);
        assert_eq!(throttle.allow("a"), None);
        assert_eq!(throttle.allow("b"), Some(0), "per key");
        let throttle = LogThrottle::new(Duration::ZERO);
        assert_eq!(throttle.allow("a"), Some(0));
        assert_eq!(throttle.allow("a"), Some(0));
    }

    /// A server on loopback under `limits` with `router`; stops when `stop` is sent.
    async fn start(
        router: Router,
        limits: ServerLimits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits, async move {
            let _ = stop_rx.await;
        }));
        (addr, stop_tx, server)
    }

    fn echo_router() -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/echo", post(|body: Bytes| async move { body }))
    }

    /// `what` within 10 s (a bounded wait on an event, not a timing).
    async fn within<T>(what: &str, event: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), event)
            .await
            .unwrap_or_else(|_| panic!("{what} did not happen within 10 s"))
    }

    /// Everything the server sends until it closes the connection (or resets it).
    async fn read_until_closed(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn slow_headers_are_cut_off_without_an_answer_at_the_header_timeout() {
        let (addr, _stop, _server) = start(echo_router(), ServerLimits::default()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let head = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n{}";
        let mut sent = 0;
        let mut scratch = [0u8; 256];
        // One byte a second (paused time: the clock jumps when nothing else can run).
        let closed_at = loop {
            tokio::select! {
                read = stream.read(&mut scratch) => {
                    assert!(matches!(read, Ok(0) | Err(_)), "no answer expected: {read:?}");
                    break started.elapsed();
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    assert!(sent < head.len(), "the whole head went through");
                    if stream.write_all(&head[sent..sent + 1]).await.is_err() {
                        break started.elapsed();
                    }
                    sent += 1;
                }
            }
        };
        assert!(
            closed_at >= DEFAULT_HEADER_TIMEOUT
                && closed_at < DEFAULT_HEADER_TIMEOUT + Duration::from_secs(2),
            "closed after {closed_at:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_not_sent_in_time_is_answered_408_and_the_connection_closed() {
        let (addr, _stop, _server) = start(echo_router(), ServerLimits::default()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"half\":")
            .await
            .unwrap();
        let answer = read_until_closed(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with(r#"{"error":"request body not received in time"}"#),
            "{answer}"
        );
        assert!(
            started.elapsed() >= DEFAULT_REQUEST_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn past_the_cap_the_longest_idle_connection_makes_room_and_503_when_all_are_busy() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(tokio::sync::Semaphore::new(0));
        let router = {
            let (release, entered) = (release.clone(), entered.clone());
            echo_router().route(
                "/wait",
                post(move || async move {
                    // Registered before saying so, so that the release cannot be missed.
                    let released = release.notified();
                    tokio::pin!(released);
                    released.as_mut().enable();
                    entered.add_permits(1);
                    released.await;
                    "released"
                }),
            )
        };
        let limits = ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        };
        let (addr, _stop, _server) = start(router, limits).await;
        let mut idle_first = TcpStream::connect(addr).await.unwrap();
        let mut idle_second = TcpStream::connect(addr).await.unwrap();
        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        // The first idle connection is closed to admit the newcomer, which is served.
        let evicted = within("the eviction", read_until_closed(&mut idle_first)).await;
        assert_eq!(evicted, "");
        newcomer
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        let n = within("the answer", newcomer.read(&mut answer))
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("hi"),
            "{answer}"
        );

        // Both held connections busy: a third is answered 503 at once and closed.
        let wait_request = b"POST /wait HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
        idle_second.write_all(wait_request).await.unwrap();
        newcomer.write_all(wait_request).await.unwrap();
        let _ = within("two requests in flight", entered.acquire_many(2)).await;
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let answer = within("the 503", read_until_closed(&mut refused)).await;
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with(r#"{"error":"too many connections, retry later"}"#),
            "{answer}"
        );
        // The busy ones were not touched.
        release.notify_waiters();
        for stream in [&mut idle_second, &mut newcomer] {
            let mut answer = [0u8; 512];
            let n = within("the release", stream.read(&mut answer))
                .await
                .unwrap();
            assert!(String::from_utf8_lossy(&answer[..n]).ends_with("released"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_within_the_grace_while_a_request_is_half_sent() {
        let entered = Arc::new(tokio::sync::Semaphore::new(0));
        let router = {
            let entered = entered.clone();
            echo_router().route(
                "/upload",
                post(move |request: axum::extract::Request| async move {
                    entered.add_permits(1);
                    let body = axum::body::to_bytes(request.into_body(), 1024).await;
                    format!("{} bytes", body.map(|b| b.len()).unwrap_or(0))
                }),
            )
        };
        let (addr, stop, server) = start(router, ServerLimits::default()).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        let _ = entered.acquire().await.unwrap();
        let started = Instant::now();
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        // In flight: waited for, up to the grace (the body deadline, 30 s, is later).
        let took = started.elapsed();
        assert!(
            took >= DEFAULT_SHUTDOWN_GRACE
                && took < DEFAULT_SHUTDOWN_GRACE + Duration::from_secs(1),
            "{took:?}"
        );
        // The idle connection was closed at once, the half-sent request with the server.
        assert_eq!(read_until_closed(&mut idle).await, "");
        assert_eq!(read_until_closed(&mut half).await, "");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }
}
