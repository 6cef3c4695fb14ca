//! In a cluster: splice state pushed to the other members, kept for theirs, and
//! connections adopted from a member that is gone (`tcpstate::cluster::sync`).
//!
//! - A connection this core spliced (splice mode; presplice rounds are not shared) sends
//!   its record to every reachable member once the backend has acknowledged the request
//!   head, and a forget when it is removed.
//! - A record received on any core goes to the core that steers its client tuple (the
//!   member's inbox), which keeps it in its standby table.
//! - A segment of a flow this core holds no state for, whose record it keeps: passed to
//!   the record's origin while that member lives; once it is gone, adopted here if this
//!   instance owns the flow now (else passed to the owner, which adopts it), then
//!   forwarded as the origin would have. The adopter pushes the record again, under its
//!   own name, so the others know who holds the connection now.
use std::net::Ipv4Addr;

use dpdk_env::Mbuf;

use crate::cluster::store::StoreOp;
use tcpstate::cluster::flow_key;
use tcpstate::cluster::sync::{SpliceRecord, Stored, SyncKind};
use tcpstate::conn::Conn;
use tcpstate::flow::{ConnId, FlowKey, Side};
use tcpstate::steer;
use tcpstate::wire::{EthernetFrame, SeqNumber};

use super::{Meta, RequestLine};
use crate::stats::{Counter, DropReason};
use crate::worker::Worker;

/// The store design: how long a segment waits (is dropped) for its record's lookup,
/// how long after a lookup found nothing the tuple is left alone, and how many lookups a
/// core may have outstanding.
const STORE_WAIT_MS: u64 = 300;
const STORE_NEGATIVE_MS: u64 = 3_000;
const STORE_PENDING_MAX: usize = 1024;

/// What a core keeps per connection in a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ClusterFlow {
    /// The round (its client ISN) whose record the others have; none: nothing shared.
    synced_round: Option<u32>,
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
}

/// What the standby table made of a segment with no flow.
pub(super) enum FromStandby {
    /// No record, or nothing to do with it here: handle the segment as before.
    Unknown(Mbuf),
    /// Passed to the member that holds (or now owns) the connection.
    Passed,
    /// Adopted: the connection is in the flow table now.
    Adopted(Mbuf, ConnId, Side),
}

impl Worker {
    /// After a backend segment of `id`: once a round's splice is settled (the backend
    /// has its head), its record goes to the other members, once per round.
    pub(super) fn sync_if_due(&mut self, id: ConnId) {
        let Some(cl) = self.shared.cluster.as_deref() else {
            return;
        };
        let meta = &self.tcp.meta[id as usize];
        let origin_mac = self.shared.addrs[meta.backend_port].mac;
        let Some(mut rec) = self
            .tcp
            .flows
            .get(id)
            .and_then(|c| c.splice_record(cl.me as u8, meta.backend_mac, origin_mac))
        else {
            return;
        };
        let flow = &mut self.tcp.cluster_flows[id as usize];
        if flow.synced_round == Some(rec.client_isn) {
            return;
        }
        flow.synced_round = Some(rec.client_isn);
        rec.request_end = match flow.adopted {
            // Adopted: the end we were given holds for this round.
            Adopted::Until(end) => Some(end.0),
            Adopted::UntilAnyByte => None,
            Adopted::No => self.tcp.per_request[id as usize]
                .as_ref()
                .and_then(|pr| pr.known_request_end())
                .map(|s| s.0),
        };
        self.send_sync(&rec);
    }

    /// Connection `id` is being removed: the others drop its record.
    pub(super) fn sync_forget(&mut self, id: ConnId) {
        let Some(cl) = self.shared.cluster.as_deref() else {
            return;
        };
        let flow = std::mem::take(&mut self.tcp.cluster_flows[id as usize]);
        if flow.synced_round.is_none() {
            return;
        }
        let Some(conn) = self.tcp.flows.get(id) else {
            return;
        };
        let Some(backend) = conn.backend else {
            return;
        };
        let meta = &self.tcp.meta[id as usize];
        let rec = SpliceRecord {
            kind: SyncKind::Forget,
            origin: cl.me as u8,
            client: conn.client,
            backend: backend.key,
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
        };
        self.send_sync(&rec);
    }

    /// Before a client segment of `id` is handled: an adopted connection whose client goes
    /// past the point the record allowed is reset (true), see `cluster::sync` "Rounds".
    pub(super) fn adopted_past_end(&mut self, id: ConnId, seq: SeqNumber, len: usize) -> bool {
        let Some(flow) = self.tcp.cluster_flows.get(id as usize) else {
            return false;
        };
        match flow.adopted {
            Adopted::No => false,
            Adopted::Until(end) => (seq + len).wrapping_diff(end) > 0,
            Adopted::UntilAnyByte => len > 0,
        }
    }

    /// `rec` to every other reachable member.
    fn send_sync(&mut self, rec: &SpliceRecord) {
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
        let reachable = cl.tables().reachable;
        let bytes = rec.encode();
        for m in (0..cl.names.len()).filter(|&m| m != cl.me && reachable >> m & 1 == 1) {
            match cl.mac_of(m) {
                Some(mac) => {
                    if self.send_to_member(&cl, m, mac, &bytes) {
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
        let c = &rec.client;
        let core = steer::client_flow_core(
            c.remote_ip,
            c.remote_port,
            c.local_ip,
            c.local_port,
            self.shared.stats.len(),
        );
        if core == self.index {
            self.keep_sync(rec);
        } else if cl.inbox[core].push(rec).is_ok() {
            self.shared.wake(core);
        } else {
            self.stats().drop(DropReason::ClusterSyncInboxFull, 1);
        }
    }

    /// Records other cores received for flows this core steers.
    pub(in crate::worker) fn drain_sync_inbox(&mut self) -> usize {
        let Some(cl) = self.shared.cluster.clone() else {
            return 0;
        };
        let mut n = 0;
        while let Some(rec) = cl.inbox[self.index].pop() {
            self.keep_sync(rec);
            n += 1;
        }
        n
    }

    /// A record for a flow this core steers: pushed by a member, or found in the store.
    fn keep_sync(&mut self, rec: SpliceRecord) {
        if let Some(cl) = self.shared.cluster.as_deref() {
            if rec.kind == SyncKind::Splice && usize::from(rec.origin) != cl.me {
                // Its origin's backend-facing address, to take over if the origin goes.
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
                    self.tcp.standby.remove(&rec.client);
                }
            }
            // A flow we hold ourselves is ours: a late record of it is stale.
            SyncKind::Splice if self.tcp.flows.lookup(&rec.client).is_some() => {}
            SyncKind::Splice => {
                if self.tcp.standby.insert(rec) == Stored::Evicted {
                    self.stats().add(Counter::ClusterStandbyEvicted, 1);
                }
            }
        }
    }

    /// A segment to `key` (our side's tuple; `side` says which) that no flow holds, on
    /// port `p`. `from` is the member that handed it over, if one did.
    pub(super) fn standby_segment(
        &mut self,
        p: usize,
        mut m: Mbuf,
        key: &FlowKey,
        syn: bool,
        from: Option<usize>,
        now_ms: u64,
    ) -> FromStandby {
        let found = match self.tcp.standby.by_client(key) {
            Some(r) => Some((*r, Side::Client)),
            None => self
                .tcp
                .standby
                .by_backend(key)
                .map(|r| (*r, Side::Backend)),
        };
        let Some((rec, side)) = found else {
            return match self.ask_store(key, syn, now_ms) {
                true => FromStandby::Passed,
                false => FromStandby::Unknown(m),
            };
        };
        let Some(cl) = self.shared.cluster.clone() else {
            return FromStandby::Unknown(m);
        };
        let tables = cl.tables();
        let up = |x: usize| x != cl.me && tables.reachable >> x & 1 == 1 && Some(x) != from;
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
                return FromStandby::Passed;
            }
        }
        match self.adopt(rec, now_ms) {
            Some(id) => FromStandby::Adopted(m, id, side),
            None => FromStandby::Unknown(m),
        }
    }

    /// The store design: a segment of a flow no core state and no record here knows may
    /// belong to a connection a member that is gone spliced. Its record is asked of the
    /// store (once per tuple, answered into this core's inbox) and the segment dropped
    /// meanwhile (true: its sender retransmits and finds the record here). A SYN, a health
    /// probe's or a warm connection's segment is never looked up; once the store had
    /// nothing for `STORE_NEGATIVE_MS`, the segment goes on as before (false: a stray is
    /// reset).
    fn ask_store(&mut self, key: &FlowKey, syn: bool, now_ms: u64) -> bool {
        let Some(store) = self.shared.cluster.as_ref().and_then(|c| c.store.clone()) else {
            return false;
        };
        if syn || self.tcp.probes.contains_key(key) || self.tcp.warm.contains_key(key) {
            return false;
        }
        if let Some(&asked) = self.tcp.store_pending.get(key) {
            let waited = now_ms.saturating_sub(asked);
            if waited < STORE_WAIT_MS {
                self.stats().drop(DropReason::ClusterStoreWait, 1);
                return true;
            }
            if waited < STORE_NEGATIVE_MS {
                return false;
            }
            self.tcp.store_pending.remove(key);
        }
        if self.tcp.store_pending.len() >= STORE_PENDING_MAX {
            self.tcp
                .store_pending
                .retain(|_, asked| now_ms.saturating_sub(*asked) < STORE_NEGATIVE_MS);
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
        }) {
            self.stats().drop(DropReason::ClusterStoreQueueFull, 1);
            return false;
        }
        self.tcp.store_pending.insert(*key, now_ms);
        self.stats().add(Counter::ClusterStoreLookups, 1);
        self.stats().drop(DropReason::ClusterStoreWait, 1);
        true
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
        let backend_mac = self.neigh[route.via_port]
            .lookup(route.next_hop, now_ms)
            .unwrap_or(rec.backend_mac);
        let Some(client_mac) = client_mac else {
            return failed(self);
        };
        if !self.shared.client_conns.try_open(rec.client.remote_ip) {
            return failed(self);
        }
        let conn = Conn::adopt(&rec, self.tcp.params, now_ms);
        let id = match self.tcp.flows.try_insert(rec.client, conn) {
            Ok(id) => id,
            Err(_) => {
                self.shared.client_conns.close(rec.client.remote_ip);
                return failed(self);
            }
        };
        self.tcp.flows.bind_backend(id, rec.backend);
        self.tcp.cluster_flows[id as usize] = ClusterFlow {
            synced_round: None,
            adopted: match rec.request_end {
                Some(end) => Adopted::Until(SeqNumber(end)),
                None => Adopted::UntilAnyByte,
            },
        };
        self.tcp.request_lines[id as usize] = RequestLine::EMPTY;
        self.tcp.meta[id as usize] = Meta {
            client_mac,
            client_port,
            backend_mac,
            backend_port: route.via_port,
            sticky: true,
            sticky_backend: Some(rec.backend_id),
            ..Meta::default()
        };
        self.stats().add(Counter::ClusterAdopted, 1);
        self.stats().add(Counter::ConnsAccepted, 1);
        tracing::debug!(worker = self.index, client = %rec.client.remote_ip, port = rec.client.remote_port, origin = rec.origin, "adopted a spliced connection");
        self.sync_if_due(id);
        Some(id)
    }
}
