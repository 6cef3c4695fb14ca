//! A blocking client for the management socket (what `webswitchctl` uses).
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::CtlError;
use crate::protocol::{encode_request, parse_reply, Reply};

/// How long [`Client::call`] waits for a reply unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest reply line a client reads (a `connections.list` can be long): 64 MiB.
pub const MAX_REPLY: usize = 64 << 20;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Reading or writing the socket failed (a timeout is `TimedOut` / `WouldBlock`).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server's reply was not a reply to this request, or the server closed the connection.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The switch answered with an error.
    #[error("{0}")]
    Ctl(#[from] CtlError),
}

/// One connection to the management socket; requests are sent one at a time.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// The start of a reply line whose rest has not arrived yet.
    pending: Vec<u8>,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `path`; calls time out after [`DEFAULT_TIMEOUT`].
    pub fn connect(path: &Path) -> io::Result<Client> {
        let writer = UnixStream::connect(path)?;
        let reader = BufReader::new(writer.try_clone()?);
        let mut c = Client {
            path: path.to_path_buf(),
            writer,
            reader,
            pending: Vec::new(),
            next_id: 1,
        };
        c.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(c)
    }

    /// The socket path this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a call waits for the server to take the request and to answer it.
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let t = Some(timeout.max(Duration::from_millis(1)));
        self.writer.set_read_timeout(t)?;
        self.writer.set_write_timeout(t)
    }

    /// Runs `cmd` with `args` (`Value::Null` for none) and returns its result.
    ///
    /// Requests carry increasing numeric ids; a late reply to an earlier call that timed
    /// out is skipped. An error line with id `null` (a server refusing the connection, or
    /// rejecting the line) is returned as [`CallError::Ctl`].
    pub fn call(&mut self, cmd: &str, args: Value) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self
            .writer
            .write_all(&encode_request(&Value::from(id), cmd, &args))
        {
            // A server that refused this connection said why before closing: prefer that.
            if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) {
                if let Ok(Some(reply)) = self.read_reply() {
                    if let (Value::Null, Err(refusal)) = (&reply.id, reply.outcome) {
                        return Err(CallError::Ctl(refusal));
                    }
                }
            }
            return Err(CallError::Io(e));
        }
        loop {
            let reply = self.read_reply()?.ok_or_else(|| {
                CallError::Protocol("the server closed the connection without answering".into())
            })?;
            match reply.id.as_u64() {
                Some(got) if got == id => return reply.outcome.map_err(CallError::Ctl),
                Some(got) if got < id => continue, // a late answer to a call that timed out
                _ if reply.id.is_null() => {
                    return match reply.outcome {
                        Err(e) => Err(CallError::Ctl(e)),
                        Ok(_) => Err(CallError::Protocol(
                            "a successful reply with id null".into(),
                        )),
                    }
                }
                _ => {
                    return Err(CallError::Protocol(format!(
                        "reply id {} does not match request id {id}",
                        reply.id
                    )))
                }
            }
        }
    }

    /// The next reply line; `None` at a clean EOF. A line cut by a timeout is kept and
    /// completed by the next read.
    fn read_reply(&mut self) -> Result<Option<Reply>, CallError> {
        let limit = (MAX_REPLY + 1).saturating_sub(self.pending.len()) as u64;
        let n = self
            .reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut self.pending)?;
        if self.pending.last() != Some(&b'\n') {
            if n == 0 && self.pending.is_empty() {
                return Ok(None);
            }
            let why = if self.pending.len() > MAX_REPLY {
                format!("reply longer than {MAX_REPLY} bytes")
            } else {
                "the server closed the connection in the middle of a reply".into()
            };
            self.pending.clear();
            return Err(CallError::Protocol(why));
        }
        let mut line = std::mem::take(&mut self.pending);
        line.pop();
        parse_reply(&line).map(Some).map_err(CallError::Protocol)
    }
}
