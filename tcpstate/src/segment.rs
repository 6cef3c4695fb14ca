//! What the switch sends itself (its own HTTP responses, the request head it replays to
//! a backend), cut by the peer's window and by the MSS, as a Linux sender cuts a
//! socket's queue.
//!
//! A [`Sender`] tracks one run of bytes (plus an optional FIN after them) by offsets
//! from its first byte: what the peer acked (`una`), what went out (`nxt`), and the
//! window the peer last announced, updated by RFC 9293's WL1/WL2 rule so a reordered
//! old segment cannot reopen a closed window. It never lets a byte go past
//! `una + window`: a peer that announces a zero window gets nothing but zero-window
//! probes (Linux's `tcp_xmit_probe_skb`: a bare ACK one below `una`, which the peer
//! must answer with its current window), spaced by exponential backoff, until it
//! opens the window again.
//!
//! [`mss_chunks`] then cuts one [`Chunk`] into segments of at most the MSS, with the
//! FIN on the last.
use crate::wire::SeqNumber;

/// Consecutive timeouts without any answer from the peer before giving up (a
/// retransmission the peer never acks, or probes it never answers).
pub const MAX_RETRIES: u32 = 8;
/// The largest backoff exponent: the timer grows to `rto << MAX_BACKOFF` and stays.
pub const MAX_BACKOFF: u32 = 5;
/// Probes the peer answered (with a still closed window) before the switch stops
/// waiting: what it sends is its own (as an orphaned Linux socket's, which gives up
/// after `tcp_orphan_retries` once the backoff is at its largest), and a reader that
/// never reads must not hold an entry forever.
pub const MAX_PERSIST_PROBES: u32 = 16;

/// A run of bytes to send now, by offset from the first byte, and whether the FIN
/// goes after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub offset: usize,
    pub len: usize,
    pub fin: bool,
}

/// What to do when the retransmission or persist timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Everything was acked: nothing to do.
    Done,
    /// Send this again (what was in flight, from `una`, as far as the window allows).
    Retransmit(Chunk),
    /// The window is closed: send a zero-window probe.
    Probe,
    /// The peer stopped answering (or never opened its window): abort.
    GiveUp,
}

/// One run of bytes being sent to a peer (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    len: usize,
    fin: bool,
    una: usize,
    nxt: usize,
    /// The peer's window in bytes, from `una`.
    wnd: usize,
    /// Sequence number of the segment that last set the window (RFC 9293 SND.WL1).
    wl1: Option<SeqNumber>,
    /// Timeouts since the peer last acked anything (backoff exponent).
    backoff: u32,
    /// Of those, how many went unanswered by any segment of the peer.
    unanswered: u32,
    /// Probes answered with a window still closed, since the window was last open.
    persist: u32,
}

impl Sender {
    /// `len` bytes, then a FIN if `fin`, to a peer whose window is `wnd` bytes.
    pub fn new(len: usize, fin: bool, wnd: usize) -> Sender {
        Sender {
            len,
            fin,
            una: 0,
            nxt: 0,
            wnd,
            wl1: None,
            backoff: 0,
            unanswered: 0,
            persist: 0,
        }
    }

    /// The window given to `new` came from the peer's segment `seq` (its SND.WL1).
    pub fn window_from(self, seq: SeqNumber) -> Sender {
        Sender {
            wl1: Some(seq),
            ..self
        }
    }

    /// Nothing to send: a sender that is already done.
    pub fn empty() -> Sender {
        Sender::new(0, false, 0)
    }

    /// Everything (and the FIN) acked.
    pub fn done(&self) -> bool {
        self.una == self.len + usize::from(self.fin)
    }

    /// Every byte acked (the FIN perhaps not).
    pub fn data_acked(&self) -> bool {
        self.una >= self.len
    }

    /// Offset the peer acked (the FIN counts one).
    pub fn acked(&self) -> usize {
        self.una
    }

    /// Offset of the next byte to send (the FIN counts one).
    pub fn next(&self) -> usize {
        self.nxt
    }

    /// Whether an ack of `offset` (relative to the first byte; negative: before it)
    /// acknowledges nothing that was not sent (RFC 5961 5.2's upper bound).
    pub fn ack_acceptable(&self, offset: i64) -> bool {
        offset <= self.nxt as i64
    }

    /// What the window allows now: from `nxt` to `una + wnd` (and the end). The FIN
    /// needs one unit of window, as Linux's `tcp_snd_wnd_test` asks. `None` if nothing
    /// may go.
    pub fn poll(&mut self) -> Option<Chunk> {
        if self.nxt > self.len {
            return None; // the FIN went out
        }
        let edge = self.una + self.wnd;
        let end = edge.min(self.len).max(self.nxt);
        let fin = self.fin && end == self.len && edge > self.len;
        let chunk = Chunk {
            offset: self.nxt,
            len: end - self.nxt,
            fin,
        };
        if chunk.len == 0 && !fin {
            return None;
        }
        self.nxt = end + usize::from(fin);
        Some(chunk)
    }

    /// A segment of the peer acked `offset` (checked with `ack_acceptable`; below `una`
    /// is a duplicate) and announced `wnd` bytes; `seq` is the segment's own sequence
    /// number. Returns whether new bytes were acked.
    pub fn on_ack(&mut self, offset: usize, wnd: usize, seq: SeqNumber) -> bool {
        // The peer is alive: whatever it said, probes are being answered.
        self.unanswered = 0;
        let progress = offset > self.una && offset <= self.nxt;
        // RFC 9293 3.10.7.4: only a segment that acks new data, is newer than the one
        // that set the window, or (same segment) widens it, may update the window.
        let newer = self.wl1.is_none_or(|w| seq.wrapping_diff(w) > 0);
        let widens = self.wl1 == Some(seq) && wnd > self.wnd;
        if offset >= self.una && (progress || newer || widens) {
            self.wnd = wnd;
            self.wl1 = Some(seq);
        }
        if progress {
            self.una = offset;
            self.backoff = 0;
        }
        if self.wnd > 0 {
            self.persist = 0;
        }
        progress
    }

    /// Starts again from the first unacked byte (a retransmission).
    pub fn rewind(&mut self) {
        self.nxt = self.una;
    }

    /// The timer fired: retransmit, probe, or give up. Grows the backoff.
    pub fn on_timeout(&mut self) -> Timeout {
        if self.done() {
            return Timeout::Done;
        }
        if self.unanswered >= MAX_RETRIES || self.persist >= MAX_PERSIST_PROBES {
            return Timeout::GiveUp;
        }
        self.unanswered += 1;
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
        self.rewind();
        match self.poll() {
            Some(c) => Timeout::Retransmit(c),
            None => {
                self.persist += 1;
                Timeout::Probe
            }
        }
    }

    /// The timer's next interval for a base retransmission timeout of `rto_ms`.
    pub fn interval_ms(&self, rto_ms: u64) -> u64 {
        rto_ms << self.backoff
    }
}

/// Cuts `chunk` into segments of at most `mss` bytes: (offset, len, fin), the FIN (if
/// the chunk has one) on the last. A chunk of no bytes is one segment (a bare FIN).
pub fn mss_chunks(chunk: Chunk, mss: usize) -> impl Iterator<Item = Chunk> {
    let mss = mss.max(1);
    let count = chunk.len.div_ceil(mss).max(1);
    (0..count).map(move |i| {
        let offset = chunk.offset + i * mss;
        let len = (chunk.offset + chunk.len - offset).min(mss);
        Chunk {
            offset,
            len,
            fin: chunk.fin && i + 1 == count,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_only_what_the_window_allows_and_the_fin_needs_room() {
        let mut s = Sender::new(1000, true, 400);
        assert_eq!(
            s.poll(),
            Some(Chunk {
                offset: 0,
                len: 400,
                fin: false
            })
        );
        assert_eq!(s.poll(), None);
        // The peer acks 400 and opens to 600: exactly the rest, no room for the FIN.
        assert!(s.on_ack(400, 600, SeqNumber(10)));
        assert_eq!(
            s.poll(),
            Some(Chunk {
                offset: 400,
                len: 600,
                fin: false
            })
        );
        assert!(s.on_ack(1000, 100, SeqNumber(11)));
        assert_eq!(
            s.poll(),
            Some(Chunk {
                offset: 1000,
                len: 0,
                fin: true
            })
        );
        assert!(!s.done());
        assert!(s.ack_acceptable(1001));
        assert!(!s.ack_acceptable(1002));
        assert!(s.on_ack(1001, 100, SeqNumber(12)));
        assert!(s.done());
        assert_eq!(s.on_timeout(), Timeout::Done);
    }

    #[test]
    fn zero_window_gets_probes_with_backoff_then_the_data() {
        let mut s = Sender::new(300, true, 0);
        assert_eq!(s.poll(), None);
        let mut intervals = vec![];
        for _ in 0..4 {
            assert_eq!(s.on_timeout(), Timeout::Probe);
            intervals.push(s.interval_ms(200));
            // The peer answers each probe, its window still closed.
            assert!(!s.on_ack(0, 0, SeqNumber(5)));
        }
        assert_eq!(intervals, [400, 800, 1600, 3200]);
        // A window update opens it: everything goes, the FIN too.
        s.on_ack(0, 64_000, SeqNumber(5));
        assert_eq!(
            s.poll(),
            Some(Chunk {
                offset: 0,
                len: 300,
                fin: true
            })
        );
    }

    #[test]
    fn an_old_segment_cannot_reopen_a_closed_window() {
        let mut s = Sender::new(1000, false, 500);
        s.poll();
        s.on_ack(500, 0, SeqNumber(100));
        // A reordered older segment still carrying the earlier window.
        s.on_ack(200, 500, SeqNumber(90));
        assert_eq!(s.poll(), None);
        // The same segment again, with a wider window, may (a window update).
        s.on_ack(500, 10, SeqNumber(100));
        assert_eq!(s.poll().map(|c| c.len), Some(10));
    }

    #[test]
    fn retransmits_from_una_then_gives_up_when_unanswered() {
        let mut s = Sender::new(100, false, 1000);
        s.poll();
        for i in 0..MAX_RETRIES {
            assert_eq!(
                s.on_timeout(),
                Timeout::Retransmit(Chunk {
                    offset: 0,
                    len: 100,
                    fin: false
                }),
                "timeout {i}"
            );
        }
        assert_eq!(s.interval_ms(200), 200 << MAX_RETRIES.min(MAX_BACKOFF));
        assert_eq!(s.on_timeout(), Timeout::GiveUp);
    }

    #[test]
    fn a_reader_that_never_opens_its_window_is_given_up_on() {
        let mut s = Sender::new(10, false, 0);
        for _ in 0..MAX_PERSIST_PROBES {
            assert_eq!(s.on_timeout(), Timeout::Probe);
            s.on_ack(0, 0, SeqNumber(1));
        }
        assert_eq!(s.on_timeout(), Timeout::GiveUp);
        assert_eq!(s.interval_ms(200), 200 << MAX_BACKOFF);
    }

    #[test]
    fn cuts_by_mss_with_the_fin_on_the_last() {
        let c = Chunk {
            offset: 10,
            len: 2500,
            fin: true,
        };
        let v: Vec<_> = mss_chunks(c, 1000)
            .map(|c| (c.offset, c.len, c.fin))
            .collect();
        assert_eq!(
            v,
            [(10, 1000, false), (1010, 1000, false), (2010, 500, true)]
        );
        let bare = Chunk {
            offset: 7,
            len: 0,
            fin: true,
        };
        let v: Vec<_> = mss_chunks(bare, 1000).collect();
        assert_eq!(v, [bare]);
    }
}
