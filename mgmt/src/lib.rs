//! The JSON management socket of webswitch and its `webswitchctl` client.
//!
//! The switch implements [`Control`] (one method: run a named command with JSON args) and
//! hands it to [`Server::start`], which serves a Unix socket, owner-only (mode 0600), on its
//! own threads, never on a worker core. The wire format is one JSON object per line in
//! each direction:
//!
//! ```text
//! → {"id": 1, "cmd": "backends.drain", "args": {"name": "be2"}}
//! ← {"id": 1, "ok": true, "result": {"version": 8}}
//! → {"id": "x", "cmd": "backends.drain", "args": {"name": "nope"}}
//! ← {"id": "x", "ok": false, "error": {"code": "not_found", "message": "no backend `nope`"}}
//! ```
//!
//! The commands and their replies are documented in `docs/mgmt-api.md`. [`Client`] is the
//! client side; [`render`] turns results into the tables `webswitchctl` prints.
#![forbid(unsafe_code)]

pub mod args;
mod client;
mod error;
pub mod protocol;
pub mod render;
mod server;

use serde_json::Value;

pub use client::{CallError, Client, DEFAULT_TIMEOUT, MAX_REPLY};
pub use error::{CtlError, ErrorCode};
pub use protocol::MAX_LINE;
pub use server::{Server, MAX_CLIENTS};

/// The switch side of the socket: runs one command.
///
/// Called from the server's client threads, possibly several at once. A command that
/// fails must change nothing. A panic inside `handle` is caught (where panics unwind)
/// and answered as an `internal` error.
pub trait Control: Send + Sync + 'static {
    /// Runs one command. `cmd` like `"backends.drain"`, `args` the request's `args`
    /// object (`Value::Null` if absent). An unknown `cmd` should give
    /// [`CtlError::unknown_command`].
    fn handle(&self, cmd: &str, args: &Value) -> Result<Value, CtlError>;
}

/// Any suitable closure is a [`Control`].
impl<F> Control for F
where
    F: Fn(&str, &Value) -> Result<Value, CtlError> + Send + Sync + 'static,
{
    fn handle(&self, cmd: &str, args: &Value) -> Result<Value, CtlError> {
        self(cmd, args)
    }
}
