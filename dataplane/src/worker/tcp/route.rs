//! Routing a whole request head: the rules pick an action; a pool's action sends the
//! request on to a backend (with the rewrites the pool asks for: X-Forwarded-For, a
//! PROXY header, the normalised target), any other is answered by the switch itself
//! (`respond`, `respond_with`). In presplice mode this is where a round's head is framed
//! and what is pipelined behind it held back.
use std::sync::Arc;

use rules::config::ClientAddress;
use rules::http;
use rules::Action;
use tcpstate::conn::{Emit, Outputs, Response};
use tcpstate::flow::ConnId;
use tcpstate::handoff::watch::RequestWatch;
use tcpstate::presplice::{Buffered, PerRequest};

use super::super::Worker;
use super::TcpCore;
use crate::stats::Counter;

impl Worker {
    /// The head of `id` is whole: decide by the rules, then connect (pool), or answer.
    pub(super) fn route_head(&mut self, id: ConnId, now_ms: u64) {
        /// What the head asks for.
        enum Decision {
            Error(u16),
            Answer(Response),
            Pool(usize),
        }
        /// What the pool wants done to the head (see `rules::forward`).
        enum Rewrite {
            None,
            Xff(rules::forward::XffRewrite),
            Proxy,
            /// Only the request target (the VIP's `forward_normalized_path`).
            Target,
        }
        let rt = Arc::clone(&self.tcp.rt);
        let mut buf = self.tcp.rewrite_bufs.pop().unwrap_or_default();
        self.tcp.meta[id as usize].route_pending = false;
        // Every request of a connection is framed, in both modes: in presplice mode to
        // route each, in splice mode to check each against the rules.
        let sticky = self.tcp.meta[id as usize].sticky;
        // A handoff VIP's connection leaves the switch with its first request: nothing
        // is framed, and its bytes go to the agent as the client sent them.
        let handoff = self
            .tcp
            .flows
            .get(id)
            .is_some_and(|c| rt.config.hands_off(c.client.local_ip));
        let mut pr = (!handoff).then(|| {
            self.tcp.per_request[id as usize]
                .take()
                .or_else(|| self.tcp.pr_pool.pop())
                .unwrap_or_else(PerRequest::new)
        });
        if let Some(pr) = pr.as_mut() {
            pr.set_sticky(sticky);
            // In a cluster, a presplice connection's next request is acknowledged only by
            // its backend: a member that adopts the connection can still route it.
            pr.set_durable(!sticky && !self.tcp.cluster_flows.is_empty());
        }
        // Splice mode after the first request: the connection keeps its pool.
        let kept_pool = (sticky && self.tcp.meta[id as usize].sticky_backend.is_some())
            .then_some(self.tcp.pool_of[id as usize]);
        // Presplice: how the buffered bytes divide between this request and the next.
        let mut framed: Option<Result<Buffered, _>> = None;
        // Handoff: the watch over the connection's later requests, from this head's end.
        let mut watch: Option<Result<RequestWatch, rules::framing::FramingError>> = None;
        let mut rewrite = Rewrite::None;
        let mut replaces = 0;
        let mut retry_ok = false;
        let stats = &self.shared.stats[self.index];
        let decision = {
            let TcpCore {
                flows,
                meta,
                request_lines,
                pools,
                ..
            } = &mut self.tcp;
            let Some(conn) = flows.get(id) else {
                return;
            };
            let bytes = conn.head_bytes();
            let end = http::head_end(bytes).unwrap_or(bytes.len());
            match http::parse_request(&bytes[..end]) {
                Err(e) => Decision::Error(e.status()),
                Ok(req) => {
                    let meta = &mut meta[id as usize];
                    request_lines[id as usize].set(req.method.as_bytes(), req.path.as_bytes());
                    meta.routed_us = 0;
                    let (rule, action) = rt.router.decide(&req);
                    meta.rule = rule.map(|r| r as u16);
                    if let Some(r) = rule {
                        crate::stats::bump(&stats.rule_hits[rt.rule_slot[r]], 1);
                    }
                    match action {
                        Action::Pool(p) => {
                            let p = kept_pool.unwrap_or(*p);
                            meta.pool = Some(p as u16);
                            // RFC 9110 9.2.2: these may be sent again without harm.
                            retry_ok = matches!(
                                req.method,
                                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
                            );
                            if let (Some(pr), Some(h)) = (pr.as_mut(), conn.head.as_ref()) {
                                framed =
                                    Some(pr.start(&req, bytes, h.base(), conn.response_base()));
                            }
                            if let (true, Some(h)) = (handoff, conn.head.as_ref()) {
                                watch = Some(RequestWatch::new(&req, h.base() + end));
                            }
                            let client = (conn.client.remote_ip, conn.client.remote_port);
                            let vip = (conn.client.local_ip, conn.client.local_port);
                            meta.session_backend = super::BackendSlot::of(
                                rt.config
                                    .session_cookie(vip.0)
                                    .filter(|_| handoff)
                                    .and_then(|name| session_backend(&req, name, pools.members(p))),
                            );
                            let pool = &rt.config.pools[p];
                            // Handed off, the backend sees the client's own connection
                            // (its address included), and no byte of it may change.
                            let client_address = if handoff {
                                ClientAddress::None
                            } else {
                                pool.client_address
                            };
                            match client_address {
                                ClientAddress::None => {}
                                ClientAddress::XForwardedFor => {
                                    let r = rules::forward::rewrite_xff(
                                        &bytes[..end],
                                        client.0,
                                        pool.client_xff,
                                        &mut buf,
                                    );
                                    rewrite = Rewrite::Xff(r);
                                    replaces = end;
                                }
                                ClientAddress::ProxyV1 => {
                                    rules::forward::proxy_v1(client, vip, &mut buf);
                                    rewrite = Rewrite::Proxy;
                                }
                                ClientAddress::ProxyV2 => {
                                    rules::forward::proxy_v2(client, vip, &mut buf);
                                    rewrite = Rewrite::Proxy;
                                }
                            }
                            if !handoff
                                && rt.config.forwards_normalized_path(vip.0)
                                && rules::forward::forward_normalized_path(
                                    &bytes[..end],
                                    &mut buf,
                                    &mut replaces,
                                )
                                && matches!(rewrite, Rewrite::None)
                            {
                                rewrite = Rewrite::Target;
                            }
                            Decision::Pool(p)
                        }
                        Action::Respond(b) => Decision::Answer(Response::Shared(Arc::clone(b))),
                        Action::Redirect(r) => {
                            Decision::Answer(Response::Shared(r.response(&req).into()))
                        }
                        Action::Error(status) => Decision::Error(*status),
                    }
                }
            }
        };
        let mut decision = decision;
        if let Some(pr) = pr {
            // Kept while the connection lives (its buffers too); answered requests end
            // the connection, so nothing of it is needed there.
            self.tcp.per_request[id as usize] = Some(pr);
            match framed {
                Some(Ok(Buffered::One)) | None => {}
                Some(Ok(Buffered::More { len })) => {
                    // Pipelined: only this request goes to its backend; the rest waits.
                    if !self.split_head(id, len) {
                        self.stats()
                            .drop(crate::stats::DropReason::HeadBuffersExhausted, 1);
                        decision = Decision::Error(503);
                    }
                }
                // A body the switch cannot frame (e.g. a malformed chunk already
                // buffered): refused before any backend sees it.
                Some(Err(_)) => decision = Decision::Error(400),
            }
        }
        match watch {
            Some(Ok(w)) => {
                let w = match self.tcp.watch_pool.pop() {
                    Some(mut b) => {
                        *b = w;
                        b
                    }
                    None => Box::new(w),
                };
                self.tcp.watches[id as usize] = Some(w);
            }
            // A body the switch could not frame: refused before any backend sees it.
            Some(Err(_)) if matches!(decision, Decision::Pool(_)) => {
                decision = Decision::Error(400)
            }
            _ => {}
        }
        match decision {
            Decision::Error(status) => {
                self.tcp.rewrite_bufs.push(buf);
                self.respond(id, status, now_ms);
            }
            Decision::Answer(response) => {
                self.tcp.rewrite_bufs.push(buf);
                self.stats().add(Counter::RuleAnswers, 1);
                let status = response_status(response.bytes());
                self.respond_with(id, status, response, now_ms);
            }
            Decision::Pool(pool) => {
                match rewrite {
                    Rewrite::None => self.tcp.rewrite_bufs.push(buf),
                    Rewrite::Xff(r) => {
                        self.stats().add(Counter::XffInserted, 1);
                        self.stats().add(Counter::XffRemoved, u64::from(r.removed));
                        if let Some(c) = self.tcp.flows.get_mut(id) {
                            c.set_head_rewrite(buf, replaces);
                        }
                    }
                    Rewrite::Proxy => {
                        self.stats().add(Counter::ProxyHeadersSent, 1);
                        if let Some(c) = self.tcp.flows.get_mut(id) {
                            c.set_head_rewrite(buf, replaces);
                        }
                    }
                    Rewrite::Target => {
                        if let Some(c) = self.tcp.flows.get_mut(id) {
                            c.set_head_rewrite(buf, replaces);
                        }
                    }
                }
                if let Some(c) = self.tcp.flows.get_mut(id) {
                    c.set_retryable(retry_ok);
                }
                self.stats().add(Counter::RequestsRouted, 1);
                crate::stats::bump(&self.stats().pool_requests[rt.pool_slot[pool]], 1);
                self.tcp.meta[id as usize].routed_us = self.now_us();
                if handoff {
                    self.hand_off(id, pool, now_ms);
                } else {
                    self.connect_backend(id, Some(pool), now_ms);
                }
            }
        }
    }

    /// Answers with the switch's error page for `status`.
    pub(super) fn respond(&mut self, id: ConnId, status: u16, now_ms: u64) {
        self.respond_with(
            id,
            status,
            Response::Static(http::error_response(status)),
            now_ms,
        );
    }

    /// Answers with the switch's own response (`status` is what it carries).
    fn respond_with(&mut self, id: ConnId, status: u16, response: Response, now_ms: u64) {
        match status {
            400..=499 => self.stats().add(Counter::Http4xxSent, 1),
            500..=599 => self.stats().add(Counter::Http5xxSent, 1),
            // Redirects and `respond` pages are answers, not errors.
            _ => {}
        }
        self.tcp.meta[id as usize].status = Some(status);
        let by_status = match status {
            400 => Some(Counter::Http400Sent),
            408 => Some(Counter::Http408Sent),
            431 => Some(Counter::Http431Sent),
            501 => Some(Counter::Http501Sent),
            502 => Some(Counter::Http502Sent),
            503 => Some(Counter::Http503Sent),
            505 => Some(Counter::Http505Sent),
            _ => None,
        };
        if let Some(c) = by_status {
            self.stats().add(c, 1);
        }
        let mut out = Outputs::default();
        if let Some(conn) = self.tcp.flows.get_mut(id) {
            conn.respond(response, now_ms, &mut out);
        }
        for e in out.iter() {
            if let Emit::ToClient(s) = e {
                self.send_to_client(id, &s, now_ms);
            }
        }
    }
}

/// The backend a request's session cookie names (`vips[].session_cookie`): the last
/// cookie tagged for one of `members` (browsers send the newest last), if any.
pub(super) fn session_backend(
    req: &http::RequestHead<'_>,
    name: &str,
    members: &[usize],
) -> Option<u16> {
    req.cookies()
        .filter_map(|(n, _)| tcpstate::handoff::cookie::tagged_backend(n, name.as_bytes()))
        .filter(|&b| members.contains(&usize::from(b)))
        .last()
}

/// The status code of a response the switch built ("HTTP/1.1 302 ..." → 302).
fn response_status(r: &[u8]) -> u16 {
    r.get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}
