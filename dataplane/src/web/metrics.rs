//! `/metrics`: the Prometheus text exposition, encoded by `prometheus-client` from a
//! [`Collector`] that reads the per-core counters at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::State;
use crate::hist::{self, BUCKETS};
use crate::stats::{Counter, DropReason, WorkerStats};
use crate::worker::Shared;

/// Histogram bucket bounds in seconds (10 µs .. 10 s).
pub const LE_SECONDS: &[f64] = &[
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;
type PickHist = fn(&WorkerStats) -> &hist::Histogram;

/// Reads everything once per scrape.
struct SwitchCollector {
    shared: std::sync::Arc<Shared>,
}

impl std::fmt::Debug for SwitchCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SwitchCollector")
    }
}

fn core(i: usize) -> Labels {
    vec![("core", i.to_string())]
}

fn counter_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter_f64_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// `(le seconds, count in that bucket)` pairs, `_sum` in seconds and `_count`, from
/// merged log-linear µs buckets; `prometheus-client` makes the counts cumulative and
/// writes the last bound (`f64::MAX`) as `+Inf`. A µs bucket goes to the first `le` at
/// or above its upper bound (so a value is never counted early); `_sum` takes each µs
/// bucket's midpoint.
pub fn to_prometheus(counts: &[u64; BUCKETS]) -> (Vec<(f64, u64)>, f64, u64) {
    let total: u64 = counts.iter().sum();
    let mut sum_us = 0.0;
    let mut per = vec![0u64; LE_SECONDS.len() + 1];
    for (i, c) in counts.iter().enumerate() {
        let lo = if i == 0 {
            0
        } else {
            hist::upper_bound(i - 1) + 1
        };
        let hi = hist::upper_bound(i);
        sum_us += (lo + hi) as f64 / 2.0 * *c as f64;
        let slot = LE_SECONDS
            .iter()
            .position(|le| hi <= (le * 1e6).round() as u64)
            .unwrap_or(LE_SECONDS.len());
        per[slot] += c;
    }
    let buckets = LE_SECONDS
        .iter()
        .copied()
        .chain(std::iter::once(f64::MAX))
        .zip(per)
        .collect();
    (buckets, sum_us / 1e6, total)
}

impl Collector for SwitchCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.shared;
        let per_core = |c: Counter| -> Vec<(Labels, u64)> {
            s.stats
                .iter()
                .enumerate()
                .map(|(i, w)| (core(i), w.get(c)))
                .collect()
        };
        let simple: &[(&str, &str, Counter)] = &[
            (
                "webswitch_rx_packets",
                "Packets received, per worker core.",
                Counter::RxPackets,
            ),
            (
                "webswitch_tx_packets",
                "Packets sent, per worker core.",
                Counter::TxPackets,
            ),
            (
                "webswitch_rx_bytes",
                "Bytes received, per worker core.",
                Counter::RxBytes,
            ),
            (
                "webswitch_tx_bytes",
                "Bytes sent, per worker core.",
                Counter::TxBytes,
            ),
            (
                "webswitch_connections_accepted",
                "Client connections accepted (handshake completed).",
                Counter::ConnsAccepted,
            ),
            (
                "webswitch_connections_closed",
                "Client connections closed.",
                Counter::ConnsClosed,
            ),
            (
                "webswitch_requests_routed",
                "Requests routed to a backend.",
                Counter::RequestsRouted,
            ),
            (
                "webswitch_backend_connects",
                "Connections opened to backends.",
                Counter::BackendConnects,
            ),
            (
                "webswitch_backend_connect_failures",
                "Backend connections that failed.",
                Counter::BackendConnectFailures,
            ),
            (
                "webswitch_head_timeouts",
                "Connections whose request head did not arrive in time.",
                Counter::HeadTimeouts,
            ),
            (
                "webswitch_syn_cookies_sent",
                "SYN-ACKs sent with a SYN cookie.",
                Counter::SynCookiesSent,
            ),
            ("webswitch_rst_sent", "TCP resets sent.", Counter::RstSent),
            (
                "webswitch_health_probes_sent",
                "Active health probes sent.",
                Counter::HealthProbesSent,
            ),
            (
                "webswitch_health_changes",
                "Backend health state changes.",
                Counter::HealthChanges,
            ),
            (
                "webswitch_access_log_dropped",
                "Access log records dropped (queue full).",
                Counter::AccessLogDropped,
            ),
            (
                "webswitch_retries",
                "Requests sent to another backend after a failed connect or a reset before any response byte.",
                Counter::Retries,
            ),
            (
                "webswitch_requests_queued",
                "Requests that waited in a pool queue (every backend at max_connections).",
                Counter::RequestsQueued,
            ),
            (
                "webswitch_queue_timeouts",
                "Queued requests answered 503 after the pool's queue_timeout_ms.",
                Counter::QueueTimeouts,
            ),
            (
                "webswitch_queue_full",
                "Requests answered 503 because their pool's queue was full.",
                Counter::QueueFull,
            ),
            (
                "webswitch_xff_inserted",
                "Request heads given X-Forwarded-For and X-Forwarded-Proto.",
                Counter::XffInserted,
            ),
            (
                "webswitch_xff_removed",
                "Client-supplied X-Forwarded-For/-Proto lines removed.",
                Counter::XffRemoved,
            ),
            (
                "webswitch_proxy_headers_sent",
                "PROXY protocol headers sent to backends.",
                Counter::ProxyHeadersSent,
            ),
            (
                "webswitch_rule_answers",
                "Requests answered by a rule's deny, redirect or respond action.",
                Counter::RuleAnswers,
            ),
            (
                "webswitch_presplice_rounds",
                "Presplice re-splices: a keep-alive connection's next request routed on its own.",
                Counter::PrespliceRounds,
            ),
            (
                "webswitch_presplice_fallbacks",
                "Connections upgraded (101) and left opaque: no request framing after.",
                Counter::PrespliceFallbacks,
            ),
            (
                "webswitch_presplice_held",
                "Segments trimmed because their bytes belong to a later request (held for its round).",
                Counter::PrespliceHeld,
            ),
            (
                "webswitch_presplice_hold_refused",
                "Bytes of a later request not held for want of room (the client retransmits them).",
                Counter::PrespliceHoldRefused,
            ),
            (
                "webswitch_presplice_aborts",
                "Connections reset because their messages could not be framed (no guessing).",
                Counter::PrespliceAborts,
            ),
            (
                "webswitch_tcp_carried_unverified",
                "Spliced data segments carried without verifying their checksum (no byte of them read).",
                Counter::TcpCarriedUnverified,
            ),
            (
                "webswitch_handoffs_started",
                "Connections handed off to a backend's agent (VIP mode handoff).",
                Counter::HandoffsStarted,
            ),
            (
                "webswitch_handoff_heads_resent",
                "Held request heads sent to an agent again (the handoff was not confirmed in time).",
                Counter::HandoffHeadsResent,
            ),
            (
                "webswitch_handoff_failures",
                "Handoffs given up (never confirmed by the client's acks): the client got a RST.",
                Counter::HandoffFailures,
            ),
            (
                "webswitch_handoff_no_mac",
                "Handoffs that waited for the backend's MAC (resolved by ARP, as a connect waits).",
                Counter::HandoffNoMac,
            ),
            (
                "webswitch_handed_off_packets_c2b",
                "Client packets forwarded to the agent of a handed-off connection.",
                Counter::HandedOffPacketsC2b,
            ),
            (
                "webswitch_handed_off_bytes_c2b",
                "Client payload bytes forwarded to the agent of a handed-off connection.",
                Counter::HandedOffBytesC2b,
            ),
            (
                "webswitch_handoff_requests_checked",
                "Later requests of handed-off connections checked against the rules.",
                Counter::HandoffRequestsChecked,
            ),
            (
                "webswitch_handoff_releases_sent",
                "Requests to an agent to let a handed-off connection go (a move to another pool's agent).",
                Counter::HandoffReleasesSent,
            ),
            (
                "webswitch_handoff_moves",
                "Handed-off connections moved to another agent for a later request of another pool.",
                Counter::HandoffMoves,
            ),
            (
                "webswitch_handoff_moves_failed",
                "Moves given up (the agent never let the connection go): the connection was reset.",
                Counter::HandoffMovesFailed,
            ),
            (
                "webswitch_handoff_agent_resets",
                "Handed-off connections an agent no longer held (restarted, flow ended): the client was reset.",
                Counter::HandoffAgentResets,
            ),
            (
                "webswitch_handoff_refused",
                "Handed-off connections reset because a later request was refused by the rules (or unframeable).",
                Counter::HandoffRefused,
            ),
            (
                "webswitch_handoff_no_agent",
                "Handoffs answered 503 because no backend of the pool had a live agent.",
                Counter::HandoffNoAgent,
            ),
            (
                "webswitch_handoff_closed_notices",
                "Handed-off connections ended by their agent's termination notice (the backend closed).",
                Counter::HandoffClosedNotices,
            ),
            (
                "webswitch_handoff_requests_sent",
                "Handoff requests sent on an agent's control channel (handoff.transport control), resends included.",
                Counter::HandoffRequestsSent,
            ),
            (
                "webswitch_handoff_acks",
                "Handoff acks taken from agents (control transport): the agent's kernel had the whole head.",
                Counter::HandoffAcks,
            ),
            (
                "webswitch_handoff_held_for_ack",
                "Client segments held until their connection's handoff ack (control transport), then forwarded.",
                Counter::HandoffHeldForAck,
            ),
            (
                "webswitch_handoff_heard_of",
                "Handoffs (control transport) taken as done without their ack: the client acknowledged bytes of the agent's kernel.",
                Counter::HandoffHeardOf,
            ),
            (
                "webswitch_handoff_returns",
                "Moves that took a handed-off connection back to the agent holding it parked (no new handshake).",
                Counter::HandoffReturns,
            ),
            (
                "webswitch_prealloc_prepared",
                "Agents asked at SYN time to prepare a kernel connection for a guessed backend (vips[].preallocate).",
                Counter::PreallocPrepared,
            ),
            (
                "webswitch_prealloc_hits",
                "First requests handed to the backend guessed at SYN time.",
                Counter::PreallocHits,
            ),
            (
                "webswitch_prealloc_cancelled",
                "Guesses at SYN time cancelled with a RST (the request went elsewhere).",
                Counter::PreallocCancelled,
            ),
            (
                "webswitch_prealloc_limited",
                "SYNs not pre-allocated because the core's budget per second was spent.",
                Counter::PreallocLimited,
            ),
            (
                "webswitch_session_cookie_hits",
                "Requests sent to the backend their tagged session cookie names (vips[].session_cookie).",
                Counter::SessionCookieHits,
            ),
            (
                "webswitch_session_cookie_misses",
                "Requests whose tagged session cookie named a backend that could not take them (scheduled as usual).",
                Counter::SessionCookieMisses,
            ),
            (
                "webswitch_agent_beats",
                "Handoff agents' beats (register, heartbeat, leave) received and accepted.",
                Counter::AgentBeats,
            ),
            (
                "webswitch_exception_to_kernel",
                "Frames handed to the host's kernel through a port's exception TAP (ports[].exception).",
                Counter::ExceptionToKernel,
            ),
            (
                "webswitch_exception_from_kernel",
                "Frames the host's kernel sent out through a port's exception TAP.",
                Counter::ExceptionFromKernel,
            ),
            (
                "webswitch_local_node_rx",
                "Frames from the host's kernel to an address of the switch, taken as received (a local backend's segments).",
                Counter::LocalNodeRx,
            ),
            (
                "webswitch_local_node_tx",
                "Frames the switch sent to the host's kernel by its MAC (to a local backend, answers to the kernel).",
                Counter::LocalNodeTx,
            ),
            (
                "webswitch_cluster_beats_sent",
                "Beats sent to the other cluster members (cluster.members).",
                Counter::ClusterBeatsSent,
            ),
            (
                "webswitch_cluster_beats_received",
                "Beats received from cluster members and accepted.",
                Counter::ClusterBeatsReceived,
            ),
            (
                "webswitch_cluster_handed_over",
                "Segments of connections another member owns, handed to it.",
                Counter::ClusterHandedOver,
            ),
            (
                "webswitch_cluster_adopted_steered",
                "Adopted connections whose backend side is steered to the adopting core by tuple (the origin ran another worker count).",
                Counter::ClusterAdoptedSteered,
            ),
            (
                "webswitch_cluster_taken_from_peer",
                "Segments a member handed over to this instance.",
                Counter::ClusterTakenFromPeer,
            ),
            (
                "webswitch_cluster_sync_sent",
                "Splice records (and their forgets) sent to the other cluster members.",
                Counter::ClusterSyncSent,
            ),
            (
                "webswitch_cluster_sync_received",
                "Splice records (and forgets) received from cluster members.",
                Counter::ClusterSyncReceived,
            ),
            (
                "webswitch_cluster_standby_evicted",
                "Standby splice records dropped, oldest first, to make room for newer ones.",
                Counter::ClusterStandbyEvicted,
            ),
            (
                "webswitch_cluster_adopted_unframed",
                "Presplice connections adopted before their response, part of which the gone member had forwarded: carried to their next request.",
                Counter::ClusterAdoptedUnframed,
            ),
            (
                "webswitch_cluster_adopted_caught_up",
                "Adopted connections moved on by a later record of the member they were adopted from.",
                Counter::ClusterAdoptedCaughtUp,
            ),
            (
                "webswitch_cluster_standby_expired",
                "Standby splice records dropped when their lease ended (no copy for tcp.idle_timeout_ms).",
                Counter::ClusterStandbyExpired,
            ),
            (
                "webswitch_cluster_sync_renewed",
                "Splice records sent again to renew their lease (a quarter of it passed with traffic).",
                Counter::ClusterSyncRenewed,
            ),
            (
                "webswitch_cluster_adopted",
                "Spliced connections adopted from a member that is gone.",
                Counter::ClusterAdopted,
            ),
            (
                "webswitch_cluster_adopted_ended",
                "Adopted connections reset when their client sent a request after the one carried.",
                Counter::ClusterAdoptedEnded,
            ),
            (
                "webswitch_cluster_adopted_requests",
                "Later requests of adopted connections checked against the rules and let through.",
                Counter::ClusterAdoptedRequests,
            ),
            (
                "webswitch_cluster_adopted_given_back",
                "Adopted connections let go because the member they were adopted from still held them.",
                Counter::ClusterAdoptedGivenBack,
            ),
            (
                "webswitch_cluster_record_replaced",
                "Records of a gone member's connections replaced by a new connection on the same client tuple.",
                Counter::ClusterRecordReplaced,
            ),
            (
                "webswitch_cluster_passed_to_origin",
                "Segments of a connection another live member spliced, passed to it.",
                Counter::ClusterPassedToOrigin,
            ),
            (
                "webswitch_cluster_addresses_taken",
                "Backend-facing addresses of gone members this instance took over.",
                Counter::ClusterAddressesTaken,
            ),
            (
                "webswitch_cluster_store_lookups",
                "Splice records asked of the state store for segments no flow or record here knew.",
                Counter::ClusterStoreLookups,
            ),
            (
                "webswitch_cluster_store_unanswered",
                "State store lookups given up unanswered (the store unreachable): the tuple taken for a stray.",
                Counter::ClusterStoreUnanswered,
            ),
            (
                "webswitch_warm_opened",
                "Warm backend connections opened.",
                Counter::WarmOpened,
            ),
            (
                "webswitch_warm_attached",
                "Requests spliced onto a warm backend connection (no backend handshake).",
                Counter::WarmAttached,
            ),
            (
                "webswitch_warm_returned",
                "Backend connections given back to their warm pool after an exchange.",
                Counter::WarmReturned,
            ),
            (
                "webswitch_warm_closed",
                "Warm backend connections let go (closed or reset by the backend, or not needed).",
                Counter::WarmClosed,
            ),
        ];
        for (name, help, c) in simple {
            counter_family(&mut enc, name, help, &per_core(*c))?;
        }
        let mut spliced = Vec::new();
        for (i, w) in s.stats.iter().enumerate() {
            spliced.push((
                vec![
                    ("core", i.to_string()),
                    ("direction", "client_to_backend".into()),
                ],
                w.get(Counter::SplicedBytesC2b),
            ));
            spliced.push((
                vec![
                    ("core", i.to_string()),
                    ("direction", "backend_to_client".into()),
                ],
                w.get(Counter::SplicedBytesB2c),
            ));
        }
        counter_family(
            &mut enc,
            "webswitch_spliced_bytes",
            "Payload bytes spliced between client and backend, by direction.",
            &spliced,
        )?;

        let statuses = [
            (Counter::Http400Sent, "400"),
            (Counter::Http408Sent, "408"),
            (Counter::Http431Sent, "431"),
            (Counter::Http501Sent, "501"),
            (Counter::Http502Sent, "502"),
            (Counter::Http503Sent, "503"),
            (Counter::Http505Sent, "505"),
        ];
        let mut http = Vec::new();
        for (i, w) in s.stats.iter().enumerate() {
            for (c, code) in statuses {
                http.push((
                    vec![("core", i.to_string()), ("status", code.to_string())],
                    w.get(c),
                ));
            }
        }
        counter_family(
            &mut enc,
            "webswitch_http_responses_sent",
            "Error responses the switch itself sent, by status.",
            &http,
        )?;

        let mut drops = Vec::new();
        for (i, w) in s.stats.iter().enumerate() {
            for r in DropReason::ALL {
                drops.push((
                    vec![("core", i.to_string()), ("reason", r.name().to_string())],
                    w.dropped(*r),
                ));
            }
        }
        counter_family(
            &mut enc,
            "webswitch_drops",
            "Packets dropped, by reason.",
            &drops,
        )?;

        let hz = s.tsc_hz.max(1) as f64;
        let mut cycles = Vec::new();
        for (i, w) in s.stats.iter().enumerate() {
            cycles.push((
                vec![("core", i.to_string()), ("state", "busy".into())],
                w.get(Counter::BusyCycles) as f64 / hz,
            ));
            cycles.push((
                vec![("core", i.to_string()), ("state", "idle".into())],
                w.get(Counter::IdleCycles) as f64 / hz,
            ));
        }
        counter_f64_family(
            &mut enc,
            "webswitch_core_seconds",
            "Time each worker spent in busy and idle poll iterations (TSC cycles / TSC Hz).",
            &cycles,
        )?;

        let flow_states = [
            (Counter::ConnsReadingHead, "reading_head"),
            (Counter::ConnsQueued, "queued"),
            (Counter::ConnsConnecting, "connecting"),
            (Counter::ConnsSpliced, "spliced"),
            (Counter::ConnsResponding, "responding"),
            (Counter::ConnsHandedOff, "handed_off"),
            (Counter::ConnsClosedLinger, "closed_linger"),
        ];
        let mut flows = Vec::new();
        for (i, w) in s.stats.iter().enumerate() {
            for (c, st) in flow_states {
                flows.push((
                    vec![("core", i.to_string()), ("state", st.to_string())],
                    w.get(c) as i64,
                ));
            }
        }
        gauge_family(
            &mut enc,
            "webswitch_connections",
            "Open client connections by state.",
            &flows,
        )?;
        let warm: Vec<(Labels, i64)> = per_core(Counter::WarmIdle)
            .into_iter()
            .map(|(l, v)| (l, v as i64))
            .collect();
        gauge_family(
            &mut enc,
            "webswitch_warm_idle",
            "Warm backend connections established and unused, per core.",
            &warm,
        )?;
        let live: Vec<(Labels, i64)> = per_core(Counter::FlowsLive)
            .into_iter()
            .map(|(l, v)| (l, v as i64))
            .collect();
        gauge_family(
            &mut enc,
            "webswitch_flows",
            "Entries in each core's flow table.",
            &live,
        )?;

        // Backends.
        let rows = super::backend_rows(s);
        let mut health = Vec::new();
        let mut weight = Vec::new();
        let mut active = Vec::new();
        let mut requests = Vec::new();
        let mut admin = Vec::new();
        let mut agent = Vec::new();
        for b in &rows {
            let name = b["name"].as_str().unwrap_or("").to_string();
            for st in ["up", "down", "unknown"] {
                health.push((
                    vec![("backend", name.clone()), ("state", st.to_string())],
                    i64::from(b["health"] == st),
                ));
            }
            for st in ["ready", "drain", "maint"] {
                admin.push((
                    vec![("backend", name.clone()), ("state", st.to_string())],
                    i64::from(b["admin"] == st),
                ));
            }
            agent.push((
                vec![("backend", name.clone())],
                i64::from(b["agent"] == "alive"),
            ));
            weight.push((
                vec![("backend", name.clone())],
                b["weight"].as_i64().unwrap_or(0),
            ));
            requests.push((
                vec![("backend", name.clone())],
                b["requests"].as_u64().unwrap_or(0),
            ));
            active.push((vec![("backend", name)], b["active"].as_i64().unwrap_or(0)));
        }
        gauge_family(
            &mut enc,
            "webswitch_backend_health",
            "1 for the backend's current health state, 0 for the others.",
            &health,
        )?;
        gauge_family(
            &mut enc,
            "webswitch_backend_admin",
            "1 for the backend's administrative state, 0 for the others.",
            &admin,
        )?;
        gauge_family(
            &mut enc,
            "webswitch_agent_alive",
            "1 while the backend's handoff agent is alive (beats within handoff.agent_timeout_ms), else 0.",
            &agent,
        )?;
        gauge_family(
            &mut enc,
            "webswitch_backend_weight",
            "The backend's scheduling weight.",
            &weight,
        )?;
        counter_family(
            &mut enc,
            "webswitch_backend_requests",
            "Requests sent to the backend (a connection opened, or a warm one, per routed request).",
            &requests,
        )?;
        gauge_family(
            &mut enc,
            "webswitch_backend_active_connections",
            "Connections open to the backend (all cores).",
            &active,
        )?;
        let rt = s.runtime.load_full();
        let pools: Vec<(Labels, i64)> = rt
            .config
            .pools
            .iter()
            .map(|p| (vec![("pool", p.name.clone())], p.backends.len() as i64))
            .collect();
        gauge_family(
            &mut enc,
            "webswitch_pool_backends",
            "Backends configured in each pool.",
            &pools,
        )?;
        let (rules_json, pools_json) = crate::stats::routing_json(&s.stats, &s.queue_len, &rt);
        let rows =
            |v: &serde_json::Value, label: &'static str, field: &str| -> Vec<(Labels, u64)> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        (
                            vec![(label, r["name"].as_str().unwrap_or("").to_string())],
                            r[field].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            };
        counter_family(
            &mut enc,
            "webswitch_rule_hits",
            "Requests each rule decided (by rule name, `#N` for unnamed rules).",
            &rows(&rules_json, "rule", "hits"),
        )?;
        counter_family(
            &mut enc,
            "webswitch_pool_requests",
            "Requests routed to each pool.",
            &rows(&pools_json, "pool", "requests"),
        )?;
        counter_family(
            &mut enc,
            "webswitch_pool_queue_timeouts",
            "Requests that timed out in each pool's queue.",
            &rows(&pools_json, "pool", "queue_timeouts"),
        )?;
        let queued: Vec<(Labels, i64)> = rows(&pools_json, "pool", "queued")
            .into_iter()
            .map(|(l, v)| (l, v as i64))
            .collect();
        gauge_family(
            &mut enc,
            "webswitch_pool_queue_length",
            "Requests waiting in each pool's queue now.",
            &queued,
        )?;
        let conns: Vec<(Labels, i64)> = rt
            .live_backends()
            .filter_map(|(_, b)| {
                let m = b.max_connections?;
                Some((vec![("backend", b.name.clone())], i64::from(m)))
            })
            .collect();
        gauge_family(
            &mut enc,
            "webswitch_backend_max_connections",
            "The backend's max_connections (only backends that have one).",
            &conns,
        )?;

        // Ports (hardware counters).
        let mut imissed = Vec::new();
        let mut nombuf = Vec::new();
        for p in &s.ports {
            if let Ok(st) = p.stats() {
                imissed.push((vec![("port", p.name().to_string())], st.imissed));
                nombuf.push((vec![("port", p.name().to_string())], st.rx_nombuf));
            }
        }
        counter_family(
            &mut enc,
            "webswitch_port_imissed",
            "Packets the NIC dropped because the rx queue was full.",
            &imissed,
        )?;
        counter_family(
            &mut enc,
            "webswitch_port_rx_nombuf",
            "Receive failures for want of an mbuf.",
            &nombuf,
        )?;
        gauge_family(
            &mut enc,
            "webswitch_mbufs_in_use",
            "Mbufs out of the pool (in flight, queued or leaked; not those the exception TAPs' receive rings hold for good).",
            &[(vec![], i64::from(s.pool.in_use().saturating_sub(s.held_by_taps)))],
        )?;
        let snap = crate::setup::snapshot(s);
        let memory: Vec<(Labels, i64)> = [
            "connection_tables",
            "head_buffers",
            "client_counters",
            "mbuf_pool",
        ]
        .iter()
        .map(|part| {
            let v = snap.memory[*part].as_u64().unwrap_or(0);
            (vec![("part", (*part).to_string())], v as i64)
        })
        .collect();
        gauge_family(
            &mut enc,
            "webswitch_memory_bytes",
            "Memory the switch holds, by part (tables fixed at start, head buffers on demand).",
            &memory,
        )?;
        gauge_family(
            &mut enc,
            "webswitch_client_conns_open",
            "Connections counted against tcp.max_conns_per_client (0 without a cap).",
            &[(vec![], snap.client_conns_open as i64)],
        )?;

        // Latency histograms, merged over the cores.
        let hists: [(&str, &str, PickHist); 2] = [
            (
                "webswitch_connection_setup_seconds",
                "Client handshake completed to backend SYN-ACK.",
                |w| &w.setup_us,
            ),
            (
                "webswitch_time_to_first_byte_seconds",
                "Request routed to the backend's first response byte.",
                |w| &w.ttfb_us,
            ),
        ];
        for (name, help, pick) in hists {
            let mut acc = [0u64; BUCKETS];
            for w in &s.stats {
                pick(w).add_into(&mut acc);
            }
            let (buckets, sum, count) = to_prometheus(&acc);
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            m.encode_histogram::<Labels>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

/// The exposition: OpenMetrics text as `prometheus-client` encodes it when
/// `openmetrics`, else the classic Prometheus text format (0.0.4), which names a
/// counter family with its `_total` suffix and has no `# EOF`.
pub fn render(state: &State, openmetrics: bool) -> String {
    let text = render_openmetrics(state);
    if openmetrics {
        text
    } else {
        to_classic(&text)
    }
}

/// OpenMetrics → Prometheus 0.0.4 text: counter families' `# HELP`/`# TYPE` lines take
/// the `_total` name their samples carry; `# EOF` goes.
pub fn to_classic(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64 * counters.len());
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn render_openmetrics(state: &State) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SwitchCollector {
        shared: std::sync::Arc::clone(&state.shared),
    }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "web: encoding metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_with_total() {
        let open = "# HELP a_bytes Bytes.\n# TYPE a_bytes counter\na_bytes_total{core=\"0\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_classic(open),
            "# HELP a_bytes_total Bytes.\n# TYPE a_bytes_total counter\na_bytes_total{core=\"0\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn buckets_are_cumulative_and_in_seconds() {
        let h = hist::Histogram::default();
        for us in [5u64, 40, 40, 700, 20_000, 3_000_000] {
            h.record(us);
        }
        let mut acc = [0u64; BUCKETS];
        h.add_into(&mut acc);
        let (b, sum, count) = to_prometheus(&acc);
        assert_eq!(count, 6);
        assert_eq!(b.last().unwrap().0, f64::MAX);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 6);
        let cumulative = |le: f64| -> u64 { b.iter().filter(|(l, _)| *l <= le).map(|x| x.1).sum() };
        assert_eq!(cumulative(1e-5), 1);
        assert_eq!(cumulative(5e-5), 3);
        assert_eq!(cumulative(1e-3), 4);
        assert_eq!(cumulative(0.025), 5);
        assert_eq!(cumulative(5.0), 6);
        assert!((sum - 3.0208).abs() < 0.8, "sum {sum}");
    }
}
