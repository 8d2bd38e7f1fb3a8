//! The control socket: the running agent answers the operator's investigation commands
//! (`status`, `sources`, `accounts`, `findings`, `events`, `endpoints`, `ttps`, `top --live`)
//! on a Unix socket next to its lock, `/run/apisensor/<pin dir>.sock`, mode 0600, root's
//! only; the server also checks each peer's credentials (`SO_PEERCRED`) and refuses any uid
//! but 0.
//!
//! # Layout
//!
//! - [`protocol`]: the request and response types, one JSON line each.
//! - [`server`]: the agent's side, a tokio task that accepts connections and hands each
//!   request to the task that owns the pipeline.
//! - [`agent`]: that task's side: the [`agent::Journal`] of recent findings and decisions
//!   (fed by the sink's callbacks, broadcast to followers) and the answers, computed from the
//!   pipeline's read accessors between two ring drains.
//! - [`client`]: the CLI's side, blocking.
//!
//! The pipeline has one owner and no lock: the server sends each query over a channel and
//! awaits the answer on a oneshot channel; the owner answers pending queries after each
//! drain of the rings.

use std::path::{Path, PathBuf};

pub mod agent;
pub mod client;
pub mod protocol;
pub mod server;

/// The control socket of the agent of `pin_dir`: beside its lock file, same name.
pub fn socket_path(pin_dir: &Path) -> PathBuf {
    let [lock, _] = crate::loader::lock_files(pin_dir);
    lock.with_extension("sock")
}

/// One request on its way to the pipeline's owner, with where its answer goes.
#[derive(Debug)]
pub struct Query {
    /// The request.
    pub request: protocol::Request,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<protocol::Response>,
}

/// Binds the agent's control socket for `pin_dir` and starts serving it until `shutdown`;
/// returns the pipeline owner's end and the server task. `live` is the journal's broadcast.
pub fn start(
    pin_dir: &Path,
    info: agent::AgentInfo,
    live: tokio::sync::broadcast::Sender<std::sync::Arc<str>>,
    shutdown: tokio::sync::broadcast::Receiver<()>,
    now_ns: u64,
) -> std::io::Result<(agent::Control, tokio::task::JoinHandle<()>)> {
    let path = socket_path(pin_dir);
    let socket = server::bind(&path)?;
    let (queries, receiver) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(server::serve(socket, queries, live, shutdown));
    tracing::info!(socket = %path.display(), "control socket ready");
    Ok((agent::Control::new(receiver, info, now_ns), task))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_socket_sits_beside_the_agent_lock() {
        assert_eq!(
            super::socket_path(Path::new("/sys/fs/bpf/apisensor")),
            Path::new("/run/apisensor/_sys_fs_bpf_apisensor.sock")
        );
    }
}
