//! Listeners, accept loops and hyper's HTTP/1.1 connections (keep-alive on, a bound on the
//! time to send a request's headers), and the glue that times each request and writes its
//! access-log line.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::access_log::{AccessLog, Entry};
use crate::routes::{self, App, Reply};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause after a failed `accept` (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The listen backlog.
const BACKLOG: i32 = 1024;

/// A listener on `addr`. An IPv6 listener is IPv6-only, so `0.0.0.0:P` and `[::]:P` can both
/// be bound. Must run inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Serves every listener until the task is dropped (returns at once if there are none).
pub async fn serve(listeners: Vec<TcpListener>, app: Arc<App>, log: Arc<AccessLog>) {
    let mut loops = JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(listener, Arc::clone(&app), Arc::clone(&log)));
    }
    while loops.join_next().await.is_some() {}
}

/// Accepts connections forever, one task each.
async fn accept_loop(listener: TcpListener, app: Arc<App>, log: Arc<AccessLog>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, peer, Arc::clone(&app), Arc::clone(&log)));
            }
            Err(e) => {
                eprintln!("sample-api: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Serves one connection's requests until it closes. Protocol errors (hyper answers them
/// itself where it can) and clients going away end the connection silently.
async fn connection(stream: TcpStream, peer: SocketAddr, app: Arc<App>, log: Arc<AccessLog>) {
    // Small answers on a kept-alive connection must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let (app, log) = (Arc::clone(&app), Arc::clone(&log));
        async move { Ok::<_, Infallible>(respond(&app, &log, peer, req).await) }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Answers one request from `peer` and writes its access-log line.
pub async fn respond<B>(app: &App, log: &AccessLog, peer: SocketAddr, req: Request<B>) -> Reply
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let start = Instant::now();
    let method = req.method().clone();
    // `path()` has no query string, which is never logged.
    let path = req.uri().path().to_owned();
    let real_ip = req
        .headers()
        .get("x-real-ip")
        .map(|v| v.as_bytes().to_vec());
    let forwarded_for = joined(req.headers().get_all("x-forwarded-for"));
    let routed = routes::handle(app, req).await;
    log.request(&Entry {
        time: SystemTime::now(),
        peer,
        real_ip: real_ip.as_deref(),
        forwarded_for: forwarded_for.as_deref(),
        method: method.as_str(),
        path: &path,
        status: routed.response.status().as_u16(),
        duration: start.elapsed(),
        login: routed.login.as_ref(),
    });
    routed.response
}

/// Every value of a repeated header, joined with `, ` (as one header would carry them).
fn joined(values: header::GetAll<'_, header::HeaderValue>) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for v in values {
        let buf = out.get_or_insert_with(Vec::new);
        if !buf.is_empty() {
            buf.extend_from_slice(b", ");
        }
        buf.extend_from_slice(v.as_bytes());
    }
    out
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
