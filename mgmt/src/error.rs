//! The errors a command answers with: a stable code and a human message.
use std::fmt;

use serde::{Deserialize, Serialize};

/// The class of a failed request, as it appears on the wire (`"code": "not_found"`).
///
/// Scripts may rely on these names; new codes are only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not a JSON object, `cmd` is missing or not a string, `args` is not an
    /// object, or the line is longer than [`crate::MAX_LINE`].
    BadRequest,
    /// No command of that name.
    UnknownCommand,
    /// An argument is missing, of the wrong type or out of range; the message names it.
    InvalidArgument,
    /// The named backend, pool, connection or file does not exist.
    NotFound,
    /// The request is well formed but clashes with the running state (a name already
    /// taken, a stale `expect_version`, a backend still referenced...).
    Conflict,
    /// The switch failed to carry out a valid request; also the answer of a server that
    /// already serves [`crate::MAX_CLIENTS`] connections (retry later).
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownCommand,
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::Internal,
    ];

    /// The wire name, e.g. `"invalid_argument"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code with this wire name.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed command: what [`crate::Control::handle`] returns and what the reply's
/// `error` object carries (`{"code": "...", "message": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct CtlError {
    pub code: ErrorCode,
    pub message: String,
}

impl CtlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    /// `unknown command: <cmd>`.
    pub fn unknown_command(cmd: &str) -> Self {
        Self::new(
            ErrorCode::UnknownCommand,
            format!("unknown command `{cmd}`"),
        )
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_by_name_and_serde() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(c.as_str()), Some(c));
            let v = serde_json::to_value(c).unwrap();
            assert_eq!(v, serde_json::Value::String(c.as_str().into()));
            assert_eq!(serde_json::from_value::<ErrorCode>(v).unwrap(), c);
        }
        assert_eq!(ErrorCode::from_name("nope"), None);
    }

    #[test]
    fn display_and_wire_shape() {
        let e = CtlError::not_found("no backend `x`");
        assert_eq!(e.to_string(), "not_found: no backend `x`");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":"not_found","message":"no backend `x`"}"#
        );
        assert_eq!(
            CtlError::unknown_command("foo").code,
            ErrorCode::UnknownCommand
        );
    }
}
