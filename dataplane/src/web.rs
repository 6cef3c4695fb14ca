//! The read-only HTTP listener (config section `web`): `/metrics` in the Prometheus
//! text format, a live stats page at `/`, and the JSON it polls at `/stats.json`.
//!
//! Everything here runs on threads of its own, never on a worker, and reads the same
//! per-core counters and histograms the management socket reads (relaxed loads of
//! single-writer atomics), so a scrape costs the workers nothing.
//!
//! Layout: a *gate* thread owns the public TCP listener. It admits at most
//! `web.max_connections` connections at once (503 and close beyond that), gives each a
//! read/write timeout of `web.request_timeout_ms`, and reads at most [`MAX_HEAD`] bytes
//! until the blank line that ends a request head (431 and close beyond that; nothing
//! else of the request is interpreted there). The head is then handed, over a private
//! Unix socket, to `tiny_http`, which parses it; one request per connection. Handler
//! threads answer GET/HEAD of `/`, `/metrics`, `/stats.json`; 404 for other paths, 405
//! for other methods, 413 for requests with a body.
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rules::config::WebConfig;
use serde_json::{json, Value};

use crate::worker::Shared;

mod metrics;
mod stats_json;

/// The most a request head may take (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// The longest request target accepted (after the head fits in [`MAX_HEAD`]).
pub const MAX_URL: usize = 2048;
const HANDLER_THREADS: usize = 2;
const PAGE: &str = include_str!("web/page.html");

/// What the handler threads read.
pub(crate) struct State {
    pub shared: Arc<Shared>,
    pub started: Instant,
    /// Rates over the last second, refreshed by the sampler thread.
    pub rates: Mutex<Value>,
}

/// A running listener; [`WebServer::stop`] ends its threads.
pub struct WebServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    server: Arc<tiny_http::Server>,
    inner_path: PathBuf,
    pub addr: SocketAddr,
}

/// Starts the listener when `cfg.listen` is set. `inner_path` is where the private Unix
/// socket between the gate and the HTTP parser goes (a root-only directory).
pub fn start(
    cfg: &WebConfig,
    shared: Arc<Shared>,
    inner_path: &Path,
) -> Result<Option<WebServer>, String> {
    let Some(listen) = cfg.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(listen)
        .map_err(|e| format!("config field `web.listen`: cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("web listener: {e}"))?;
    let _ = std::fs::remove_file(inner_path);
    let server = tiny_http::Server::http_unix(inner_path)
        .map_err(|e| format!("web: cannot serve {}: {e}", inner_path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(inner_path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("web: chmod {}: {e}", inner_path.display()))?;
    }
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let state = Arc::new(State {
        shared,
        started: Instant::now(),
        rates: Mutex::new(Value::Null),
    });
    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| format!("web: spawning {name}: {e}"))
    };
    {
        let (stop, inner) = (Arc::clone(&stop), inner_path.to_path_buf());
        let timeout = Duration::from_millis(cfg.request_timeout_ms);
        let max = cfg.max_connections as usize;
        threads.push(spawn(
            "web-gate",
            Box::new(move || gate(listener, &inner, max, timeout, &stop)),
        )?);
    }
    for i in 0..HANDLER_THREADS {
        let (stop, server, state) = (Arc::clone(&stop), Arc::clone(&server), Arc::clone(&state));
        threads.push(spawn(
            &format!("web-http{i}"),
            Box::new(move || {
                while !stop.load(Ordering::Relaxed) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(rq)) => handle(&state, rq),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "web: receiving a request");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            }),
        )?);
    }
    {
        let (stop, state) = (Arc::clone(&stop), Arc::clone(&state));
        threads.push(spawn(
            "web-sampler",
            Box::new(move || stats_json::sampler(&state, &stop)),
        )?);
    }
    tracing::info!(%addr, "web: stats page at http://{addr}/, metrics at http://{addr}/metrics");
    Ok(Some(WebServer {
        stop,
        threads,
        server,
        inner_path: inner_path.to_path_buf(),
        addr,
    }))
}

impl WebServer {
    /// Stops accepting, joins the threads (they hold the shared state) and removes the
    /// private socket. Connections still open are cut by their timeout.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        drop(self.server);
        let _ = std::fs::remove_file(&self.inner_path);
    }
}

/// Accepts connections, bounded in number, and forwards each one's request head.
fn gate(listener: TcpListener, inner: &Path, max: usize, timeout: Duration, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "web: accept");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(timeout));
        let _ = conn.set_write_timeout(Some(timeout));
        if active.load(Ordering::Relaxed) >= max {
            let _ = conn.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = conn.shutdown(Shutdown::Both);
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (active, inner) = (Arc::clone(&active), inner.to_path_buf());
        let spawned = std::thread::Builder::new()
            .name("web-conn".into())
            .spawn(move || {
                let _ = forward(conn, &inner, timeout);
                active.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            tracing::warn!("web: cannot spawn a connection thread");
        }
    }
}

/// Reads one request head (bounded) and relays it to the parser and the answer back.
fn forward(mut conn: TcpStream, inner: &Path, timeout: Duration) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            conn.write_all(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return conn.shutdown(Shutdown::Both);
        }
    }
    let mut up = UnixStream::connect(inner)?;
    up.set_read_timeout(Some(timeout))?;
    up.set_write_timeout(Some(timeout))?;
    up.write_all(&head)?;
    // One request per connection: the parser sees the end of input after it.
    up.shutdown(Shutdown::Write)?;
    std::io::copy(&mut up, &mut conn)?;
    conn.shutdown(Shutdown::Both)
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

fn handle(state: &State, rq: tiny_http::Request) {
    let url = rq.url().to_string();
    let path = url.split('?').next().unwrap_or("");
    let has_body = rq.body_length().is_some_and(|n| n > 0)
        || rq
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"));
    let method_ok = matches!(
        rq.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    let known = matches!(path, "/" | "/metrics" | "/stats.json");
    let wants_openmetrics = rq.headers().iter().any(|h| {
        h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
    });
    let (status, ctype, body): (u16, &str, String) = if url.len() > MAX_URL {
        (414, "text/plain; charset=utf-8", "URI too long\n".into())
    } else if !known {
        (
            404,
            "text/plain; charset=utf-8",
            "not found: try /, /metrics or /stats.json\n".into(),
        )
    } else if !method_ok {
        (
            405,
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".into(),
        )
    } else if has_body {
        (
            413,
            "text/plain; charset=utf-8",
            "requests must not have a body\n".into(),
        )
    } else {
        match path {
            "/metrics" if wants_openmetrics => (
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics::render(state, true),
            ),
            "/metrics" => (
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(state, false),
            ),
            "/stats.json" => (
                200,
                "application/json",
                stats_json::render(state).to_string(),
            ),
            _ => (200, "text/html; charset=utf-8", PAGE.to_string()),
        }
    };
    let mut resp = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", ctype))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Connection", "close"));
    if status == 405 {
        resp.add_header(header("Allow", "GET, HEAD"));
    }
    if let Err(e) = rq.respond(resp) {
        tracing::debug!(error = %e, "web: writing a response");
    }
}

/// Totals of the shared state that the page and the metrics both need.
pub(crate) fn backend_rows(shared: &Shared) -> Vec<Value> {
    use crate::worker::HEALTH_UNKNOWN;
    let rt = shared.runtime.load_full();
    let now_tsc = dpdk_env::rdtsc();
    rt.live_backends()
        .map(|(i, b)| {
            let health = match shared.health.get(i).map(|h| h.load(Ordering::Relaxed)) {
                Some(HEALTH_UNKNOWN) | None => "unknown",
                Some(1) => "up",
                Some(_) => "down",
            };
            let active: u64 = shared
                .backend_active
                .iter()
                .map(|c| c.get(i).map_or(0, |a| a.load(Ordering::Relaxed)) as u64)
                .sum();
            let requests: u64 = shared
                .stats
                .iter()
                .map(|w| w.backend_requests[i].load(Ordering::Relaxed))
                .sum();
            json!({ "name": b.name, "address": b.address.to_string(), "port": b.port,
                    "weight": b.weight, "admin": rt.admin[i], "health": health,
                    "agent": shared.agents.state_name(i, now_tsc),
                    "active": active, "requests": requests, "pools": rt.pools_of(&b.name) })
        })
        .collect()
}
