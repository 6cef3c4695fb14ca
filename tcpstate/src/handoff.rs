//! TCP handoff (DWSR's "inline" transport): the switch answers the client's
//! handshake itself, reads and routes the request, then hands the connection to
//! the backend host, whose unmodified kernel serves it from then on and answers the
//! client directly.
//!
//! The whole exchange, with `c` the client's ISN, `s` the switch's (a SYN cookie)
//! and `k` the kernel's; every segment is client ip:port <-> VIP:port, addresses are
//! never rewritten:
//!
//! ```text
//!  client                 switch                     agent                    kernel (VIP on lo)
//!    |  SYN c               |                          |                          |
//!    |--------------------->|  SYN cookie, no state    |                          |
//!    |  SYN-ACK s, ack c+1  |                          |                          |
//!    |<---------------------|                          |                          |
//!    |  ACK; GET / seq c+1  |                          |                          |
//!    |--------------------->|  reads it, routes it     |                          |
//!    |                      |  GET / seq c+1 ack s+1   |                          |
//!    |                      |  + handoff option        |                          |
//!    |                      |------------------------->|  start(); GET held       |
//!    |                      |                          |  SYN c, client's options |
//!    |                      |                          |------------------------->|
//!    |                      |                          |  SYN-ACK k, ack c+1      |
//!    |                      |                          |<-------------------------|
//!    |                      |                          |  on_kernel_syn_ack():    |
//!    |                      |                          |  ACK c+1, ack k+1        |
//!    |                      |                          |------------------------->|
//!    |                      |                          |  GET / ack k+1           |
//!    |                      |                          |------------------------->|
//!    |                      |                          |  response seq k+1..      |
//!    |  response seq s+1.. (to_client), past the switch|<-------------------------|
//!    |<------------------------------------------------|                          |
//!    |  ACK s+1+n           |  forwarded as sent       |  ack k+1+n (to_kernel)   |
//!    |--------------------->|------------------------->|------------------------->|
//! ```
//!
//! - [`option`]: the handoff option, an RFC 6994 experimental TCP option carrying
//!   what the agent needs to replay the client's SYN and to translate: the client's
//!   ISN and SYN options, the window scale and latest TSval the switch showed the
//!   client, and the chosen backend.
//! - [`responses`]: the agent's count of its kernel's complete responses, so a
//!   connection moves to another agent only between responses.
//! - [`watch`]: the switch's watch over the later requests of a handed-off
//!   connection, so the rules hold on every request.
//! - [`channel`]: the other transport (paper 004's control connection): the same head
//!   segments carried as handoff requests on a per-agent UDP channel, and the agent's
//!   ack, after which the switch forwards the client's later segments.
//! - [`agent`]: the agent's per-flow state: the replayed handshake, then the two
//!   [`splice::Translation`](crate::splice::Translation)s that
//!   [`splice::translate`](crate::splice::translate) applies to every segment, and
//!   when the flow ends.
pub mod agent;
pub mod channel;
pub mod control;
pub mod cookie;
pub mod option;
pub mod responses;
pub mod watch;

use crate::wire::SeqNumber;

/// Whether a client RST of a handed-off connection lands at the kernel's next expected
/// byte, as far as a forwarder can tell (the switch and the agent each ask): `next` is the
/// end of the client's bytes it has seen, `fin` where the client's FIN stands; after the
/// FIN both its own number and one past it count (Linux's `tcp_reset_check`). Any other
/// RST goes on for the kernel to judge (RFC 5961), and the forwarder keeps its entry.
pub(crate) fn client_rst_exact(seq: SeqNumber, next: SeqNumber, fin: Option<SeqNumber>) -> bool {
    seq == next || fin.is_some_and(|f| f == next && (seq == f || seq == f + 1))
}

#[cfg(test)]
mod tests;
