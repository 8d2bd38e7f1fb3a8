//! The Prometheus endpoint: HTTP/1.1 (hyper) on one TCP listener, `GET /metrics` only. A
//! scrape encodes the registry on the agent's runtime; connections are few (a scraper or two),
//! bounded, and each has a deadline for its request's headers.
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, header, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, broadcast},
};

/// The `OpenMetrics` content type, which Prometheus asks for and reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 8;
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed `accept` before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds the endpoint's listener (inside the agent's runtime). The error names the
/// configuration key, so the operator knows what to change.
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .with_context(|| format!("metrics: cannot listen on {addr} (`[metrics] address`)"))?;
    TcpListener::from_std(listener).context("metrics: registering the listener")
}

/// Serves `registry` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.recv() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Beyond the bound, the connection is closed unanswered.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let registry = Arc::clone(&registry);
                async move { Ok::<_, Infallible>(respond(&registry, &req)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(slot);
        });
    }
}

/// The answer to one request: the metrics for `GET /metrics` (and `HEAD`), 404 or 405
/// otherwise.
fn respond<B>(registry: &Registry, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        if let Ok(v) = header::HeaderValue::from_str(content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"only /metrics is served here\n"),
        );
    }
    match *req.method() {
        Method::GET => reply(
            StatusCode::OK,
            CONTENT_TYPE,
            Bytes::from(super::encode(registry)),
        ),
        Method::HEAD => reply(StatusCode::OK, CONTENT_TYPE, Bytes::new()),
        _ => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                Bytes::from_static(b"GET only\n"),
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint on a loopback port: the metrics for `GET /metrics`, 404 elsewhere, 405
    /// for other methods, and it stops on shutdown.
    #[test]
    fn serves_metrics_on_get_only() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
            let addr = listener.local_addr().expect("addr");
            let metrics = super::super::Metrics::new(Box::new(|| None));
            let (tx, rx) = broadcast::channel(1);
            let server = tokio::spawn(serve(listener, metrics.registry(), rx));
            let ask = |request: &'static str| async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.write_all(request.as_bytes()).await.expect("write");
                let mut out = String::new();
                s.read_to_string(&mut out).await.expect("read");
                out
            };
            let ok = ask("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
            assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
            assert!(ok.contains("application/openmetrics-text"), "{ok}");
            assert!(ok.contains("# TYPE apisensor_findings counter"), "{ok}");
            assert!(ok.trim_end().ends_with("# EOF"), "{ok}");
            let missing = ask("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
            assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
            let post =
                ask("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            assert!(post.starts_with("HTTP/1.1 405"), "{post}");
            tx.send(()).expect("shutdown");
            tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .expect("the server stops on shutdown")
                .expect("no panic");
        });
    }
}
