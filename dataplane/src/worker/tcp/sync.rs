//! In a cluster: splice state pushed to the other members, kept for theirs, and
//! connections adopted from a member that is gone (`tcpstate::cluster::sync`).
//!
//! - A connection this core spliced (splice mode; presplice rounds are not shared) sends
//!   its record to every reachable member once the backend has acknowledged the request
//!   head, and a forget when it is removed; again while it has traffic, each quarter of
//!   the records' lease (the others' copies expire, `StandbyTable::expire`).
//! - A record received on any core goes to the core that steers its client tuple (the
//!   member's inbox), which keeps it in its standby table.
//! - A segment of a flow this core holds no state for, whose record it keeps: passed to
//!   the record's origin while that member lives; once it is gone, adopted here if this
//!   instance owns the flow now (else passed to the owner, which adopts it), then
//!   forwarded as the origin would have. The adopter pushes the record again, under its
//!   own name, so the others know who holds the connection now.
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;

use crate::cluster::members::{Inbound, Membership};
use crate::cluster::store::StoreOp;
use rules::config::ClientAddress;
use rules::framing::{BodyFraming, RequestFramer};
use tcpstate::cluster::flow_key;
use tcpstate::cluster::sync::{SpliceRecord, Stored, SyncKind};
use tcpstate::conn::{Conn, SegmentInfo};
use tcpstate::flow::{ConnId, FlowKey, Side};
use tcpstate::steer;

use crate::cluster::adopted_steer;
use tcpstate::wire::{EthernetFrame, MacAddr, SeqNumber};

use super::{Meta, RequestLine, Rx};
use crate::stats::{Counter, DropReason};
use crate::worker::Worker;

/// The store design: how long a tuple's segments wait (are dropped) for the answer to
/// its lookup before the store is taken for unreachable and the tuple for a stray (longer
/// than a store connection takes to come back at a start: `cluster::store`), how long
/// after the store answered "none" (or was given up) the tuple's segments go on as
/// strays before it is asked again, and how many lookups a core may have outstanding.
const STORE_GIVE_UP_MS: u64 = 5_000;
const STORE_NEGATIVE_MS: u64 = 3_000;
const STORE_PENDING_MAX: usize = 1024;

/// The store design: a lookup this core asked, for one tuple.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreLookup {
    asked_ms: u64,
    /// When the store answered that it holds nothing under the tuple, or when the
    /// lookup was given up unanswered.
    none_ms: Option<u64>,
}

impl StoreLookup {
    /// Whether the entry says nothing any more at `now_ms` (asked again if needed).
    fn expired(&self, now_ms: u64) -> bool {
        match self.none_ms {
            Some(t) => now_ms.saturating_sub(t) >= STORE_NEGATIVE_MS,
            None => now_ms.saturating_sub(self.asked_ms) >= STORE_GIVE_UP_MS + STORE_NEGATIVE_MS,
        }
    }
}

/// `cluster::adopted_steer`'s key for a backend tuple (remote: the backend, local: the
/// member that opened it).
pub(super) fn steer_key(b: &FlowKey) -> u64 {
    adopted_steer::key(b.remote_ip, b.remote_port, b.local_ip, b.local_port)
}

/// What a core keeps per connection in a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ClusterFlow {
    /// The round (its client ISN) whose record the others have; none: nothing shared.
    synced_round: Option<u32>,
    /// The request end that record gave: a new request on the connection (splice mode
    /// carries later requests on without a new round) sends the record again.
    synced_end: Option<u32>,
    /// The response end that record gave (presplice mode): once the response's head says
    /// where it ends, the record goes again, so an adopter can route the next request.
    synced_resp: Option<u32>,
    /// The member an adopted connection was adopted from (its later records may still
    /// come: `origins_last_record`).
    adopted_from: Option<u8>,
    /// Adopted with its backend tuple in `cluster::adopted_steer` (its port steers to
    /// another core here): taken out when the connection goes.
    steered: bool,
    /// When the record was last sent: it is sent again after `TcpCore::sync_refresh_ms`
    /// of traffic, so the others' copies (leases) and the store's stay alive.
    synced_ms: u64,
    adopted: Adopted,
}

/// How far an adopted connection's client may go (its framing state was not shared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Adopted {
    #[default]
    No,
    /// Up to the end of the current request (client space).
    Until(SeqNumber),
    /// The end was unknown (a chunked body): not one more client byte.
    UntilAnyByte,
    /// Presplice mode with both ends of the exchange known: the connection's per-request
    /// state frames it from there (`PerRequest::adopted`) and routes each next request.
    PerRequest,
}

/// What the standby table made of a segment with no flow.
pub(super) enum FromStandby {
    /// No record, or nothing to do with it here: handle the segment as before.
    Unknown(Mbuf),
    /// Taken care of: passed to the member that holds (or now owns) the connection, or
    /// dropped (counted) while its record is awaited or its holder may not be heard yet.
    Handled,
    /// Adopted: the connection is in the flow table now.
    Adopted(Mbuf, ConnId, Side),
}

impl Worker {
    /// After a segment of `id`: once a round's splice is settled (the backend has its
    /// head), its record goes to the other members, and again for each new round or
    /// request end, and to renew the lease while the connection has traffic.
    #[inline]
    pub(super) fn sync_if_due(&mut self, id: ConnId, now_ms: u64) {
        // Inlined test, out-of-line work: outside a cluster this costs every segment one
        // comparison, not a call.
        if !self.tcp.cluster_flows.is_empty() {
            self.sync_in_cluster(id, now_ms);
        }
    }

    fn sync_in_cluster(&mut self, id: ConnId, now_ms: u64) {
        // Cheap checks first: this runs after every segment of a connection in a cluster.
        let Some(round) = self
            .tcp
            .flows
            .get(id)
            .filter(|c| c.state == tcpstate::conn::State::Spliced)
            .map(|c| c.client_isn().0)
        else {
            return;
        };
        let end = self.request_end_of(id);
        let (resp, _) = self.response_end_of(id);
        let flow = &self.tcp.cluster_flows[id as usize];
        let renew = now_ms.saturating_sub(flow.synced_ms) >= self.tcp.sync_refresh_ms;
        let same =
            flow.synced_round == Some(round) && flow.synced_end == end && flow.synced_resp == resp;
        if same && !renew {
            return;
        }
        let renewal = same;
        let Some(rec) = self.record_of(id) else {
            return;
        };
        let flow = &mut self.tcp.cluster_flows[id as usize];
        flow.synced_round = Some(round);
        flow.synced_end = end;
        flow.synced_resp = resp;
        flow.synced_ms = now_ms;
        if renewal {
            self.stats().add(Counter::ClusterSyncRenewed, 1);
        }
        self.send_sync(&rec, u32::MAX);
    }

    /// Where connection `id`'s current request ends (client space), as far as known.
    fn request_end_of(&self, id: ConnId) -> Option<u32> {
        match self.tcp.cluster_flows[id as usize].adopted {
            // Adopted: the end we were given, moved on by the requests we framed.
            Adopted::Until(end) => Some(end.0),
            Adopted::UntilAnyByte => None,
            Adopted::No | Adopted::PerRequest => self.tcp.per_request[id as usize]
                .as_ref()
                .and_then(|pr| pr.known_request_end())
                .map(|s| s.0),
        }
    }

    /// Presplice mode: where connection `id`'s current response ends (client space), as
    /// far as known, and whether no request follows the current one. Splice mode shares
    /// neither: an adopter checks each next request itself and keeps the backend.
    fn response_end_of(&self, id: ConnId) -> (Option<u32>, bool) {
        if self.tcp.meta[id as usize].sticky {
            return (None, false);
        }
        match self.tcp.per_request[id as usize].as_ref() {
            Some(pr) => (pr.response_end().map(|s| s.0), pr.is_last()),
            None => (None, false),
        }
    }

    /// The record of connection `id` now (`None` unless spliced with its head acked).
    /// `None` too for a connection to a local backend (`backends[].local`): its backend is
    /// this member's own host, which no other member reaches, and which goes with it.
    fn record_of(&self, id: ConnId) -> Option<SpliceRecord> {
        let cl = self.shared.cluster.as_deref()?;
        let backend = self.tcp.flows.get(id)?.backend?.id;
        if self.tcp.rt.routes.get(backend).is_some_and(|r| r.local) {
            return None;
        }
        let meta = &self.tcp.meta[id as usize];
        let origin_mac = self.shared.addrs[meta.backend_port].mac;
        let mut rec =
            self.tcp
                .flows
                .get(id)?
                .splice_record(cl.me as u8, meta.backend_mac, origin_mac)?;
        rec.adopted = self.tcp.cluster_flows[id as usize].adopted != Adopted::No;
        rec.request_end = self.request_end_of(id);
        (rec.response_end, rec.last) = self.response_end_of(id);
        if rec.response_end.is_none() && !self.tcp.meta[id as usize].sticky {
            if let Some((start, to_head)) = self.tcp.per_request[id as usize]
                .as_ref()
                .and_then(|pr| pr.response_start())
            {
                rec.response_start = Some(start.0);
                rec.response_to_head = to_head;
            }
        }
        Some(rec)
    }

    /// From the sweep: members that became reachable since the last look (a member that
    /// joined, or came back after it died) get the records of every connection this core
    /// shared, so they too can pass or adopt them, and a member that comes back never
    /// reuses a backend tuple that a connection adopted from it still holds (its
    /// `pick_local_port` skips the tuples of its standby table). The store design needs
    /// none of this: a joiner reads the store.
    pub(in crate::worker) fn sync_joined(&mut self) {
        let Some(cl) = self.shared.cluster.clone() else {
            return;
        };
        let reachable = cl.tables().reachable;
        let joined = reachable & !self.tcp.sync_seen_reachable & !(1u32 << cl.me);
        self.tcp.sync_seen_reachable = reachable;
        if joined == 0 {
            return;
        }
        let mut ids = std::mem::take(&mut self.tcp.scratch_ids);
        ids.clear();
        self.tcp.flows.live_ids(&mut ids);
        let mut sent = 0u64;
        for &id in &ids {
            if self.tcp.cluster_flows[id as usize].synced_round.is_none() {
                continue;
            }
            // With a store, only the connections adopted here: the member that comes back
            // may still hold them (it was only frozen), and answers `Held`.
            let adopted = self.tcp.cluster_flows[id as usize].adopted != Adopted::No;
            if cl.store.is_some() && !adopted {
                continue;
            }
            if let Some(rec) = self.record_of(id) {
                self.push_to_members(&cl, &rec, joined);
                sent += 1;
            }
        }
        self.tcp.scratch_ids = ids;
        if sent > 0 {
            tracing::info!(
                worker = self.index,
                records = sent,
                members = joined,
                "splice records sent to members that joined"
            );
        }
    }

    /// This instance's backend-facing address and MAC, as its splice records carry them
    /// (for its beats): the local address of the route to the first backend, and that
    /// route's port's MAC.
    pub(in crate::worker) fn backend_face(&self) -> Option<(Ipv4Addr, MacAddr)> {
        let route = self.tcp.rt.routes.first()?;
        let mac = self.shared.addrs.get(route.via_port)?.mac;
        Some((route.local_ip, mac))
    }

    /// Connection `id` is being removed: the others drop its record (if its close did not
    /// have them do so already, `sync_closed`).
    pub(super) fn sync_forget(&mut self, id: ConnId) {
        let Some(cl) = self.shared.cluster.as_deref() else {
            return;
        };
        let flow = std::mem::take(&mut self.tcp.cluster_flows[id as usize]);
        if flow.steered {
            if let Some(b) = self.tcp.flows.get(id).and_then(|c| c.backend) {
                cl.adopted_steer.remove(steer_key(&b.key));
            }
        }
        if flow.synced_round.is_some() {
            self.send_forget(id);
        }
    }

    /// Connection `id` closed and only lingers here (for late segments): the others drop
    /// its record now. Kept until the entry goes, a record outlives the connection by the
    /// linger, and for good if this member leaves meanwhile (a drained instance stops with
    /// its last connections lingering); a client that reuses the port for a new
    /// connection would then find, at the member it reaches, a record of the old one to
    /// adopt, and its SYN challenged instead of answered.
    pub(super) fn sync_closed(&mut self, id: ConnId) {
        let Some(flow) = self.tcp.cluster_flows.get_mut(id as usize) else {
            return;
        };
        if flow.synced_round.take().is_some() {
            self.send_forget(id);
        }
    }

    /// The record of connection `id` to be dropped, to every member.
    fn send_forget(&mut self, id: ConnId) {
        let Some(cl) = self.shared.cluster.as_deref() else {
            return;
        };
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        // Between two presplice rounds the connection has no backend: the members drop
        // the record by its client tuple alone (the store's copy under the last round's
        // backend tuple then ends with its TTL).
        let backend = conn.backend.map_or(conn.client, |b| b.key);
        let meta = &self.tcp.meta[id as usize];
        let rec = SpliceRecord {
            kind: SyncKind::Forget,
            origin: cl.me as u8,
            client: conn.client,
            backend,
            client_isn: 0,
            our_isn: 0,
            backend_isn: 0,
            c2b: conn.c2b,
            b2c: conn.b2c,
            client_mss: 0,
            client_window_scale: None,
            our_window_scale: 0,
            sack_permitted: false,
            client_timestamps: false,
            ts_on: false,
            backend_id: 0,
            backend_mac: meta.backend_mac,
            origin_backend_mac: self.shared.addrs[meta.backend_port].mac,
            request_end: None,
            response_end: None,
            response_start: None,
            response_to_head: false,
            last: false,
            adopted: false,
        };
        self.send_sync(&rec, u32::MAX);
    }

    /// Before a client segment of `id` is handled: whether it may go on. An adopted
    /// connection's client may send the rest of the request the record allowed; past it
    /// comes its next request, which the adopter frames itself when it can (below), else
    /// the connection ends (false). `verified`: whether the segment's checksum holds, asked
    /// only when its payload is to be read.
    pub(super) fn adopted_may_pass(
        &mut self,
        id: ConnId,
        seg: &SegmentInfo,
        payload: &[u8],
        verified: impl FnOnce() -> bool,
    ) -> bool {
        let Some(flow) = self.tcp.cluster_flows.get(id as usize) else {
            return true;
        };
        if flow.adopted == Adopted::PerRequest {
            self.adopted_response_check(id, seg);
        }
        let end = match self.tcp.cluster_flows[id as usize].adopted {
            Adopted::No | Adopted::PerRequest => return true,
            Adopted::UntilAnyByte => return seg.payload_len == 0,
            Adopted::Until(end) => end,
        };
        // A segment without payload carries no request (the ACK after the client's FIN
        // is one past the end).
        if seg.payload_len == 0 || (seg.seq + seg.payload_len).wrapping_diff(end) <= 0 {
            return true;
        }
        if seg.seq != end || !verified() {
            tracing::debug!(
                worker = self.index,
                seq = seg.seq.0,
                len = seg.payload_len,
                end = end.0,
                "adopted connection: a client segment not at the request boundary"
            );
            return false;
        }
        match self.next_adopted_request(id, payload) {
            Some(len) => {
                self.tcp.cluster_flows[id as usize].adopted = Adopted::Until(end + len);
                self.stats().add(Counter::ClusterAdoptedRequests, 1);
                true
            }
            None => {
                tracing::debug!(
                    worker = self.index,
                    len = seg.payload_len,
                    "adopted connection: a next request the adopter cannot frame alone"
                );
                false
            }
        }
    }

    /// Presplice mode, a connection adopted before its response began
    /// (`PerRequest::adopted_before_response`): a client that acknowledges beyond the
    /// response's start got bytes of it from the gone member, which the backend will not
    /// send again, so the response cannot be framed here. The connection is then carried
    /// as in splice mode, to the end of its request and the response to it, and the next
    /// request ends it (`adopted_may_pass`).
    fn adopted_response_check(&mut self, id: ConnId, seg: &SegmentInfo) {
        let Some(pr) = self.tcp.per_request[id as usize].as_ref() else {
            return;
        };
        let (Some(start), Some(ack)) = (pr.awaiting_response_start(), seg.ack) else {
            return;
        };
        if ack.wrapping_diff(start) <= 0 {
            return;
        }
        let end = pr.request_end();
        self.release_per_request(id);
        let backend = self
            .tcp
            .flows
            .get(id)
            .and_then(|c| c.backend)
            .map(|b| b.id.min(usize::from(u16::MAX)) as u16);
        let meta = &mut self.tcp.meta[id as usize];
        meta.sticky = true;
        meta.sticky_backend = backend;
        self.tcp.cluster_flows[id as usize].adopted = match end {
            Some(e) => Adopted::Until(e),
            None => Adopted::UntilAnyByte,
        };
        self.stats().add(Counter::ClusterAdoptedUnframed, 1);
        tracing::debug!(
            worker = self.index,
            conn = id,
            "adopted before its response, which the client partly got from the gone member: carried to the next request"
        );
    }

    /// The next request of an adopted connection, starting at the first byte of
    /// `payload`: its length when it may go through to the connection's backend as it
    /// came, as the connection's origin would have let it. That is a splice-mode VIP (a
    /// presplice VIP routes each request to its own pool), a whole head in this one
    /// segment, a rule that sends it to a pool (an answer, a redirect or an error is the
    /// switch's to give, and needs the response framing the adopter lacks), no rewrite of
    /// the head (client address, normalised path), no upgrade, and a body whose length the
    /// head gives, with nothing after it in the segment. `None` otherwise: the caller
    /// resets the connection, and the client retries on a new one.
    fn next_adopted_request(&mut self, id: ConnId, payload: &[u8]) -> Option<usize> {
        let rt = std::sync::Arc::clone(&self.tcp.rt);
        let vip = self.tcp.flows.get(id)?.client.local_ip;
        let port = &self.shared.addrs[self.tcp.meta[id as usize].client_port];
        let v = port.vips.iter().position(|(a, _)| *a == vip)?;
        if port.per_request.get(v).copied().unwrap_or(true)
            || rt.config.forwards_normalized_path(vip)
        {
            return None;
        }
        let head_len = rules::http::head_end(payload)?;
        let req = rules::http::parse_request(&payload[..head_len]).ok()?;
        if req.header("upgrade").is_some() {
            return None;
        }
        let (rule, action) = rt.router.decide(&req);
        let rules::Action::Pool(pool) = action else {
            return None;
        };
        if rt.config.pools.get(*pool)?.client_address != ClientAddress::None {
            return None;
        }
        let body = match RequestFramer::framing_of(&req).ok()? {
            BodyFraming::Empty => 0,
            BodyFraming::Length(n) => usize::try_from(n).ok()?,
            BodyFraming::Chunked | BodyFraming::UntilClose => return None,
        };
        let len = head_len.checked_add(body)?;
        if payload.len() > len {
            return None;
        }
        if let Some(r) = rule {
            crate::stats::bump(&self.stats().rule_hits[rt.rule_slot[r]], 1);
        }
        self.stats().add(Counter::RequestsRouted, 1);
        Some(len)
    }

    /// In a cluster, just after start (`Membership::joining`).
    pub(super) fn cluster_joining(&self, now_ms: u64) -> bool {
        self.shared
            .cluster
            .as_ref()
            .is_some_and(|c| c.joining(self.tsc_of(now_ms)))
    }

    /// `rec` to every other reachable member in `to` (a mask), or to the store.
    fn send_sync(&mut self, rec: &SpliceRecord, to: u32) {
        let Some(cl) = self.shared.cluster.clone() else {
            return;
        };
        if let Some(store) = &cl.store {
            // The store design: one queued write; the store thread does the rest.
            if store.submit(StoreOp::Put(*rec)) {
                self.stats().add(Counter::ClusterSyncSent, 1);
            } else {
                self.stats().drop(DropReason::ClusterStoreQueueFull, 1);
            }
            return;
        }
        self.push_to_members(&cl, rec, to);
    }

    /// `rec` in a datagram to every other reachable member in `to` (a mask).
    fn push_to_members(&mut self, cl: &Membership, rec: &SpliceRecord, to: u32) {
        let bytes = rec.encode();
        let to = cl.tables().reachable & to;
        for m in (0..cl.names.len()).filter(|&m| m != cl.me && to >> m & 1 == 1) {
            match cl.mac_of(m) {
                Some(mac) => {
                    if self.send_to_member(cl, m, mac, &bytes) {
                        self.stats().add(Counter::ClusterSyncSent, 1);
                    }
                }
                None => self.stats().drop(DropReason::ClusterNoRoute, 1),
            }
        }
    }

    /// A sync datagram from `src` (checksum verified), on whichever core received it.
    pub(in crate::worker) fn on_sync_datagram(&mut self, src: Ipv4Addr, payload: &[u8]) {
        let Some(cl) = self.shared.cluster.clone() else {
            self.stats().drop(DropReason::BadClusterSync, 1);
            return;
        };
        let rec = match SpliceRecord::decode(payload) {
            Ok(r)
                if usize::from(r.origin) != cl.me
                    && cl.addresses.get(usize::from(r.origin)) == Some(&src) =>
            {
                r
            }
            _ => {
                self.stats().drop(DropReason::BadClusterSync, 1);
                return;
            }
        };
        self.stats().add(Counter::ClusterSyncReceived, 1);
        let now_tsc = dpdk_env::rdtsc();
        cl.on_record(usize::from(rec.origin), now_tsc);
        let c = &rec.client;
        let core = steer::client_flow_core(
            c.remote_ip,
            c.remote_port,
            c.local_ip,
            c.local_port,
            self.shared.stats.len(),
        );
        if core == self.index {
            self.keep_sync(rec, self.now_ms(now_tsc));
        } else if cl.inbox[core].push(Inbound::Record(rec)).is_ok() {
            self.shared.wake(core);
        } else {
            self.stats().drop(DropReason::ClusterSyncInboxFull, 1);
        }
    }

    /// A record of connection `id`, which this core adopted, from the member it adopted
    /// it from, arriving after the adoption: that member let more of the client's bytes
    /// through before it went than the record the adoption used said (a member that stops
    /// cleanly sends its `leaving` beat from worker 0 while its other workers may still
    /// forward a request; a record can also simply be overtaken). The client will not send
    /// those bytes again, so the request end moves up to what the origin allowed, in the
    /// same round only.
    fn origins_last_record(&mut self, id: ConnId, rec: &SpliceRecord) {
        let flow = self.tcp.cluster_flows[id as usize];
        let same_round = self
            .tcp
            .flows
            .get(id)
            .is_some_and(|c| c.client_isn().0 == rec.client_isn);
        let (Some(end), true, true) = (
            rec.request_end.map(SeqNumber),
            same_round,
            flow.adopted_from == Some(rec.origin),
        ) else {
            return;
        };
        let ahead = match flow.adopted {
            Adopted::Until(ours) => end.wrapping_diff(ours) > 0,
            Adopted::UntilAnyByte => true,
            Adopted::No | Adopted::PerRequest => false,
        };
        if ahead {
            self.tcp.cluster_flows[id as usize].adopted = Adopted::Until(end);
            self.stats().add(Counter::ClusterAdoptedCaughtUp, 1);
        }
    }

    /// Records other cores received for flows this core steers.
    pub(in crate::worker) fn drain_sync_inbox(&mut self, now_ms: u64) -> usize {
        let Some(cl) = self.shared.cluster.clone() else {
            return 0;
        };
        let mut n = 0;
        while let Some(inbound) = cl.inbox[self.index].pop() {
            match inbound {
                Inbound::Record(rec) => self.keep_sync(rec, now_ms),
                Inbound::StoreNone(key) => {
                    tracing::debug!(
                        worker = self.index,
                        remote = %key.remote_ip,
                        remote_port = key.remote_port,
                        local_port = key.local_port,
                        "the store has no record of this tuple"
                    );
                    if let Some(lookup) = self.tcp.store_pending.get_mut(&key) {
                        lookup.none_ms = Some(now_ms);
                    }
                }
            }
            n += 1;
        }
        n
    }

    /// A record for a flow this core steers: pushed by a member, or found in the store.
    fn keep_sync(&mut self, rec: SpliceRecord, now_ms: u64) {
        if let Some(cl) = self.shared.cluster.as_deref() {
            if rec.kind == SyncKind::Splice && !rec.adopted && usize::from(rec.origin) != cl.me {
                // Its origin's backend-facing address, to take over if the origin goes (an
                // adopted connection's is another member's).
                cl.takeover.learn(
                    usize::from(rec.origin),
                    rec.backend.local_ip,
                    rec.origin_backend_mac,
                );
            }
        }
        self.tcp.store_pending.remove(&rec.client);
        self.tcp.store_pending.remove(&rec.backend);
        match rec.kind {
            SyncKind::Forget => {
                if self
                    .tcp
                    .standby
                    .by_client(&rec.client)
                    .is_some_and(|r| r.origin == rec.origin)
                {
                    if let Some(r) = self.tcp.standby.remove(&rec.client) {
                        self.unsteer_record(&r);
                    }
                }
            }
            // A flow we hold ourselves: a late record of it is stale, or another member
            // adopted it while we were taken for gone. Then we still hold it whole (framing
            // state included): the adopter lets its copy go.
            SyncKind::Splice if self.tcp.flows.lookup(&rec.client).is_some() => {
                if let Some((id, Side::Client)) = self.tcp.flows.lookup(&rec.client) {
                    if rec.adopted && self.tcp.cluster_flows[id as usize].adopted == Adopted::No {
                        if let Some(mut held) = self.record_of(id) {
                            held.kind = SyncKind::Held;
                            if let Some(cl) = self.shared.cluster.clone() {
                                self.push_to_members(&cl, &held, 1 << rec.origin);
                            }
                        }
                    } else {
                        self.origins_last_record(id, &rec);
                    }
                }
            }
            SyncKind::Held => {
                if let Some((id, Side::Client)) = self.tcp.flows.lookup(&rec.client) {
                    if self.tcp.cluster_flows[id as usize].adopted != Adopted::No {
                        // No reset: the member that holds it carries on.
                        self.tcp.cluster_flows[id as usize] = ClusterFlow::default();
                        self.remove_conn(id);
                        self.stats().add(Counter::ClusterAdoptedGivenBack, 1);
                    }
                }
            }
            SyncKind::Splice => {
                if self.tcp.standby.insert(rec, now_ms) == Stored::Evicted {
                    self.stats().add(Counter::ClusterStandbyEvicted, 1);
                }
                self.steer_record(&rec);
            }
        }
    }

    /// A segment to `key` (our side's tuple; `side` says which) that no flow holds, on
    /// port `p`. `from` is the member that handed it over, if one did.
    pub(super) fn standby_segment(
        &mut self,
        p: usize,
        mut m: Mbuf,
        rx: &Rx,
        no_lookup: bool,
        from: Option<usize>,
        now_ms: u64,
    ) -> FromStandby {
        let key = &rx.key();
        let found = match self.tcp.standby.by_client(key) {
            Some(r) => Some((*r, Side::Client)),
            None => self
                .tcp
                .standby
                .by_backend(key)
                .map(|r| (*r, Side::Backend)),
        };
        let Some((rec, side)) = found else {
            return match self.ask_store(key, no_lookup, now_ms) {
                true => FromStandby::Handled,
                false => FromStandby::Unknown(m),
            };
        };
        let Some(cl) = self.shared.cluster.clone() else {
            return FromStandby::Unknown(m);
        };
        let tables = cl.tables();
        // Liveness from the beats now, not from the last table (rebuilt every 100 ms): a
        // member heard since must not be taken for gone, or its connection would get a
        // second holder.
        let (_, reachable) = cl.live_now(self.tsc_of(now_ms));
        let up = |x: usize| x != cl.me && reachable >> x & 1 == 1 && Some(x) != from;
        let origin = usize::from(rec.origin);
        // Who should hold it: its origin while it lives; else the flow's owner now.
        let holder = if up(origin) {
            Some(origin)
        } else {
            let c = &rec.client;
            let owner = tables.now.owner(flow_key(
                c.remote_ip,
                c.remote_port,
                c.local_ip,
                c.local_port,
            ));
            up(owner).then_some(owner)
        };
        drop(tables);
        if let Some(h) = holder {
            let mac = match side {
                Side::Client => cl.mac_of(h),
                Side::Backend if h == origin => Some(rec.origin_backend_mac),
                Side::Backend => cl.takeover.backend_mac(h),
            };
            if let Some(mac) = mac {
                {
                    let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
                    eth.set_dst_addr(mac);
                    eth.set_src_addr(self.shared.addrs[p].mac);
                }
                self.stats().add(Counter::ClusterPassedToOrigin, 1);
                self.stage(p, m);
                return FromStandby::Handled;
            }
        }
        if side == Side::Client && opens_connection(self, rx, now_ms) {
            // Not a segment of the record's connection: a bare SYN (its client lost that
            // connection, or reuses the port after a close whose Forget never came) is
            // answered as any SYN, with the record kept (a spoofed SYN must not cost a live
            // connection its record); the ACK that completes a handshake this core
            // answered opens a new connection, which replaces the record.
            if !rx.seg.syn() {
                if let Some(r) = self.tcp.standby.remove(&rec.client) {
                    self.unsteer_record(&r);
                }
                self.stats().add(Counter::ClusterRecordReplaced, 1);
            }
            return FromStandby::Unknown(m);
        }
        if !cl.settled(self.tsc_of(now_ms)) {
            // Just started: the record's origin may be alive and not heard yet. Adopting
            // now would make two holders; the sender retransmits.
            self.stats().drop(DropReason::ClusterJoining, 1);
            return FromStandby::Handled;
        }
        // The store design: this copy may have been read while the origin lived (to pass
        // its segments on), and the origin wrote newer ones since (each request of a
        // keep-alive connection moves the request's end). Only a copy read after the
        // origin's last beat is its last word; else the store is read again and the
        // segment waits for the answer, which replaces the copy. When the store has
        // nothing or does not answer (`ask_store` false), the copy is all there is.
        if cl.store.is_some() {
            let read_tsc = self
                .tcp
                .standby
                .received_ms(&rec.client)
                .map(|t| self.tsc_of(t));
            let stale = read_tsc.is_none_or(|t| t <= cl.heard_tsc(origin));
            if stale && self.ask_store(key, no_lookup, now_ms) {
                return FromStandby::Handled;
            }
        }
        match self.adopt(rec, now_ms) {
            Some(id) => FromStandby::Adopted(m, id, side),
            None => FromStandby::Unknown(m),
        }
    }

    /// The store design: a segment of a flow no core state and no record here knows may
    /// belong to a connection a member that is gone spliced. Its record is asked of the
    /// store (once per tuple, answered into this core's inbox) and the tuple's segments
    /// dropped until the answer (true: the sender retransmits and finds the record here).
    /// What the caller rules out (`no_lookup`), a health probe's or a warm connection's
    /// segment is never looked up. Once the store answered "none" the segments go on as
    /// before for `STORE_NEGATIVE_MS` (false: a stray is reset); so they do when it gave
    /// no answer in `STORE_GIVE_UP_MS` (counted: the store is unreachable). Before that,
    /// no answer is never taken for "none": a store that is slow or reconnecting must not
    /// get a live connection reset.
    fn ask_store(&mut self, key: &FlowKey, no_lookup: bool, now_ms: u64) -> bool {
        let Some(store) = self.shared.cluster.as_ref().and_then(|c| c.store.clone()) else {
            return false;
        };
        if no_lookup || self.tcp.probes.contains_key(key) || self.tcp.warm.contains_key(key) {
            return false;
        }
        if let Some(lookup) = self.tcp.store_pending.get_mut(key) {
            if !lookup.expired(now_ms) {
                if lookup.none_ms.is_some() {
                    return false;
                }
                if now_ms.saturating_sub(lookup.asked_ms) < STORE_GIVE_UP_MS {
                    self.stats().drop(DropReason::ClusterStoreWait, 1);
                    return true;
                }
                lookup.none_ms = Some(now_ms);
                self.stats().add(Counter::ClusterStoreUnanswered, 1);
                return false;
            }
            self.tcp.store_pending.remove(key);
        }
        if self.tcp.store_pending.len() >= STORE_PENDING_MAX {
            self.tcp
                .store_pending
                .retain(|_, lookup| !lookup.expired(now_ms));
            if self.tcp.store_pending.len() >= STORE_PENDING_MAX {
                return false;
            }
        }
        let client_side = self
            .shared
            .addrs
            .iter()
            .any(|a| a.vips.iter().any(|(v, _)| *v == key.local_ip));
        if !store.submit(StoreOp::Get {
            key: *key,
            client_side,
            core: self.index,
        }) {
            self.stats().drop(DropReason::ClusterStoreQueueFull, 1);
            return false;
        }
        self.tcp.store_pending.insert(
            *key,
            StoreLookup {
                asked_ms: now_ms,
                none_ms: None,
            },
        );
        self.stats().add(Counter::ClusterStoreLookups, 1);
        self.stats().drop(DropReason::ClusterStoreWait, 1);
        true
    }

    /// Presplice mode: a next round starts on `id`; on a connection adopted with its
    /// per-request state, that is a next request the adopter routes itself (counted as
    /// `cluster_adopted_requests`).
    pub(super) fn note_adopted_round(&self, id: ConnId) {
        if self
            .tcp
            .cluster_flows
            .get(id as usize)
            .is_some_and(|f| f.adopted == Adopted::PerRequest)
        {
            self.stats().add(Counter::ClusterAdoptedRequests, 1);
        }
    }

    /// Whether `vip` routes every request (`mode: "presplice"`).
    fn presplice_vip(&self, vip: Ipv4Addr) -> bool {
        self.shared.addrs.iter().any(|a| {
            a.vips
                .iter()
                .zip(&a.per_request)
                .any(|((v, _), &per_request)| *v == vip && per_request)
        })
    }

    /// If `rec`'s backend port steers to another core here than this one (the core its
    /// client tuple steers to, which keeps the record and would adopt the connection):
    /// its backend tuple steered here by `cluster::adopted_steer`; `true` if it is.
    fn steer_record(&self, rec: &SpliceRecord) -> bool {
        let Some(cl) = self.shared.cluster.as_deref() else {
            return false;
        };
        if steer::local_port_core(rec.backend.local_port, self.shared.stats.len()) == self.index {
            return false;
        }
        if cl.adopted_steer.insert(steer_key(&rec.backend), self.index) {
            return true;
        }
        // Its backend segments will reach the port's core, which has no record of it.
        self.stats().drop(DropReason::ClusterSteerFull, 1);
        false
    }

    /// The record `rec` went without an adoption: its steering goes too.
    fn unsteer_record(&self, rec: &SpliceRecord) {
        if let Some(cl) = self.shared.cluster.as_deref() {
            cl.adopted_steer.remove(steer_key(&rec.backend));
        }
    }

    /// Takes over the connection `rec` describes: into the flow table, spliced, with its
    /// record pushed again under our name. None (counted) when it cannot be: no route to
    /// its backend or its client, or no room.
    fn adopt(&mut self, rec: SpliceRecord, now_ms: u64) -> Option<ConnId> {
        self.tcp.standby.remove(&rec.client);
        let failed = |w: &Worker| {
            w.stats().drop(DropReason::ClusterAdoptFailed, 1);
            None
        };
        let Some(route) = self.tcp.rt.routes.get(usize::from(rec.backend_id)).copied() else {
            return failed(self);
        };
        let Some(client_port) = self
            .shared
            .addrs
            .iter()
            .position(|a| a.vips.iter().any(|(v, _)| *v == rec.client.local_ip))
        else {
            return failed(self);
        };
        let client_mac = self.next_hop_mac(client_port, rec.client.remote_ip, now_ms);
        let backend_mac = self.route_mac(&route, now_ms).unwrap_or(rec.backend_mac);
        let Some(client_mac) = client_mac else {
            return failed(self);
        };
        if !self.shared.client_conns.try_open(rec.client.remote_ip) {
            return failed(self);
        }
        // Presplice mode with both ends of the exchange known: framed from there, and each
        // next request routed in a round of its own, as the origin would have.
        let framable = !rec.last && self.presplice_vip(rec.client.local_ip);
        let per_request = match (rec.request_end, rec.response_end, rec.response_start) {
            (Some(req), resp_end, resp_start)
                if framable && (resp_end.is_some() || resp_start.is_some()) =>
            {
                let mut pr = self
                    .tcp
                    .pr_pool
                    .pop()
                    .unwrap_or_else(tcpstate::presplice::PerRequest::new);
                match (resp_end, resp_start) {
                    (Some(end), _) => pr.adopted(SeqNumber(req), SeqNumber(end)),
                    (None, Some(start)) => pr.adopted_before_response(
                        SeqNumber(req),
                        SeqNumber(start),
                        rec.response_to_head,
                    ),
                    (None, None) => {}
                }
                pr.set_durable(true);
                Some(pr)
            }
            _ => None,
        };
        let conn = Conn::adopt(&rec, self.tcp.params, now_ms);
        let id = match self.tcp.flows.try_insert(rec.client, conn) {
            Ok(id) => id,
            Err(_) => {
                self.shared.client_conns.close(rec.client.remote_ip);
                if let Some(pr) = per_request {
                    self.tcp.pr_pool.push(pr);
                }
                return failed(self);
            }
        };
        self.tcp.flows.bind_backend(id, rec.backend);
        // The origin picked the backend port for its own worker count: if the port steers
        // to another core here, the backend's segments come to this one by tuple.
        let steered = self.steer_record(&rec);
        if steered {
            self.stats().add(Counter::ClusterAdoptedSteered, 1);
        }
        let presplice = per_request.is_some();
        // (The slot's previous connection gave its state back when it went.)
        self.release_per_request(id);
        self.tcp.per_request[id as usize] = per_request;
        self.tcp.cluster_flows[id as usize] = ClusterFlow {
            synced_ms: now_ms,
            adopted_from: Some(rec.origin),
            steered,
            adopted: match rec.request_end {
                _ if presplice => Adopted::PerRequest,
                Some(end) => Adopted::Until(SeqNumber(end)),
                None => Adopted::UntilAnyByte,
            },
            ..ClusterFlow::default()
        };
        self.tcp.request_lines[id as usize] = RequestLine::EMPTY;
        self.tcp.meta[id as usize] = Meta {
            client_mac,
            client_port,
            backend_mac,
            backend_port: route.via_port,
            sticky: !presplice,
            sticky_backend: (!presplice).then_some(rec.backend_id),
            ..Meta::default()
        };
        // The pool the carried backend serves in (its PROXY setting decides whether the
        // backend connection could be pooled at the next round; it is not: tainted).
        let config = &self.tcp.rt.config;
        if let Some(p) = config
            .backends
            .get(usize::from(rec.backend_id))
            .and_then(|b| {
                config
                    .pools
                    .iter()
                    .position(|p| p.backends.contains(&b.name))
            })
        {
            self.tcp.pool_of[id as usize] = p;
        }
        self.stats().add(Counter::ClusterAdopted, 1);
        self.stats().add(Counter::ConnsAccepted, 1);
        tracing::debug!(worker = self.index, client = %rec.client.remote_ip, port = rec.client.remote_port, origin = rec.origin, "adopted a spliced connection");
        self.sync_if_due(id, now_ms);
        Some(id)
    }
}

/// Whether the client segment of `rx` opens a connection rather than continuing one: a
/// bare SYN, or the ACK that completes a handshake this core answered (its cookie holds;
/// checked last, as it costs a hash).
fn opens_connection(w: &Worker, rx: &Rx, now_ms: u64) -> bool {
    (rx.seg.syn() && rx.seg.ack.is_none()) || w.completes_our_handshake(rx, now_ms)
}
