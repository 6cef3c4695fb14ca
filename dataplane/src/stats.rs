//! Per-core counters. Each worker is the only writer of its own cache-aligned block and
//! updates it with plain relaxed load+store (no locked instruction); the main thread
//! reads any block at any time. Every drop has a reason, and every reason a counter.
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::hist::{self, Histogram};

macro_rules! counter_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum $name { $($variant),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub const COUNT: usize = Self::ALL.len();
            /// The name used in printed and JSON stats.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }
    };
}

counter_enum! {
    /// Things a worker counts that are not drops.
    Counter {
        RxPackets => "rx_packets",
        RxBytes => "rx_bytes",
        TxPackets => "tx_packets",
        TxBytes => "tx_bytes",
        ArpRequestsAnswered => "arp_requests_answered",
        ArpAbsorbed => "arp_absorbed",
        ArpRequestsSent => "arp_requests_sent",
        GratuitousArpSent => "gratuitous_arp_sent",
        NeighboursLearned => "neighbours_learned",
        NeighbourChanged => "neighbour_changed",
        IcmpEchoAnswered => "icmp_echo_answered",
        TcpSegmentsOwned => "tcp_segments_owned",
        TcpSegmentsSent => "tcp_segments_sent",
        SynReceived => "syn_received",
        SynCookiesSent => "syn_cookies_sent",
        RstSent => "rst_sent",
        ConnsAccepted => "conns_accepted",
        ConnsClosed => "conns_closed",
        RequestsRouted => "requests_routed",
        BackendConnects => "backend_connects",
        BackendConnectFailures => "backend_connect_failures",
        HeadTimeouts => "head_timeouts",
        Http4xxSent => "http_4xx_sent",
        Http5xxSent => "http_5xx_sent",
        Http400Sent => "http_400_sent",
        Http408Sent => "http_408_sent",
        Http431Sent => "http_431_sent",
        Http501Sent => "http_501_sent",
        Http503Sent => "http_503_sent",
        Http505Sent => "http_505_sent",
        SplicedPacketsC2b => "spliced_packets_c2b",
        SplicedBytesC2b => "spliced_bytes_c2b",
        SplicedPacketsB2c => "spliced_packets_b2c",
        SplicedBytesB2c => "spliced_bytes_b2c",
        ConnsReadingHead => "conns_reading_head",
        ConnsConnecting => "conns_connecting",
        ConnsSpliced => "conns_spliced",
        ConnsResponding => "conns_responding",
        ConnsClosedLinger => "conns_closed_linger",
        FlowsLive => "flows_live",
        TupleReused => "tuple_reused",
        LingerRecycled => "linger_recycled",
        AccessLogDropped => "access_log_dropped",
        HealthProbesSent => "health_probes_sent",
        HealthChanges => "health_changes",
        SteeredToPeer => "steered_to_peer",
        SteeredFromPeer => "steered_from_peer",
        Retries => "retries",
        Http502Sent => "http_502_sent",
        RequestsQueued => "requests_queued",
        QueueTimeouts => "queue_timeouts",
        QueueFull => "queue_full",
        XffInserted => "xff_inserted",
        XffRemoved => "xff_removed",
        ProxyHeadersSent => "proxy_headers_sent",
        RuleAnswers => "rule_answers",
        ConnsQueued => "conns_queued",
        PrespliceRounds => "presplice_rounds",
        PrespliceFallbacks => "presplice_fallbacks",
        PrespliceHeld => "presplice_held",
        PrespliceHoldRefused => "presplice_hold_refused",
        PrespliceAborts => "presplice_aborts",
        WarmOpened => "warm_opened",
        WarmAttached => "warm_attached",
        WarmReturned => "warm_returned",
        WarmClosed => "warm_closed",
        WarmIdle => "warm_idle",
        ChallengeAcksSent => "challenge_acks_sent",
        ChallengeAcksLimited => "challenge_acks_limited",
        TcpCarriedUnverified => "tcp_carried_unverified",
        HandoffsStarted => "handoffs_started",
        HandoffHeadsResent => "handoff_heads_resent",
        HandoffFailures => "handoff_failures",
        HandoffNoMac => "handoff_no_mac",
        HandedOffPacketsC2b => "handed_off_packets_c2b",
        HandedOffBytesC2b => "handed_off_bytes_c2b",
        ConnsHandedOff => "conns_handed_off",
        HandoffRequestsChecked => "handoff_requests_checked",
        HandoffRefused => "handoff_refused",
        HandoffReleasesSent => "handoff_releases_sent",
        HandoffMoves => "handoff_moves",
        HandoffMovesFailed => "handoff_moves_failed",
        HandoffAgentResets => "handoff_agent_resets",
        HandoffNoAgent => "handoff_no_agent",
        HandoffReturns => "handoff_returns",
        HandoffClosedNotices => "handoff_closed_notices",
        HandoffRequestsSent => "handoff_requests_sent",
        HandoffAcks => "handoff_acks",
        HandoffHeldForAck => "handoff_held_for_ack",
        HandoffHeardOf => "handoff_heard_of",
        PreallocPrepared => "prealloc_prepared",
        PreallocHits => "prealloc_hits",
        PreallocCancelled => "prealloc_cancelled",
        PreallocLimited => "prealloc_limited",
        SessionCookieHits => "session_cookie_hits",
        SessionCookieMisses => "session_cookie_misses",
        AgentBeats => "agent_beats",
        ExceptionToKernel => "exception_to_kernel",
        ExceptionFromKernel => "exception_from_kernel",
        LocalNodeRx => "local_node_rx",
        LocalNodeTx => "local_node_tx",
        ClusterBeatsSent => "cluster_beats_sent",
        ClusterBeatsReceived => "cluster_beats_received",
        ClusterHandedOver => "cluster_handed_over",
        ClusterAdoptedSteered => "cluster_adopted_steered",
        ClusterTakenFromPeer => "cluster_taken_from_peer",
        ClusterSyncSent => "cluster_sync_sent",
        ClusterSyncReceived => "cluster_sync_received",
        ClusterStandbyEvicted => "cluster_standby_evicted",
        ClusterStandbyExpired => "cluster_standby_expired",
        ClusterSyncRenewed => "cluster_sync_renewed",
        ClusterAdopted => "cluster_adopted",
        ClusterAdoptedEnded => "cluster_adopted_ended",
        ClusterAdoptedRequests => "cluster_adopted_requests",
        ClusterAdoptedGivenBack => "cluster_adopted_given_back",
        ClusterRecordReplaced => "cluster_record_replaced",
        ClusterAdoptedCaughtUp => "cluster_adopted_caught_up",
        ClusterAdoptedUnframed => "cluster_adopted_unframed",
        ClusterPassedToOrigin => "cluster_passed_to_origin",
        ClusterAddressesTaken => "cluster_addresses_taken",
        ClusterStoreLookups => "cluster_store_lookups",
        ClusterStoreUnanswered => "cluster_store_unanswered",
        MemoryTablesBytes => "memory_tables_bytes",
        MemoryHeadBuffersBytes => "memory_head_buffers_bytes",
        BusyIterations => "busy_iterations",
        IdleIterations => "idle_iterations",
        BusyCycles => "busy_cycles",
        IdleCycles => "idle_cycles",
        LoopOver100us => "loop_iterations_over_100us",
        LoopOver1ms => "loop_iterations_over_1ms",
    }
}

counter_enum! {
    /// Why a packet was dropped.
    DropReason {
        Malformed => "malformed",
        NotOurMac => "not_our_mac",
        NotForUs => "not_for_us",
        UnsupportedEthertype => "unsupported_ethertype",
        UnsupportedProtocol => "unsupported_protocol",
        BadIpChecksum => "bad_ip_checksum",
        BadIcmpChecksum => "bad_icmp_checksum",
        IpFragment => "ip_fragment",
        IpOptions => "ip_options",
        IcmpNotEcho => "icmp_not_echo",
        ArpNotForUs => "arp_not_for_us",
        ArpTableFull => "arp_table_full",
        BadTcp => "bad_tcp",
        BadTcpChecksum => "bad_tcp_checksum",
        TcpNoFlow => "tcp_no_flow",
        TcpClosedPort => "tcp_closed_port",
        BadCookie => "bad_cookie",
        HeadBuffersExhausted => "head_buffers_exhausted",
        FlowTableFull => "flow_table_full",
        ClientConnCap => "client_conn_cap",
        OutOfWindow => "out_of_window",
        HeadOverflow => "head_overflow",
        TcpUnexpected => "tcp_unexpected",
        NoLocalPort => "no_local_port",
        RxChained => "rx_chained",
        NoMbuf => "no_mbuf",
        TxFull => "tx_full",
        PeerRingFull => "peer_ring_full",
        HeadRetransmit => "head_retransmit",
        PresplicePending => "presplice_out_of_order",
        RstNotExact => "rst_not_exact",
        SynOnEstablished => "syn_on_established",
        AckOfUnsent => "ack_of_unsent",
        HandoffWatchFull => "handoff_watch_full",
        HandoffAckStale => "handoff_ack_stale",
        HandoffHeldFull => "handoff_held_full",
        BadAgentBeat => "bad_agent_beat",
        AgentBeatUnknown => "agent_beat_unknown",
        LeftAtStop => "left_at_stop",
        KernelTxFull => "kernel_tx_full",
        BadClusterBeat => "bad_cluster_beat",
        ClusterNoRoute => "cluster_no_route",
        BadClusterSync => "bad_cluster_sync",
        ClusterSyncInboxFull => "cluster_sync_inbox_full",
        ClusterAdoptFailed => "cluster_adopt_failed",
        ClusterSteerFull => "cluster_steer_full",
        ClusterStoreQueueFull => "cluster_store_queue_full",
        ClusterStoreWait => "cluster_store_wait",
        ClusterJoining => "cluster_joining",
        ClusterStopping => "cluster_stopping",
    }
}

/// One worker's counters, on their own cache lines.
#[repr(align(64))]
pub struct WorkerStats {
    counters: [AtomicU64; Counter::COUNT],
    drops: [AtomicU64; DropReason::COUNT],
    /// Connection setup: the client's handshake completed → the backend's SYN-ACK.
    pub setup_us: Histogram,
    /// Time to first response byte: the request routed → the backend's first data.
    pub ttfb_us: Histogram,
    /// Requests decided by each rule, by rule slot (`Runtime::rule_slot`).
    pub rule_hits: Box<[AtomicU64]>,
    /// Requests sent to each pool, and queue timeouts, by pool slot.
    pub pool_requests: Box<[AtomicU64]>,
    pub pool_queue_timeouts: Box<[AtomicU64]>,
    /// Requests sent to each backend (by backend id): a new backend connection or a
    /// warm one per routed request.
    pub backend_requests: Box<[AtomicU64]>,
}

/// Adds `n` to a single-writer counter.
#[inline]
pub fn bump(slot: &AtomicU64, n: u64) {
    slot.store(
        slot.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            setup_us: Histogram::default(),
            ttfb_us: Histogram::default(),
            rule_hits: (0..crate::runtime::MAX_RULES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            pool_requests: (0..crate::runtime::MAX_POOLS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            pool_queue_timeouts: (0..crate::runtime::MAX_POOLS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            backend_requests: (0..crate::runtime::MAX_BACKENDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl WorkerStats {
    /// Adds `n` to a counter. Only the owning worker may call this (single writer).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        let slot = &self.counters[c as usize];
        slot.store(
            slot.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Counts `n` drops for `reason`. Owning worker only (or the stopping thread, once the
    /// worker has left its loop).
    #[inline]
    pub fn drop(&self, reason: DropReason, n: u64) {
        let slot = &self.drops[reason as usize];
        slot.store(
            slot.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets a gauge (e.g. connections per state). Owning worker only.
    #[inline]
    pub fn set(&self, c: Counter, v: u64) {
        self.counters[c as usize].store(v, Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Ordering::Relaxed)
    }

    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Ordering::Relaxed)
    }

    pub fn total_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped(*r)).sum()
    }

    /// A JSON object of every counter and drop reason.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for c in Counter::ALL {
            m.insert(c.name().into(), self.get(*c).into());
        }
        let mut d = serde_json::Map::new();
        for r in DropReason::ALL {
            d.insert(r.name().into(), self.dropped(*r).into());
        }
        m.insert("drops".into(), d.into());
        m.insert("drops_total".into(), self.total_drops().into());
        m.into()
    }
}

/// Sums several workers' counters (for the totals line).
pub fn total_json(all: &[&WorkerStats]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for c in Counter::ALL {
        m.insert(
            c.name().into(),
            all.iter().map(|s| s.get(*c)).sum::<u64>().into(),
        );
    }
    let mut d = serde_json::Map::new();
    for r in DropReason::ALL {
        d.insert(
            r.name().into(),
            all.iter().map(|s| s.dropped(*r)).sum::<u64>().into(),
        );
    }
    m.insert("drops".into(), d.into());
    m.insert(
        "drops_total".into(),
        all.iter().map(|s| s.total_drops()).sum::<u64>().into(),
    );
    let (mut setup, mut ttfb) = ([0u64; hist::BUCKETS], [0u64; hist::BUCKETS]);
    for s in all {
        s.setup_us.add_into(&mut setup);
        s.ttfb_us.add_into(&mut ttfb);
    }
    m.insert(
        "latency_us".into(),
        serde_json::json!({ "setup": hist::summary(&setup), "ttfb": hist::summary(&ttfb) }),
    );
    m.into()
}

/// Per-rule hits and per-pool requests and queues, summed over the cores' `stats`, for
/// the rules and pools of `rt`; `queue_len` holds the requests waiting per pool slot
/// (counters live in stable slots, so a rule or pool keeps its counts across config
/// changes that keep its name).
pub fn routing_json(
    stats: &[WorkerStats],
    queue_len: &[AtomicU32],
    rt: &crate::runtime::Runtime,
) -> (serde_json::Value, serde_json::Value) {
    let sum = |f: &dyn Fn(&WorkerStats) -> &AtomicU64| -> u64 {
        stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    };
    let rules: Vec<_> = rt
        .config
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let slot = rt.rule_slot[i];
            let action = match (&r.pool, &r.action) {
                (Some(p), _) => format!("pool {p}"),
                (None, Some(rules::config::RuleAction::Deny { .. })) => "deny".into(),
                (None, Some(rules::config::RuleAction::Redirect { .. })) => "redirect".into(),
                (None, Some(rules::config::RuleAction::Respond { .. })) => "respond".into(),
                (None, None) => String::new(),
            };
            serde_json::json!({
                "name": crate::runtime::rule_key(&rt.config, i),
                "action": action,
                "hits": sum(&|s| &s.rule_hits[slot]),
            })
        })
        .collect();
    let pools: Vec<_> = rt
        .config
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let slot = rt.pool_slot[i];
            serde_json::json!({
                "name": p.name,
                "requests": sum(&|s| &s.pool_requests[slot]),
                "queued": queue_len[slot].load(Ordering::Relaxed),
                "queue_timeouts": sum(&|s| &s.pool_queue_timeouts[slot]),
            })
        })
        .collect();
    (rules.into(), pools.into())
}
