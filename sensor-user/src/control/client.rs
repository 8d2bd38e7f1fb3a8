//! The CLI's side of the control socket (blocking): connect, send one request, read the
//! answer and, for a followed stream, the events after it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Request, Response};

/// How long the agent may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the agent could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent listens.
    #[error("the agent is not running (no control socket at {})", path.display())]
    NotRunning {
        /// The socket's path.
        path: PathBuf,
    },
    /// The socket is root's only.
    #[error("permission denied on the control socket {}: it serves root only", path.display())]
    PermissionDenied {
        /// The socket's path.
        path: PathBuf,
    },
    /// The agent refused the request or failed to answer it.
    #[error("the agent answered: {message}")]
    Refused {
        /// Its message.
        message: String,
    },
    /// The answer was not a line of the protocol.
    #[error("unexpected answer from the agent: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A connection to the agent.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    /// Connects to the agent of `pin_dir`.
    pub fn connect(pin_dir: &Path) -> Result<Self, ClientError> {
        Self::connect_to(&super::socket_path(pin_dir))
    }

    /// Connects to the socket at `path`.
    pub fn connect_to(path: &Path) -> Result<Self, ClientError> {
        let path = path.to_path_buf();
        let stream = UnixStream::connect(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { path: path.clone() }
            }
            std::io::ErrorKind::PermissionDenied => {
                ClientError::PermissionDenied { path: path.clone() }
            }
            _ => ClientError::Io {
                path: path.clone(),
                source,
            },
        })?;
        Ok(Self {
            reader: BufReader::new(stream),
            path,
        })
    }

    /// Sends `request` and reads its answer (an error answer is an error).
    pub fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol {
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let stream = self.reader.get_mut();
        let written = stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .and_then(|()| stream.write_all(&line))
            .map_err(io(&self.path));
        // A refusal may have closed the connection before the request was written: read it.
        let answer = self.read();
        if let (Err(e), Ok(None) | Err(_)) = (written, &answer) {
            return Err(e);
        }
        match answer? {
            Some(Response::Error { message }) => Err(ClientError::Refused { message }),
            Some(r) => Ok(r),
            None => Err(ClientError::Protocol {
                reason: "the connection closed without an answer".into(),
            }),
        }
    }

    /// The next line of a followed stream (`None` when the agent closed it); waits as long as
    /// it takes.
    pub fn next_event(&mut self) -> Result<Option<Response>, ClientError> {
        self.reader
            .get_mut()
            .set_read_timeout(None)
            .map_err(io(&self.path))?;
        self.read()
    }

    fn read(&mut self) -> Result<Option<Response>, ClientError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(io(&self.path))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ClientError::Protocol {
                reason: e.to_string(),
            })
    }
}

/// An I/O error on the socket at `path`.
fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}
