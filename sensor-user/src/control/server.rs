//! The agent's side of the control socket: a tokio task that accepts connections, refuses
//! peers that are not root, reads one request line and writes the answer the pipeline's
//! owner computed (then, for a followed stream, each live event).

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};

use super::Query;
use super::protocol::{MAX_REQUEST, Request, Response};

/// Connections served at once; more wait to be accepted.
const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the pipeline's owner may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound socket, removed when dropped.
#[derive(Debug)]
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path` (a stale one from an agent that died is replaced: the caller
/// holds the agent lock), mode 0600.
pub fn bind(path: &Path) -> io::Result<Socket> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Created with the umask's mode, then narrowed: no client is served before `serve` runs.
    let listener = UnixListener::bind(path)?;
    let socket = Socket {
        listener,
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(socket)
}

/// Serves connections until `shutdown` fires; each request goes to `queries`, each follower
/// subscribes to `live`.
pub async fn serve(
    socket: Socket,
    queries: mpsc::Sender<Query>,
    live: broadcast::Sender<Arc<str>>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = Arc::clone(&clients).acquire_owned().await else {
            return;
        };
        tokio::select! {
            _ = shutdown.recv() => return,
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (queries, live) = (queries.clone(), live.clone());
                    let stop = shutdown.resubscribe();
                    tokio::spawn(async move {
                        if let Err(error) = handle(stream, &queries, &live, stop).await {
                            tracing::debug!(%error, "control client");
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Writes one response line.
async fn write_line(w: &mut (impl AsyncWrite + Unpin), response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

/// One connection.
async fn handle(
    stream: UnixStream,
    queries: &mpsc::Sender<Query>,
    live: &broadcast::Sender<Arc<str>>,
    mut shutdown: broadcast::Receiver<()>,
) -> io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let mut text = String::new();
    // The request is read before a refusal too, so that the client, which writes it first,
    // reads the refusal rather than a closed connection.
    match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut text)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return write_line(&mut write, &Response::error("no request in time")).await,
    }
    if uid != 0 {
        tracing::warn!(uid, "control socket: refused a client that is not root");
        let refusal = Response::error(format!(
            "permission denied: the control socket serves root only (client uid {uid})"
        ));
        return write_line(&mut write, &refusal).await;
    }
    let request: Request = match serde_json::from_str(text.trim_end()) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("bad request: {e}");
            return write_line(&mut write, &Response::error(message)).await;
        }
    };
    // A follower subscribes before it asks for the recent events: nothing is lost between.
    let follow = matches!(request, Request::Events { follow: true, .. });
    let mut events = follow.then(|| live.subscribe());
    let (reply, answer) = oneshot::channel();
    let response = if queries.send(Query { request, reply }).await.is_err() {
        Response::error("the agent is stopping")
    } else {
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Response::error("the agent is stopping"),
            Err(_) => Response::error("the agent did not answer in time"),
        }
    };
    write_line(&mut write, &response).await?;
    let Some(events) = events.as_mut() else {
        return Ok(());
    };
    // The client's half: its end of the connection closes the stream.
    let mut rest = reader.into_inner().into_inner();
    let mut sink = [0_u8; 64];
    loop {
        tokio::select! {
            _ = shutdown.recv() => return Ok(()),
            n = rest.read(&mut sink) => if n.unwrap_or(0) == 0 { return Ok(()) },
            event = events.recv() => match event {
                Ok(event) => {
                    let mut out = Vec::with_capacity(event.len() + 32);
                    out.extend_from_slice(br#"{"type":"event","event":"#);
                    out.extend_from_slice(event.as_bytes());
                    out.extend_from_slice(b"}\n");
                    write.write_all(&out).await?;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let note = Response::error(format!("{n} events missed: the client read too slowly"));
                    write_line(&mut write, &note).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}
