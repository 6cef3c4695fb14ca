//! The handoff agent's poll loop (`"role": "agent"`): one lcore between the backend
//! host's NIC and its kernel's TAP.
//!
//! Everything that is not a handed-off connection is bridged untouched both ways (ARP,
//! the host's own services, the switch's health checks and spliced connections), so the
//! host works as if the agent were a wire. A segment for a VIP that carries the handoff
//! option starts a flow: the agent replays the client's handshake into the kernel
//! (`tcpstate::handoff::agent` decides every step), holds the client's segments until
//! the kernel's SYN-ACK is in, then translates every segment both ways. The kernel's
//! answers leave through the NIC as the kernel addressed them (to its gateway toward
//! the client): they never return through the switch.
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dpdk_env::{rdtsc, Mbuf, MbufBatch, Mempool, Port};
use hashbrown::HashMap;
use rules::config::AgentConfig;
use tcpstate::flow::FlowKey;
use tcpstate::handoff::agent::{
    AgentFlow, AgentState, ClientVerdict, FlowAddrs, KernelVerdict, ReleaseVerdict, SegFlags,
};
use tcpstate::handoff::control::{self, Control};
use tcpstate::handoff::cookie;
use tcpstate::handoff::option;
use tcpstate::handoff::responses::ResponseTally;
use tcpstate::splice::{translate, Translation};
use tcpstate::wire::{
    ethertype, ip_proto, EthernetFrame, Ipv4Packet, Ipv4Repr, MacAddr, SeqNumber, TcpPacket,
    TcpRepr,
};

use crate::backoff::{Backoff, Idle};

mod channel;

const ETH: usize = 14;
/// Client segments held per flow while the kernel's handshake is under way; more are
/// dropped (the client sends them again).
const MAX_HELD: usize = 8;
/// Flows are checked for expiry this often.
const EXPIRE_EVERY_MS: u64 = 100;

macro_rules! agent_counters {
    ($($variant:ident => $text:literal),* $(,)?) => {
        /// What the agent counts (drops included, each with its reason).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum AgentCounter { $($variant),* }
        impl AgentCounter {
            pub const ALL: &'static [AgentCounter] = &[$(AgentCounter::$variant),*];
            pub const fn name(self) -> &'static str {
                match self { $(AgentCounter::$variant => $text),* }
            }
        }
    };
}

agent_counters! {
    NicRx => "nic_rx_packets",
    KernelRx => "kernel_rx_packets",
    BridgedToKernel => "bridged_to_kernel",
    BridgedToNic => "bridged_to_nic",
    HandoffsTaken => "handoffs_taken",
    HandoffsEstablished => "handoffs_established",
    ToKernelPackets => "to_kernel_packets",
    ToKernelBytes => "to_kernel_bytes",
    ToClientPackets => "to_client_packets",
    ToClientBytes => "to_client_bytes",
    Held => "held",
    FlowsExpired => "flows_expired",
    FlowsReplaced => "flows_replaced",
    SynResent => "syn_resent",
    KernelOrphansReset => "kernel_orphans_reset",
    Decapsulated => "decapsulated",
    Released => "released",
    Parked => "parked",
    Resumed => "resumed",
    ParkedReset => "parked_reset",
    ResumeRefused => "resume_refused",
    ClosedNotified => "closed_notified",
    Prepared => "prepared",
    PreparedExpired => "prepared_expired",
    ResetsNotified => "resets_notified",
    HandoffRequests => "handoff_requests",
    HandoffAcksSent => "handoff_acks_sent",
    CookiesTagged => "cookies_tagged",
    CookiesRestored => "cookies_restored",
    CookiesMissed => "cookies_missed",
    ReleaseBusy => "release_busy",
    FlowsLive => "flows_live",
    DropHeldFull => "drop_held_full",
    DropNoFlow => "drop_no_flow",
    DropBadOption => "drop_bad_option",
    DropTableFull => "drop_table_full",
    DropBadTcp => "drop_bad_tcp",
    DropUnexpected => "drop_unexpected",
    DropBadRequest => "drop_bad_request",
    DropChannelStranger => "drop_channel_stranger",
    DropBadSynAck => "drop_bad_syn_ack",
    DropTxFull => "drop_tx_full",
    DropNoMbuf => "drop_no_mbuf",
    BusyCycles => "busy_cycles",
    IdleCycles => "idle_cycles",
    BeatsSent => "beats_sent",
    BeatSendFailures => "beat_send_failures",
}

/// The agent's counters: written by its one lcore, read by the main thread; the beat
/// counters are the main thread's (it sends the beats). One writer per counter.
pub struct AgentStats([AtomicU64; AgentCounter::ALL.len()]);

impl Default for AgentStats {
    fn default() -> Self {
        AgentStats(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl AgentStats {
    /// Adds `n` to a counter; only its one writer may (see the type's doc).
    #[inline]
    pub(crate) fn add(&self, c: AgentCounter, n: u64) {
        let a = &self.0[c as usize];
        a.store(a.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    fn set(&self, c: AgentCounter, v: u64) {
        self.0[c as usize].store(v, Ordering::Relaxed);
    }
    pub fn get(&self, c: AgentCounter) -> u64 {
        self.0[c as usize].load(Ordering::Relaxed)
    }
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for c in AgentCounter::ALL {
            m.insert(c.name().into(), self.get(*c).into());
        }
        serde_json::Value::Object(m)
    }
}

/// What the agent's lcore and the main thread share.
pub struct AgentShared {
    pub nic: Port,
    pub kernel: Port,
    pub pool: Arc<Mempool>,
    pub config: AgentConfig,
    pub stop: AtomicBool,
    pub stats: AgentStats,
    pub tsc_hz: u64,
}

/// A handed-off connection at the agent: its state and the client segments held
/// while the kernel's handshake is under way.
struct Entry {
    flow: AgentFlow,
    held: Vec<Mbuf>,
    /// The client's latest raw window field (for the ACK that completes the replay).
    client_window: u16,
    /// Where the termination notice goes: the switch's MAC, as the head came from it
    /// (None through a tunnel, whose sender is a router), until it was sent.
    notify: Option<MacAddr>,
    /// Control transport: where the handoff ack goes, and whether it went.
    control: Option<channel::ChannelPeer>,
    /// The kernel's complete responses: a `Release` is granted only between them.
    responses: ResponseTally,
}

struct Agent {
    s: Arc<AgentShared>,
    flows: HashMap<FlowKey, Entry>,
    to_nic: MbufBatch,
    to_kernel: MbufBatch,
    nic_mac: MacAddr,
    kernel_mac: MacAddr,
    ms_per_tsc: f64,
    /// Parked kernel connections to reset, gathered by `expire` (kept: no allocation
    /// per sweep).
    rst_scratch: Vec<(FlowKey, SeqNumber, bool)>,
}

/// The fields of a TCP/IPv4 frame the agent looks at.
#[derive(Clone, Copy)]
struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    /// Where the IP header ends and the IP datagram ends (frame offsets).
    ip_end: usize,
    tcp_at: usize,
    seg: SegFlags,
    window: u16,
}

/// Which way a translated segment goes.
#[derive(Clone, Copy)]
enum Toward {
    Client,
    Kernel,
}

fn look(frame: &[u8]) -> Option<Seen> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[ETH..]).ok()?;
    if ip.protocol() != ip_proto::TCP || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let tcp_at = ETH + usize::from(ip.header_len());
    let ip_end = ETH + usize::from(ip.total_len());
    let tcp = TcpPacket::new_checked(&frame[tcp_at..ip_end]).ok()?;
    let seg = SegFlags::from_packet(&tcp);
    Some(Seen {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        sport: tcp.src_port(),
        dport: tcp.dst_port(),
        ip_end,
        tcp_at,
        seg,
        window: tcp.window_len(),
    })
}

/// Runs the agent's loop until `stop` is set.
pub fn run(s: Arc<AgentShared>) {
    let mut agent = Agent {
        nic_mac: MacAddr(s.nic.mac()),
        kernel_mac: MacAddr(s.kernel.mac()),
        flows: HashMap::with_capacity(s.config.max_flows.min(1 << 16)),
        to_nic: MbufBatch::default(),
        to_kernel: MbufBatch::default(),
        ms_per_tsc: 1000.0 / s.tsc_hz.max(1) as f64,
        rst_scratch: Vec::new(),
        s,
    };
    agent.run();
}

impl Agent {
    fn now_ms(&self) -> u64 {
        (rdtsc() as f64 * self.ms_per_tsc) as u64
    }

    fn run(&mut self) {
        // No short-sleep window (each wake-up costs CPU the backend host needs); a 1 µs
        // timer slack so the backoff's short sleeps are as long as asked.
        let mut backoff = Backoff::new(self.s.config.idle_max_sleep_us, 0, 30);
        dpdk_env::set_timer_slack_ns(1000);
        let mut rx = MbufBatch::default();
        let mut next_expire = 0;
        let mut iter: u32 = 0;
        loop {
            iter = iter.wrapping_add(1);
            if iter.is_multiple_of(1024) && self.s.stop.load(Ordering::Relaxed) {
                break;
            }
            let t0 = rdtsc();
            let now_ms = self.now_ms();
            let (n_nic, _) = self.s.nic.rx_burst(0, &mut rx);
            for m in rx.drain() {
                self.on_nic_frame(m, now_ms);
            }
            let (n_kernel, _) = self.s.kernel.rx_burst(0, &mut rx);
            for m in rx.drain() {
                self.on_kernel_frame(m, now_ms);
            }
            self.flush();
            if now_ms >= next_expire {
                next_expire = now_ms + EXPIRE_EVERY_MS;
                self.expire(now_ms);
            }
            let busy = n_nic + n_kernel > 0;
            let stats = &self.s.stats;
            if busy {
                stats.add(AgentCounter::NicRx, n_nic as u64);
                stats.add(AgentCounter::KernelRx, n_kernel as u64);
                stats.add(AgentCounter::BusyCycles, rdtsc() - t0);
                backoff.reset();
            } else {
                match backoff.idle() {
                    Idle::Spin => {}
                    Idle::Pause(n) => (0..n).for_each(|_| dpdk_env::pause()),
                    Idle::Sleep(d) => std::thread::sleep(d),
                }
                stats.add(AgentCounter::IdleCycles, rdtsc() - t0);
            }
        }
        self.flush();
        for (_, e) in self.flows.drain() {
            drop(e.held);
        }
    }

    fn count(&self, c: AgentCounter) {
        self.s.stats.add(c, 1);
    }

    /// Cookie-name rewriting on a translated segment of a flow for `backend`, when its VIP
    /// has a session cookie: tagged toward the client, restored toward the kernel.
    fn rewrite_cookies(&self, m: &mut Mbuf, seen: &Seen, backend: u16, toward: Toward) {
        if seen.seg.payload_len == 0 {
            return;
        }
        let vip = match toward {
            Toward::Client => seen.src,
            Toward::Kernel => seen.dst,
        };
        let Some(name) = self.s.config.session_cookie(vip) else {
            return;
        };
        let payload_at = seen.ip_end - seen.tcp_at - seen.seg.payload_len;
        let tcp = &mut m[seen.tcp_at..seen.ip_end];
        let (r, done) = match toward {
            Toward::Client => (
                cookie::tag_set_cookies(tcp, payload_at, name.as_bytes(), backend),
                AgentCounter::CookiesTagged,
            ),
            Toward::Kernel => (
                cookie::restore_cookies(tcp, payload_at, name.as_bytes(), backend),
                AgentCounter::CookiesRestored,
            ),
        };
        self.s.stats.add(done, u64::from(r.names));
        if r.missed {
            self.count(AgentCounter::CookiesMissed);
        }
    }

    /// A frame from the network: a handed-off flow's (or a new handoff), or the host's.
    fn on_nic_frame(&mut self, m: Mbuf, now_ms: u64) {
        let mut m = match self.on_channel(m, now_ms) {
            Ok(()) => return,
            Err(m) => m,
        };
        let tunnelled = self.tunnelled(&m);
        if let Some(inner) = tunnelled {
            // IP-in-IP or GRE from the switch to a routed backend: the outer headers go here, in
            // userspace (the kernel has no tunnel device, and needs none).
            m.copy_within(0..ETH, inner);
            m.adj(inner);
            self.count(AgentCounter::Decapsulated);
        }
        let Some(seen) = look(&m).filter(|x| self.s.config.is_vip(x.dst, x.dport)) else {
            self.count(AgentCounter::BridgedToKernel);
            self.push_kernel(m);
            return;
        };
        let key = FlowKey {
            remote_ip: seen.src,
            remote_port: seen.sport,
            local_ip: seen.dst,
            local_port: seen.dport,
        };
        let header = seen.ip_end - seen.tcp_at - seen.seg.payload_len;
        if header != 20 && header != 32 {
            // Not the usual shape (no options, or timestamps alone): maybe a control
            // message of the switch's.
            let tcp = TcpPacket::new_unchecked(&m[seen.tcp_at..seen.ip_end]);
            if let Some(Control::Release { requests }) = Control::find(tcp.options()) {
                self.on_release(&m, &seen, key, requests, now_ms);
                return;
            }
        }
        if let Some(e) = self.flows.get_mut(&key) {
            // A segment with the handoff option on a flow we have: the switch sending
            // the head again (our SYN or the kernel's SYN-ACK may be lost: send the SYN
            // again), or a new connection on the same tuple (start afresh).
            let header = seen.ip_end - seen.tcp_at - seen.seg.payload_len;
            let record = if header > 32 || e.flow.state() != AgentState::Established {
                let tcp = TcpPacket::new_unchecked(&m[seen.tcp_at..seen.ip_end]);
                option::find(tcp.options()).ok().flatten()
            } else {
                None
            };
            match record {
                Some(r) if e.flow.state() == AgentState::Parked => {
                    // The switch brings the connection back: continue on the parked kernel
                    // connection, or (not a continuation of it) reset that and start afresh.
                    let ack = seen.seg.ack.unwrap_or(SeqNumber(0));
                    tracing::debug!(?key, seq = seen.seg.seq.0, ack = ack.0, len = seen.seg.payload_len,
                        ends = ?e.flow.stream_ends(), nic = %self.nic_mac, "resume");
                    if e.flow.resume(r, ack, now_ms).is_ok() {
                        e.responses.new_round();
                        self.count(AgentCounter::Resumed);
                    } else {
                        tracing::debug!(?key, seq = seen.seg.seq.0, ack = ack.0,
                            ends = ?e.flow.stream_ends(), "parked flow: not resumable");
                        let rst = e.flow.kernel_rst_seq().map(|seq| rst_repr(&key, seq));
                        self.flows.remove(&key);
                        if let Some(rst) = rst {
                            self.emit_to_kernel(&addrs_of(&key), &rst);
                        }
                        self.count(AgentCounter::ResumeRefused);
                        self.count(AgentCounter::FlowsReplaced);
                        return self.on_nic_frame(m, now_ms);
                    }
                }
                Some(r)
                    if r.client_isn != e.flow.record().client_isn
                        || e.flow.state() == AgentState::Closed =>
                {
                    let old = self.flows.remove(&key);
                    drop(old);
                    self.count(AgentCounter::FlowsReplaced);
                    return self.on_nic_frame(m, now_ms);
                }
                Some(r) if e.flow.state() == AgentState::SynSent => {
                    e.flow.take_head_record(&r);
                    let syn = e.flow.syn();
                    let addrs = addrs_of(&key);
                    self.count(AgentCounter::SynResent);
                    self.emit_to_kernel(&addrs, &syn);
                    // This copy of the head is held like the first (or dropped if full).
                }
                // A head for a flow prepared at SYN time (or a copy of one).
                Some(r) => e.flow.take_head_record(&r),
                None => {}
            }
            let Some(e) = self.flows.get_mut(&key) else {
                return;
            };
            if seen.seg.ack.is_some() {
                e.client_window = seen.window;
            }
            if seen.seg.payload_len > 0 {
                e.responses.on_client_bytes(now_ms);
            }
            match e.flow.on_client(seen.seg, now_ms) {
                ClientVerdict::Hold => {
                    if e.held.len() < MAX_HELD {
                        e.held.push(m);
                        self.count(AgentCounter::Held);
                    } else {
                        self.count(AgentCounter::DropHeldFull);
                    }
                }
                ClientVerdict::Translate => {
                    let t = *e.flow.to_kernel().expect("established");
                    let backend = e.flow.record().backend_id;
                    let ended = e.notify.is_some() && e.flow.ended();
                    self.deliver_to_kernel(m, &seen, &t, backend);
                    if ended {
                        self.notify_ended(&key);
                    }
                }
                ClientVerdict::Drop => self.count(AgentCounter::DropUnexpected),
            }
            return;
        }
        let record = {
            let tcp = TcpPacket::new_unchecked(&m[seen.tcp_at..seen.ip_end]);
            match option::find(tcp.options()) {
                Ok(Some(r)) => Some((r, timestamps_of(tcp.options()))),
                Ok(None) => None,
                Err(_) => {
                    self.count(AgentCounter::DropBadOption);
                    return;
                }
            }
        };
        let Some((record, ts)) = record else {
            // A VIP segment of no flow we know and without the state to start one: a
            // connection this agent no longer holds (it restarted, or the flow ended and
            // expired). The client would wait for its kernel forever: tell the switch,
            // with a RST exactly where the client expects the next byte, which the switch
            // passes on to the client and ends its entry with (a termination notice).
            self.count(AgentCounter::DropNoFlow);
            if let (Some(ack), false) = (seen.seg.ack, seen.seg.syn || seen.seg.rst) {
                let addrs = addrs_of(&key);
                let switch_mac = EthernetFrame::new_unchecked(&m[..]).src_addr();
                self.notify_switch_reset(switch_mac, &addrs, ack);
            }
            return;
        };
        let (Some(ack), false) = (seen.seg.ack, seen.seg.syn || seen.seg.rst) else {
            self.count(AgentCounter::DropBadOption);
            return;
        };
        if self.flows.len() >= self.s.config.max_flows {
            self.count(AgentCounter::DropTableFull);
            return;
        }
        let addrs = FlowAddrs {
            client: (seen.src, seen.sport),
            vip: (seen.dst, seen.dport),
        };
        let switch_isn: SeqNumber = ack - 1;
        let (mut flow, syn) = AgentFlow::start(addrs, record, switch_isn, ts.map(|t| t.0), now_ms);
        let _ = flow.on_client(seen.seg, now_ms);
        self.count(AgentCounter::HandoffsTaken);
        if seen.seg.payload_len == 0 {
            // No request with it: the switch prepared this at SYN time.
            self.count(AgentCounter::Prepared);
        }
        self.emit_to_kernel(&addrs, &syn);
        self.count(AgentCounter::Held);
        // The head is a request the kernel has yet to answer.
        let mut responses = ResponseTally::new();
        responses.on_client_bytes(now_ms);
        let notify = tunnelled
            .is_none()
            .then(|| EthernetFrame::new_unchecked(&m[..]).src_addr());
        self.flows.insert(
            key,
            Entry {
                flow,
                held: vec![m],
                client_window: seen.window,
                notify,
                control: None,
                responses,
            },
        );
    }

    /// The switch asks to move the connection to another agent (`handoff::control`): let
    /// it go if it is idle (its kernel side reset quietly, the flow silent from now on),
    /// and say so, or that it is busy, to the switch.
    /// `requests`: how many the kernel was given in this round (0: not countable).
    fn on_release(&mut self, m: &Mbuf, seen: &Seen, key: FlowKey, requests: u16, now_ms: u64) {
        let Some(ack) = seen.seg.ack else {
            self.count(AgentCounter::DropUnexpected);
            return;
        };
        let addrs = addrs_of(&key);
        let verdict = match self.flows.get_mut(&key) {
            Some(e) => {
                let answered = e.responses.answered(requests, now_ms);
                e.flow.on_release(seen.seg.seq, ack, answered, now_ms)
            }
            // Nothing of it here (expired, or the agent restarted): nothing to silence.
            None => ReleaseVerdict::Released,
        };
        let answer = match verdict {
            ReleaseVerdict::Released => {
                self.count(AgentCounter::Released);
                Control::Released
            }
            ReleaseVerdict::Parked => {
                tracing::debug!(?key, seq = seen.seg.seq.0, ack = ack.0, nic = %self.nic_mac, "parked");
                // The kernel's connection stays open, silent, for the switch to bring
                // the connection back (`AgentFlow::resume`) or for PARK_MS.
                self.count(AgentCounter::Released);
                self.count(AgentCounter::Parked);
                Control::Released
            }
            ReleaseVerdict::Busy => {
                if let Some(e) = self.flows.get(&key) {
                    let (kernel_next, client_next) = e.flow.stream_ends();
                    tracing::debug!(
                        ?key, seq = seen.seg.seq.0, ack = ack.0, kernel_next = kernel_next.0,
                        client_next = client_next.0, state = ?e.flow.state(), nic = %self.nic_mac,
                        requests, complete = e.responses.complete(), "release: busy"
                    );
                }
                self.count(AgentCounter::ReleaseBusy);
                Control::Busy
            }
        };
        let switch_mac = EthernetFrame::new_unchecked(&m[..]).src_addr();
        self.answer_switch(switch_mac, &addrs, answer);
    }

    /// A control message to the switch: a segment VIP -> client sent to the switch's MAC
    /// (it never reaches the client; the switch takes it on its backend port).
    fn answer_switch(&mut self, switch_mac: MacAddr, a: &FlowAddrs, c: Control) {
        self.segment_to_switch(
            switch_mac,
            a,
            SeqNumber(0),
            tcpstate::wire::tcp_flags::ACK,
            Some(c),
        );
    }

    /// Paper 003's termination notice, once per flow: the connection `key` ended at the
    /// backend (both FINs acknowledged, or the kernel's RST), so the switch may free its
    /// entry now. Not through a tunnel (the head's sender there is a router). The caller
    /// checked `ended()` on the entry it had, so the lookup here is once per flow.
    fn notify_ended(&mut self, key: &FlowKey) {
        let Some(e) = self.flows.get_mut(key) else {
            return;
        };
        let Some(switch_mac) = e.notify.take() else {
            return;
        };
        let (kernel_next, _) = e.flow.stream_ends();
        let addrs = addrs_of(key);
        self.count(AgentCounter::ClosedNotified);
        self.segment_to_switch(
            switch_mac,
            &addrs,
            kernel_next,
            tcpstate::wire::tcp_flags::ACK,
            Some(Control::Closed),
        );
    }

    /// A termination notice: a RST VIP -> client at `seq` sent to the switch's MAC; the
    /// switch checks it against its entry, resets the client and forgets the connection.
    fn notify_switch_reset(&mut self, switch_mac: MacAddr, a: &FlowAddrs, seq: SeqNumber) {
        self.count(AgentCounter::ResetsNotified);
        self.segment_to_switch(switch_mac, a, seq, tcpstate::wire::tcp_flags::RST, None);
    }

    /// A segment of the client's tuple from the VIP, addressed to the switch's MAC.
    fn segment_to_switch(
        &mut self,
        switch_mac: MacAddr,
        a: &FlowAddrs,
        seq: SeqNumber,
        flags: u8,
        c: Option<Control>,
    ) {
        let tcp_len = 20 + if c.is_some() { control::LEN } else { 0 };
        let Some(mut out) = self.ipv4_frame(switch_mac, a.vip.0, a.client.0, tcp_len) else {
            return;
        };
        let buf = &mut out[..];
        let mut tcp = TcpPacket::new_unchecked(&mut buf[ETH + 20..ETH + 20 + tcp_len]);
        tcp.set_src_port(a.vip.1);
        tcp.set_dst_port(a.client.1);
        tcp.set_seq_number(seq);
        tcp.set_header_len(tcp_len as u8);
        tcp.set_flags(flags);
        if let Some(c) = c {
            c.emit(tcp.options_mut());
        }
        tcp.fill_checksum(a.vip.0, a.client.0);
        self.push_nic(out);
    }

    /// The encapsulation's length if `m` is IP-in-IP or GRE carrying a segment for a VIP.
    fn tunnelled(&self, m: &[u8]) -> Option<usize> {
        let proto = *m.get(ETH + 9)?;
        if m.len() < ETH + 40
            || m[12..14] != [0x08, 0x00]
            || (proto != ip_proto::IPIP && proto != ip_proto::GRE)
        {
            return None;
        }
        let (_, at) = tcpstate::wire::tunnel::inner_offset(&m[ETH..])?;
        let inner = Ipv4Packet::new_checked(&m[ETH + at..]).ok()?;
        let dst_port = inner
            .payload()
            .get(2..4)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))?;
        (inner.protocol() == ip_proto::TCP && self.s.config.is_vip(inner.dst_addr(), dst_port))
            .then_some(at)
    }

    /// A frame from the kernel: a handed-off flow's answer, or the host's own traffic.
    fn on_kernel_frame(&mut self, mut m: Mbuf, now_ms: u64) {
        let Some(seen) = look(&m).filter(|x| self.s.config.is_vip(x.src, x.sport)) else {
            self.count(AgentCounter::BridgedToNic);
            self.push_nic(m);
            return;
        };
        let key = FlowKey {
            remote_ip: seen.dst,
            remote_port: seen.dport,
            local_ip: seen.src,
            local_port: seen.sport,
        };
        let Some(e) = self.flows.get_mut(&key) else {
            // A kernel connection on the VIP that no flow translates any more (the agent
            // restarted, or the flow ended): its segments are in the kernel's sequence
            // space and mean nothing to the client. Reset it in the kernel, quietly.
            if let (Some(ack), false) = (seen.seg.ack, seen.seg.rst) {
                let rst = rst_repr(&key, ack);
                let addrs = addrs_of(&key);
                self.emit_to_kernel(&addrs, &rst);
            }
            self.count(AgentCounter::KernelOrphansReset);
            return;
        };
        if let Some(peer) = channel::kernel_took_head(e, &seen) {
            self.send_handoff_ack(&key, &peer);
        }
        let Some(e) = self.flows.get_mut(&key) else {
            return;
        };
        match e.flow.on_kernel(seen.seg, now_ms) {
            KernelVerdict::ResendAck => {
                let repr = {
                    let tcp = TcpPacket::new_unchecked(&m[seen.tcp_at..seen.ip_end]);
                    TcpRepr::parse(&tcp, seen.src, seen.dst, false)
                };
                let was_established = e.flow.state() == AgentState::Established;
                let reply = repr.ok().and_then(|r| {
                    let ack = e.flow.on_kernel_syn_ack(&r, e.client_window, now_ms).ok()?;
                    e.responses.start(r.seq_number);
                    Some(ack)
                });
                let Some(ack) = reply else {
                    self.count(AgentCounter::DropBadSynAck);
                    return;
                };
                let held = std::mem::take(&mut e.held);
                let t = *e.flow.to_kernel().expect("established");
                let backend = e.flow.record().backend_id;
                let addrs = addrs_of(&key);
                if !was_established {
                    self.count(AgentCounter::HandoffsEstablished);
                }
                self.emit_to_kernel(&addrs, &ack);
                for h in held {
                    match look(&h) {
                        Some(hs) => self.deliver_to_kernel(h, &hs, &t, backend),
                        None => self.count(AgentCounter::DropBadTcp),
                    }
                }
                drop(m);
            }
            KernelVerdict::Translate => {
                let t = *e.flow.to_client().expect("established");
                let ended = e.notify.is_some() && e.flow.ended();
                let end = seen.ip_end;
                if m.len() > end {
                    m.set_len(end);
                }
                let backend = e.flow.record().backend_id;
                // Framed in the kernel's own sequence space, before translation.
                e.responses
                    .on_kernel(seen.seg.seq, &m[end - seen.seg.payload_len..end], now_ms);
                if translate(&mut m[ETH..end], &t).is_err() {
                    self.count(AgentCounter::DropBadTcp);
                    return;
                }
                self.rewrite_cookies(&mut m, &seen, backend, Toward::Client);
                self.s.stats.add(AgentCounter::ToClientPackets, 1);
                self.s
                    .stats
                    .add(AgentCounter::ToClientBytes, seen.seg.payload_len as u64);
                self.push_nic(m);
                if ended {
                    self.notify_ended(&key);
                }
            }
            KernelVerdict::ResetKernel => {
                tracing::debug!(?key, seq = seen.seg.seq.0, len = seen.seg.payload_len,
                    fin = seen.seg.fin, ack = ?seen.seg.ack, rcv_nxt = ?e.flow.kernel_rst_seq(),
                    ends = ?e.flow.stream_ends(), nic = %self.nic_mac, "parked: the kernel sent");
                if let Some(seq) = e.flow.kernel_rst_seq() {
                    let rst = rst_repr(&key, seq);
                    self.emit_to_kernel(&addrs_of(&key), &rst);
                }
                self.count(AgentCounter::ParkedReset);
            }
            KernelVerdict::Drop => self.count(AgentCounter::DropUnexpected),
        }
    }

    /// A client segment of a flow for `backend` into the kernel, masqueraded (and the
    /// session cookie's name restored).
    fn deliver_to_kernel(&mut self, mut m: Mbuf, seen: &Seen, t: &Translation, backend: u16) {
        let end = seen.ip_end;
        if m.len() > end {
            m.set_len(end);
        }
        if translate(&mut m[ETH..end], t).is_err() {
            self.count(AgentCounter::DropBadTcp);
            return;
        }
        self.rewrite_cookies(&mut m, seen, backend, Toward::Kernel);
        let mut eth = EthernetFrame::new_unchecked(&mut m[..]);
        eth.set_dst_addr(self.kernel_mac);
        self.s.stats.add(AgentCounter::ToKernelPackets, 1);
        self.s
            .stats
            .add(AgentCounter::ToKernelBytes, seen.seg.payload_len as u64);
        self.push_kernel(m);
    }

    /// A zeroed frame to `dst_mac` with its Ethernet and IPv4 headers written (`src` to
    /// `dst`, TCP, `tcp_len` bytes after), padded to the minimum frame; `None` (counted)
    /// when no mbuf is left.
    fn ipv4_frame(
        &mut self,
        dst_mac: MacAddr,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        tcp_len: usize,
    ) -> Option<Mbuf> {
        let total = ETH + 20 + tcp_len;
        let Some(mut m) = Mbuf::alloc(&self.s.pool) else {
            self.count(AgentCounter::DropNoMbuf);
            return None;
        };
        let Some(buf) = m.append(total.max(60)) else {
            self.count(AgentCounter::DropNoMbuf);
            return None;
        };
        buf.fill(0);
        {
            let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
            eth.set_dst_addr(dst_mac);
            eth.set_src_addr(self.nic_mac);
            eth.set_ethertype(ethertype::IPV4);
        }
        Ipv4Repr {
            src,
            dst,
            protocol: ip_proto::TCP,
            payload_len: tcp_len,
            ttl: 64,
        }
        .emit(&mut Ipv4Packet::new_unchecked(
            &mut buf[ETH..ETH + 20 + tcp_len],
        ));
        Some(m)
    }

    /// A segment the agent makes itself (the replayed SYN, the ACK of the kernel's
    /// SYN-ACK), from the client to the VIP.
    fn emit_to_kernel(&mut self, a: &FlowAddrs, repr: &TcpRepr) {
        let tcp_len = repr.buffer_len();
        let Some(mut m) = self.ipv4_frame(self.kernel_mac, a.client.0, a.vip.0, tcp_len) else {
            return;
        };
        let buf = &mut m[..];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut buf[ETH + 20..ETH + 20 + tcp_len]),
            a.client.0,
            a.vip.0,
            &[],
        );
        self.push_kernel(m);
    }

    fn push_kernel(&mut self, m: Mbuf) {
        if let Err(m) = self.to_kernel.push(m) {
            self.flush();
            if self.to_kernel.push(m).is_err() {
                self.count(AgentCounter::DropTxFull);
            }
        }
    }

    fn push_nic(&mut self, m: Mbuf) {
        if let Err(m) = self.to_nic.push(m) {
            self.flush();
            if self.to_nic.push(m).is_err() {
                self.count(AgentCounter::DropTxFull);
            }
        }
    }

    /// Sends what is staged; what a full queue refuses is dropped and counted (the
    /// senders' TCP recovers it, as from a full NIC ring).
    fn flush(&mut self) {
        for (port, batch) in [
            (&self.s.nic, &mut self.to_nic),
            (&self.s.kernel, &mut self.to_kernel),
        ] {
            port.tx_burst(0, batch);
            if !batch.is_empty() {
                let n = batch.len() as u64;
                for m in batch.drain() {
                    drop(m);
                }
                self.s.stats.add(AgentCounter::DropTxFull, n);
            }
        }
    }

    fn expire(&mut self, now_ms: u64) {
        let before = self.flows.len();
        // A parked kernel connection that was never brought back is reset, quietly.
        let mut resets = std::mem::take(&mut self.rst_scratch);
        self.flows.retain(|key, e| {
            let gone = e.flow.expired(now_ms);
            if gone && e.flow.holds_kernel_connection() {
                if let Some(seq) = e.flow.kernel_rst_seq() {
                    resets.push((*key, seq, e.flow.state() == AgentState::Parked));
                }
            }
            !gone
        });
        for (key, seq, parked) in resets.drain(..) {
            let rst = rst_repr(&key, seq);
            self.emit_to_kernel(&addrs_of(&key), &rst);
            self.count(if parked {
                AgentCounter::ParkedReset
            } else {
                AgentCounter::PreparedExpired
            });
        }
        self.rst_scratch = resets;
        let gone = before - self.flows.len();
        if gone > 0 {
            self.s.stats.add(AgentCounter::FlowsExpired, gone as u64);
        }
        self.s
            .stats
            .set(AgentCounter::FlowsLive, self.flows.len() as u64);
    }
}

/// The two ends of a flow keyed client (remote) to VIP (local).
fn addrs_of(key: &FlowKey) -> FlowAddrs {
    FlowAddrs {
        client: (key.remote_ip, key.remote_port),
        vip: (key.local_ip, key.local_port),
    }
}

/// A bare RST from the client's side of `key` at `seq` (into the kernel: exact, so taken).
fn rst_repr(key: &FlowKey, seq: SeqNumber) -> TcpRepr {
    TcpRepr {
        src_port: key.remote_port,
        dst_port: key.local_port,
        seq_number: seq,
        ack_number: None,
        flags: tcpstate::wire::tcp_flags::RST,
        window_len: 0,
        max_seg_size: None,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
        payload_len: 0,
    }
}

/// The TS option's (TSval, TSecr), if the options area has one.
fn timestamps_of(options: &[u8]) -> Option<(u32, u32)> {
    tcpstate::wire::TcpOptionIter::new(options).find_map(|o| match o {
        Ok(tcpstate::wire::TcpOption::Timestamps { tsval, tsecr }) => Some((tsval, tsecr)),
        _ => None,
    })
}
