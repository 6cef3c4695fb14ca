//! DPDK failures as values: the call that failed and the errno DPDK reported.
use std::ffi::CStr;
use std::fmt;

use crate::ffi;

/// A failed DPDK call: `op` names it, `errno` is the positive error code
/// (from the return value or `rte_errno`), and Display gives DPDK's own text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    pub op: String,
    pub errno: i32,
}

pub type Result<T> = std::result::Result<T, DpdkError>;

impl DpdkError {
    pub(crate) fn new(op: impl Into<String>, errno: i32) -> Self {
        Self {
            op: op.into(),
            errno: errno.abs(),
        }
    }

    /// The error from `rte_errno`, for calls that signal failure with NULL or -1.
    pub(crate) fn from_rte_errno(op: impl Into<String>) -> Self {
        // SAFETY: ws_errno reads DPDK's per-thread rte_errno; no preconditions.
        let errno = unsafe { ffi::ws_errno() };
        Self::new(op, errno)
    }

    /// Turns a DPDK-style return code (negative errno on failure) into a Result.
    pub(crate) fn check(op: &str, rc: i32) -> Result<i32> {
        if rc < 0 {
            Err(Self::new(op, rc))
        } else {
            Ok(rc)
        }
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local,
        // NUL-terminated string for any errno value.
        let text = unsafe { CStr::from_ptr(ffi::rte_strerror(self.errno)) };
        write!(
            f,
            "{} failed: {} (errno {})",
            self.op,
            text.to_string_lossy(),
            self.errno
        )
    }
}

impl std::error::Error for DpdkError {}
