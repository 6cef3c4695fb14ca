//! Which received segments have their TCP checksum verified, and which are carried
//! unverified. Summing every byte of every segment was 45% of the instructions of a
//! spliced download (issue 15); a segment the switch only translates and passes on needs
//! no verdict from it: the translation patches the checksum incrementally (RFC 1624), so
//! a wrong one stays wrong and the end host drops the segment, as it would without the
//! switch.
//!
//! Verified (in software, unless the port's rx offload already did): every segment the
//! switch *acts on*:
//! - SYNs, RSTs, FINs, URG or ECN-flagged segments, and segments without ACK: they open,
//!   end or change connections;
//! - bare ACKs (cheap: a header): their ack and window numbers feed the switch's state
//!   (RFC 5961 checks, presplice rounds that wait for the client's ack of a response);
//! - every segment of a connection that is not spliced yet (its head is read, its
//!   handshake completes), or whose splice still depends on the backend acking the
//!   replayed head or a rewritten one;
//! - segments of presplice/splice-mode framing whose bytes the framers read (heads,
//!   chunk-size lines, anything after the current request or response).
//!
//! Carried unverified: data segments (ACK, maybe PSH, a payload) of a spliced connection
//! whose bytes no framer reads (body bytes of known length, or any byte of a connection
//! without per-request framing). Of such a segment the switch believes only its sequence
//! number (checked against the window: a corrupt one lands outside and is dropped, or
//! inside and is dropped by the end host) and a TSval within a bounded step; not its ack,
//! window or SACK (`SegmentInfo::checked`, `Conn::carries_unchecked`).
use dpdk_env::{Mbuf, RxChecksum};
use tcpstate::flow::{ConnId, Side};
use tcpstate::wire::tcp_flags;

use super::super::Worker;
use super::emit::tcp_checksum_ok;
use super::Rx;
use crate::stats::{Counter, DropReason};

impl Worker {
    /// Settles `rx.seg.checked` for a segment of connection `found` (if any): `false`
    /// when the segment must be dropped for a bad checksum (counted).
    pub(super) fn check_segment(
        &mut self,
        m: &Mbuf,
        rx: &mut Rx,
        found: Option<(ConnId, Side)>,
    ) -> bool {
        match m.rx_l4_checksum() {
            RxChecksum::Good => rx.seg.checked = true,
            RxChecksum::Bad => {
                self.stats().drop(DropReason::BadTcpChecksum, 1);
                return false;
            }
            RxChecksum::Unknown => {
                if found.is_some_and(|(id, side)| self.carries_unchecked(id, side, rx)) {
                    self.stats().add(Counter::TcpCarriedUnverified, 1);
                    return true;
                }
                if !tcp_checksum_ok(m, rx) {
                    self.stats().drop(DropReason::BadTcpChecksum, 1);
                    return false;
                }
                rx.seg.checked = true;
            }
        }
        true
    }

    /// Whether a segment of `id` from `side` may go on unverified (see the module doc).
    fn carries_unchecked(&self, id: ConnId, side: Side, rx: &Rx) -> bool {
        let seg = &rx.seg;
        // `flags` holds every flag but ACK (whose presence is `ack.is_some()`).
        if seg.payload_len == 0 || seg.ack.is_none() || seg.flags & !tcp_flags::PSH != 0 {
            return false;
        }
        let Some(conn) = self.tcp.flows.get(id) else {
            return false;
        };
        if !conn.carries_unchecked() {
            return false;
        }
        match self.tcp.per_request[id as usize].as_ref() {
            None => true,
            Some(pr) => match side {
                Side::Client => !pr.reads_request(seg.seq, seg.payload_len),
                Side::Backend => {
                    let seq = seg.seq + conn.b2c.seq_delta as usize;
                    !pr.reads_response(seq, seg.payload_len)
                }
            },
        }
    }
}
