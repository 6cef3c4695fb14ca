//! Splice state shared between the members of a cluster (issue 17, points 4 and 5): what
//! another instance needs to carry on forwarding a spliced connection when the instance
//! that spliced it is gone.
//!
//! Design: the instance that spliced a connection pushes one [`SpliceRecord`] to every
//! other member once the backend has acknowledged the whole request head (from then on
//! the connection is pure translation: no byte is held by the switch), and a
//! [`SyncKind::Forget`] when the connection ends. This is IPVS's sync daemon for L7
//! splices: no store on the path of a packet, one datagram per splice per member. A
//! member keeps the records it was given in a [`StandbyTable`], read only when a segment
//! of a flow it holds no state for arrives: if the record's origin is gone, it adopts the
//! connection (`Conn::adopt`) and forwards it with the same translation; the backend sees
//! one connection throughout, since the adopter also takes over the origin's
//! backend-facing address (gratuitous ARP).
//!
//! Fixed binary layout (network byte order), [`LEN`] bytes:
//!
//! ```text
//!  0 magic "WSCS" | 4 version | 5 kind | 6 origin index | 7 flags
//!  8 client ip | 12 client port | 14 vip port | 16 vip ip
//! 20 backend ip | 24 backend port | 26 local port | 28 local ip
//! 32 client isn | 36 our isn | 40 backend isn
//! 44 c2b: seq delta, ack delta, tsval delta, tsecr delta (16)
//! 60 b2c: seq delta, ack delta, tsval delta, tsecr delta (16)
//! 76 c2b shift in, shift out | 78 b2c shift in, shift out
//! 80 client mss | 82 backend id | 84 backend mac (6) | 90 origin backend-port mac (6)
//! 96 client window scale (0xff: none) | 97 our window scale | 98 round flags | 99 reserved
//! 100 request end | 104 response end
//! ```
//!
//! `flags`: bit 0 the client offered SACK, bit 1 the client offered timestamps, bit 2
//! both ends negotiated timestamps, bit 3 the origin adopted the connection (its backend
//! tuple's local address is then another member's). `round flags`: bit 0 `request end` is
//! known, bit 1 `response end` is known, bit 2 no request follows this one (a close was
//! announced), bit 3 `response end` holds where the response starts instead (its end is
//! not known yet; never with bit 1), bit 4 the request is a HEAD (its response has no
//! body). A `Forget` and a `Held` carry the same layout (only the tuples are read). A
//! record of [`LEN_V1`] bytes (before `response end` was added) is read as one without it.
//!
//! **Rounds.** Every request of a keep-alive connection is framed (checked against the
//! rules in splice mode, routed in presplice mode), and that framing state is not shared:
//! a record describes the current round, is pushed again when a new round is spliced,
//! and says where the current request ends (client space) when that is known, and in
//! presplice mode where the current response ends (client space) once its head said. A
//! member that adopts the connection carries the current exchange to its end; past that
//! point comes the client's next request. In presplice mode, with both ends known, the
//! adopter frames from there as the origin would have (`PerRequest::adopted`): the next
//! request is routed by the rules and spliced onto a backend of its own. In splice mode the
//! adopter lets it through only if it can frame and check it itself (a whole head in one
//! segment, a body of known length: see the data plane's `next_adopted_request`).
//! Otherwise it resets the connection (as a server closing an idle keep-alive connection:
//! the client's HTTP stack retries it on a new connection). With the request's end unknown
//! (a chunked request body in progress) the adopter resets at the first client byte.
//!
//! Pure: no I/O, no clock (the caller passes `now`).
use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::flow::FlowKey;
use crate::splice::Translation;
use crate::wire::MacAddr;

/// First four bytes of every sync datagram (beats start with `WSCB`).
pub const MAGIC: [u8; 4] = *b"WSCS";
/// The layout version this module writes and reads.
pub const VERSION: u8 = 1;
/// Length of a record.
pub const LEN: usize = 108;
/// Length of a record without `response end` (as the first release wrote them).
pub const LEN_V1: usize = 104;

const FLAG_SACK: u8 = 1;
const FLAG_CLIENT_TS: u8 = 2;
const FLAG_TS_ON: u8 = 4;
const FLAG_ADOPTED: u8 = 8;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The connection is spliced: here is how to forward it.
    Splice,
    /// The connection ended: drop its record.
    Forget,
    /// The answer of a member that still holds a connection another member adopted (it
    /// was only frozen, or cut off, for longer than `dead_after_ms`): the adopter lets its
    /// copy go.
    Held,
}

/// One spliced connection, as every member needs it to forward its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceRecord {
    pub kind: SyncKind,
    /// The member that holds the connection (its index in `cluster.members`).
    pub origin: u8,
    /// Client side: remote = the client, local = the VIP.
    pub client: FlowKey,
    /// Backend side: remote = the backend, local = the origin's backend-facing address.
    pub backend: FlowKey,
    pub client_isn: u32,
    pub our_isn: u32,
    pub backend_isn: u32,
    pub c2b: Translation,
    pub b2c: Translation,
    pub client_mss: u16,
    pub client_window_scale: Option<u8>,
    pub our_window_scale: u8,
    pub sack_permitted: bool,
    pub client_timestamps: bool,
    /// Both ends negotiated timestamps (TSval/TSecr are rewritten).
    pub ts_on: bool,
    /// The backend's id in the origin's configuration (members share one config).
    pub backend_id: u16,
    pub backend_mac: MacAddr,
    /// The origin's MAC on its backend-facing port: where a member that receives the
    /// backend's segments while the origin lives passes them.
    pub origin_backend_mac: MacAddr,
    /// Client space: where the current request ends, if known (see "Rounds").
    pub request_end: Option<u32>,
    /// Client space: where the current response ends, if known (presplice mode only).
    pub response_end: Option<u32>,
    /// Client space: where the current response starts, while its end is not known
    /// (presplice mode only): an adopter frames the response from there. Encoded in the
    /// same field as `response_end`, which wins.
    pub response_start: Option<u32>,
    /// The current request is a HEAD: its response has no body.
    pub response_to_head: bool,
    /// No request follows the current one (presplice mode: a close was announced).
    pub last: bool,
    /// The origin adopted this connection from a member that died: the backend tuple's
    /// local address is that member's, not the origin's.
    pub adopted: bool,
}

/// Why a datagram is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncError {
    Length,
    Magic,
    Version,
    Kind,
}

/// Whether a cluster datagram is a sync record (else a beat or garbage).
pub fn is_sync(b: &[u8]) -> bool {
    b.len() >= 4 && b[..4] == MAGIC
}

fn put_key_side(b: &mut [u8], ip: Ipv4Addr) {
    b[..4].copy_from_slice(&ip.octets());
}

fn put_translation_deltas(b: &mut [u8], t: &Translation) {
    for (i, v) in [t.seq_delta, t.ack_delta, t.ts_val_delta, t.ts_ecr_delta]
        .into_iter()
        .enumerate()
    {
        b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
}

impl SpliceRecord {
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = match self.kind {
            SyncKind::Splice => 1,
            SyncKind::Forget => 2,
            SyncKind::Held => 3,
        };
        b[6] = self.origin;
        b[7] = (if self.sack_permitted { FLAG_SACK } else { 0 })
            | (if self.client_timestamps {
                FLAG_CLIENT_TS
            } else {
                0
            })
            | (if self.ts_on { FLAG_TS_ON } else { 0 })
            | (if self.adopted { FLAG_ADOPTED } else { 0 });
        put_key_side(&mut b[8..], self.client.remote_ip);
        b[12..14].copy_from_slice(&self.client.remote_port.to_be_bytes());
        b[14..16].copy_from_slice(&self.client.local_port.to_be_bytes());
        put_key_side(&mut b[16..], self.client.local_ip);
        put_key_side(&mut b[20..], self.backend.remote_ip);
        b[24..26].copy_from_slice(&self.backend.remote_port.to_be_bytes());
        b[26..28].copy_from_slice(&self.backend.local_port.to_be_bytes());
        put_key_side(&mut b[28..], self.backend.local_ip);
        b[32..36].copy_from_slice(&self.client_isn.to_be_bytes());
        b[36..40].copy_from_slice(&self.our_isn.to_be_bytes());
        b[40..44].copy_from_slice(&self.backend_isn.to_be_bytes());
        put_translation_deltas(&mut b[44..60], &self.c2b);
        put_translation_deltas(&mut b[60..76], &self.b2c);
        b[76] = self.c2b.window_shift_in;
        b[77] = self.c2b.window_shift_out;
        b[78] = self.b2c.window_shift_in;
        b[79] = self.b2c.window_shift_out;
        b[80..82].copy_from_slice(&self.client_mss.to_be_bytes());
        b[82..84].copy_from_slice(&self.backend_id.to_be_bytes());
        b[84..90].copy_from_slice(&self.backend_mac.0);
        b[90..96].copy_from_slice(&self.origin_backend_mac.0);
        b[96] = self.client_window_scale.unwrap_or(0xff);
        b[97] = self.our_window_scale;
        if let Some(end) = self.request_end {
            b[98] |= 1;
            b[100..104].copy_from_slice(&end.to_be_bytes());
        }
        if let Some(end) = self.response_end {
            b[98] |= 2;
            b[104..108].copy_from_slice(&end.to_be_bytes());
        } else if let Some(start) = self.response_start {
            b[98] |= 8;
            b[104..108].copy_from_slice(&start.to_be_bytes());
        }
        if self.response_to_head {
            b[98] |= 16;
        }
        if self.last {
            b[98] |= 4;
        }
        b
    }

    pub fn decode(b: &[u8]) -> Result<SpliceRecord, SyncError> {
        if b.len() != LEN && b.len() != LEN_V1 {
            return Err(SyncError::Length);
        }
        if b[..4] != MAGIC {
            return Err(SyncError::Magic);
        }
        if b[4] != VERSION {
            return Err(SyncError::Version);
        }
        let kind = match b[5] {
            1 => SyncKind::Splice,
            2 => SyncKind::Forget,
            3 => SyncKind::Held,
            _ => return Err(SyncError::Kind),
        };
        let u16_at = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let ip_at = |at: usize| Ipv4Addr::from(u32_at(at));
        let mac_at =
            |at: usize| MacAddr([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]]);
        let client = FlowKey {
            remote_ip: ip_at(8),
            remote_port: u16_at(12),
            local_ip: ip_at(16),
            local_port: u16_at(14),
        };
        let backend = FlowKey {
            remote_ip: ip_at(20),
            remote_port: u16_at(24),
            local_ip: ip_at(28),
            local_port: u16_at(26),
        };
        let c2b = Translation {
            src: (backend.local_ip, backend.local_port),
            dst: (backend.remote_ip, backend.remote_port),
            seq_delta: u32_at(44),
            ack_delta: u32_at(48),
            ts_val_delta: u32_at(52),
            ts_ecr_delta: u32_at(56),
            window_shift_in: b[76],
            window_shift_out: b[77],
        };
        let b2c = Translation {
            src: (client.local_ip, client.local_port),
            dst: (client.remote_ip, client.remote_port),
            seq_delta: u32_at(60),
            ack_delta: u32_at(64),
            ts_val_delta: u32_at(68),
            ts_ecr_delta: u32_at(72),
            window_shift_in: b[78],
            window_shift_out: b[79],
        };
        Ok(SpliceRecord {
            kind,
            origin: b[6],
            client,
            backend,
            client_isn: u32_at(32),
            our_isn: u32_at(36),
            backend_isn: u32_at(40),
            c2b,
            b2c,
            client_mss: u16_at(80),
            client_window_scale: (b[96] != 0xff).then_some(b[96]),
            our_window_scale: b[97],
            sack_permitted: b[7] & FLAG_SACK != 0,
            client_timestamps: b[7] & FLAG_CLIENT_TS != 0,
            ts_on: b[7] & FLAG_TS_ON != 0,
            backend_id: u16_at(82),
            backend_mac: mac_at(84),
            origin_backend_mac: mac_at(90),
            request_end: (b[98] & 1 != 0).then(|| u32_at(100)),
            response_end: (b[98] & 2 != 0 && b.len() >= LEN).then(|| u32_at(104)),
            response_start: (b[98] & 10 == 8 && b.len() >= LEN).then(|| u32_at(104)),
            response_to_head: b[98] & 16 != 0,
            last: b[98] & 4 != 0,
            adopted: b[7] & FLAG_ADOPTED != 0,
        })
    }
}

/// What [`StandbyTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The tuple had a record already (a newer round, or another origin): replaced.
    Replaced,
    /// The table was full: its oldest record was dropped to make room.
    Evicted,
}

/// The records a core keeps for connections other members spliced: found by either
/// tuple, at most `capacity` of them (the oldest goes first when full, as a record only
/// matters if its origin dies while the connection lives).
///
/// A record is a lease: it lives `lease_ms` after it was last received, and the origin
/// sends it again while the connection has traffic, well before that (a quarter of the
/// lease). A connection that falls silent for the whole lease is one its origin's idle
/// timeout ends as well, so a lost `Forget`, or an origin that died with connections
/// nobody used again, leaves nothing behind for long.
#[derive(Debug)]
pub struct StandbyTable {
    /// Per client tuple: the record, its stamp and when it expires.
    by_client: HashMap<FlowKey, (SpliceRecord, u64, u64)>,
    by_backend: HashMap<FlowKey, FlowKey>,
    /// Insertion order (client key, stamp), for eviction and expiry (one lease for all,
    /// so the oldest insertion expires first); may hold stale pairs.
    order: std::collections::VecDeque<(FlowKey, u64)>,
    capacity: usize,
    lease_ms: u64,
    next_stamp: u64,
}

impl StandbyTable {
    pub fn new(capacity: usize, lease_ms: u64) -> StandbyTable {
        StandbyTable {
            by_client: HashMap::with_capacity(capacity),
            by_backend: HashMap::with_capacity(capacity),
            order: std::collections::VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            lease_ms,
            next_stamp: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Keeps `r` (a `Splice` record) for a lease from `now_ms`, replacing any record for
    /// the same client tuple.
    pub fn insert(&mut self, r: SpliceRecord, now_ms: u64) -> Stored {
        let mut outcome = match self.remove(&r.client) {
            Some(_) => Stored::Replaced,
            None => Stored::New,
        };
        // A backend tuple reused by another client: the older record is stale.
        if let Some(old_client) = self.by_backend.get(&r.backend).copied() {
            self.remove(&old_client);
        }
        while self.by_client.len() >= self.capacity {
            let Some((key, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.by_client.get(&key).is_some_and(|e| e.1 == stamp) {
                self.remove(&key);
                outcome = Stored::Evicted;
            }
        }
        // Stale pairs of replaced records are skipped at eviction; bound them anyway.
        if self.order.len() >= self.capacity * 2 {
            let live = &self.by_client;
            self.order
                .retain(|(k, s)| live.get(k).is_some_and(|e| e.1 == *s));
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.by_backend.insert(r.backend, r.client);
        self.by_client
            .insert(r.client, (r, stamp, now_ms.saturating_add(self.lease_ms)));
        self.order.push_back((r.client, stamp));
        outcome
    }

    /// Drops the records whose lease ended by `now_ms`, each shown to `gone` first;
    /// returns how many.
    pub fn expire(&mut self, now_ms: u64, mut gone: impl FnMut(&SpliceRecord)) -> usize {
        let mut expired = 0;
        while let Some(&(key, stamp)) = self.order.front() {
            match self.by_client.get(&key) {
                Some(e) if e.1 == stamp => {
                    if e.2 > now_ms {
                        break;
                    }
                    if let Some(r) = self.remove(&key) {
                        gone(&r);
                    }
                    expired += 1;
                }
                // A replaced or removed record's pair.
                _ => {}
            }
            self.order.pop_front();
        }
        expired
    }

    /// Drops the record of a client tuple (a `Forget`, or an adoption).
    pub fn remove(&mut self, client: &FlowKey) -> Option<SpliceRecord> {
        let (r, _, _) = self.by_client.remove(client)?;
        if self.by_backend.get(&r.backend) == Some(client) {
            self.by_backend.remove(&r.backend);
        }
        Some(r)
    }

    /// When the record of a client tuple was last inserted (received), if it is kept.
    pub fn received_ms(&self, client: &FlowKey) -> Option<u64> {
        self.by_client
            .get(client)
            .map(|e| e.2.saturating_sub(self.lease_ms))
    }

    /// The record of a connection by its client-side tuple.
    pub fn by_client(&self, key: &FlowKey) -> Option<&SpliceRecord> {
        self.by_client.get(key).map(|e| &e.0)
    }

    /// The record of a connection by its backend-side tuple.
    pub fn by_backend(&self, key: &FlowKey) -> Option<&SpliceRecord> {
        self.by_backend
            .get(key)
            .and_then(|c| self.by_client.get(c))
            .map(|e| &e.0)
    }

    /// Drops every record whose origin is `member` (it came back as a new process: what
    /// it held before is gone).
    pub fn forget_origin(&mut self, member: u8) -> usize {
        let keys: Vec<FlowKey> = self
            .by_client
            .iter()
            .filter(|(_, e)| e.0.origin == member)
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            self.remove(k);
        }
        keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(client_port: u16, local_port: u16) -> SpliceRecord {
        let client = FlowKey {
            remote_ip: Ipv4Addr::new(10, 9, 3, 2),
            remote_port: client_port,
            local_ip: Ipv4Addr::new(10, 9, 5, 10),
            local_port: 80,
        };
        let backend = FlowKey {
            remote_ip: Ipv4Addr::new(10, 9, 1, 11),
            remote_port: 8080,
            local_ip: Ipv4Addr::new(10, 9, 1, 1),
            local_port,
        };
        SpliceRecord {
            kind: SyncKind::Splice,
            origin: 1,
            client,
            backend,
            client_isn: 0xdead_beef,
            our_isn: 7,
            backend_isn: 0x8000_0001,
            c2b: Translation {
                src: (backend.local_ip, backend.local_port),
                dst: (backend.remote_ip, backend.remote_port),
                seq_delta: 1,
                ack_delta: 2,
                ts_val_delta: 3,
                ts_ecr_delta: 4,
                window_shift_in: 7,
                window_shift_out: 9,
            },
            b2c: Translation {
                src: (client.local_ip, client.local_port),
                dst: (client.remote_ip, client.remote_port),
                seq_delta: 5,
                ack_delta: 6,
                ts_val_delta: u32::MAX,
                ts_ecr_delta: 8,
                window_shift_in: 9,
                window_shift_out: 7,
            },
            client_mss: 1460,
            client_window_scale: Some(7),
            our_window_scale: 9,
            sack_permitted: true,
            client_timestamps: true,
            ts_on: false,
            backend_id: 2,
            backend_mac: MacAddr([2, 0, 0, 0, 0, 11]),
            origin_backend_mac: MacAddr([2, 0, 0, 0, 1, 1]),
            request_end: Some(0xdead_beef + 1 + 300),
            response_end: Some(0x4000),
            response_start: None,
            response_to_head: false,
            last: false,
            adopted: false,
        }
    }

    #[test]
    fn records_round_trip() {
        let r = record(40000, 1026);
        let b = r.encode();
        assert!(is_sync(&b));
        assert_eq!(SpliceRecord::decode(&b), Ok(r));
        let forget = SpliceRecord {
            kind: SyncKind::Forget,
            client_window_scale: None,
            request_end: None,
            response_end: None,
            last: true,
            adopted: true,
            ..r
        };
        assert_eq!(SpliceRecord::decode(&forget.encode()), Ok(forget));
        // A round whose response has not begun: its start instead of its end.
        let awaiting = SpliceRecord {
            response_end: None,
            response_start: Some(0x3000),
            response_to_head: true,
            ..r
        };
        assert_eq!(SpliceRecord::decode(&awaiting.encode()), Ok(awaiting));
        // The end wins over the start (one field holds either).
        let both = SpliceRecord {
            response_start: Some(0x3000),
            ..r
        };
        assert_eq!(
            SpliceRecord::decode(&both.encode()),
            Ok(SpliceRecord {
                response_start: None,
                ..r
            })
        );
        // A record of the first layout: the same, without the response's end.
        let v1 = SpliceRecord::decode(&b[..LEN_V1]).unwrap();
        assert_eq!(
            v1,
            SpliceRecord {
                response_end: None,
                ..r
            }
        );
    }

    #[test]
    fn bad_records_are_refused() {
        let b = record(40000, 1026).encode();
        assert_eq!(SpliceRecord::decode(&b[..LEN - 1]), Err(SyncError::Length));
        assert_eq!(
            SpliceRecord::decode(&b[..LEN_V1 - 1]),
            Err(SyncError::Length)
        );
        let mut m = b;
        m[0] = b'X';
        assert_eq!(SpliceRecord::decode(&m), Err(SyncError::Magic));
        let mut v = b;
        v[4] = 9;
        assert_eq!(SpliceRecord::decode(&v), Err(SyncError::Version));
        let mut k = b;
        k[5] = 0;
        assert_eq!(SpliceRecord::decode(&k), Err(SyncError::Kind));
        k[5] = 4;
        assert_eq!(SpliceRecord::decode(&k), Err(SyncError::Kind));
        assert!(!is_sync(b"WSCB"));
    }

    const LEASE: u64 = 300_000;

    #[test]
    fn records_are_leases_renewed_by_each_copy() {
        let mut t = StandbyTable::new(8, 1000);
        t.insert(record(40000, 1026), 0);
        t.insert(record(40001, 1027), 100);
        // The first is sent again (its connection has traffic): its lease starts over.
        t.insert(record(40000, 1026), 600);
        assert_eq!(t.received_ms(&record(40000, 1026).client), Some(600));
        assert_eq!(t.received_ms(&record(40001, 1027).client), Some(100));
        assert_eq!(t.expire(999, |_| {}), 0);
        assert_eq!(t.expire(1100, |_| {}), 1, "the second was not renewed");
        assert!(t.by_client(&record(40001, 1027).client).is_none());
        assert!(t.by_backend(&record(40001, 1027).backend).is_none());
        assert!(t.by_client(&record(40000, 1026).client).is_some());
        assert_eq!(t.expire(1599, |_| {}), 0);
        assert_eq!(t.expire(1600, |_| {}), 1);
        assert!(t.is_empty() && t.order.is_empty());
        // A removed record's pair is skipped.
        t.insert(record(40002, 1028), 2000);
        t.remove(&record(40002, 1028).client);
        assert_eq!(t.expire(5000, |_| {}), 0);
        assert!(t.order.is_empty());
    }

    #[test]
    fn standby_finds_both_tuples_and_forgets() {
        let mut t = StandbyTable::new(8, LEASE);
        let r = record(40000, 1026);
        assert_eq!(t.insert(r, 0), Stored::New);
        assert_eq!(t.by_client(&r.client), Some(&r));
        assert_eq!(t.by_backend(&r.backend), Some(&r));
        assert_eq!(t.insert(r, 0), Stored::Replaced);
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(&r.client), Some(r));
        assert!(t.by_backend(&r.backend).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn standby_is_bounded_and_evicts_the_oldest() {
        let mut t = StandbyTable::new(4, LEASE);
        for i in 0..4 {
            assert_eq!(t.insert(record(40000 + i, 1026 + i), 0), Stored::New);
        }
        assert_eq!(t.insert(record(50000, 2000), 0), Stored::Evicted);
        assert_eq!(t.len(), 4);
        assert!(t.by_client(&record(40000, 1026).client).is_none());
        assert!(t.by_client(&record(40001, 1027).client).is_some());
        // Replacing over and over never grows the order queue without bound.
        for _ in 0..100 {
            t.insert(record(50000, 2000), 0);
        }
        assert!(t.order.len() <= 8);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_reused_backend_tuple_drops_the_stale_record() {
        let mut t = StandbyTable::new(8, LEASE);
        t.insert(record(40000, 1026), 0);
        t.insert(record(40001, 1026), 0);
        assert_eq!(t.len(), 1);
        assert!(t.by_client(&record(40000, 1026).client).is_none());
        assert_eq!(
            t.by_backend(&record(40001, 1026).backend)
                .unwrap()
                .client
                .remote_port,
            40001
        );
    }

    #[test]
    fn forget_origin_drops_only_its_records() {
        let mut t = StandbyTable::new(8, LEASE);
        t.insert(record(40000, 1026), 0);
        t.insert(
            SpliceRecord {
                origin: 0,
                ..record(40001, 1027)
            },
            0,
        );
        assert_eq!(t.forget_origin(1), 1);
        assert_eq!(t.len(), 1);
    }
}
