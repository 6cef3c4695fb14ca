//! Issue 16 points 4 and 6 end to end: session persistence by cookie-name rewriting and
//! switch-back to a parked kernel connection (both paper 002), and a browser-like client
//! whose objects each come from their own pool.
//!
//! The handoff testbed's nginx sets `PHPSESSID` on `/session/login` and echoes the
//! `PHPSESSID` it was sent on any other `/session/...`. The VIP and every agent name
//! `PHPSESSID` as the session cookie: the agent tags the name in responses with its
//! backend's id (`WS00000ND`, N the backend id: be1 is 0), the switch routes a request by
//! the tag of a backend in the pool the URL rules chose, and that backend's agent gives
//! the name back before nginx sees it.
//!
//! Checked with one and with two switch workers:
//! - the login's `Set-Cookie` reaches the client tagged for the backend that answered;
//! - new connections carrying a tag go to that backend, every time, for each of the three
//!   backends, and nginx sees `PHPSESSID` with the value the client holds;
//! - URL rules still apply: the same cookie on `/img/` goes to the images pool (be1), on
//!   `/app/` to the apps pool (be2);
//! - on one keep-alive connection, requests carrying another backend's tag move the
//!   connection there and back, each answered by the backend its cookie names;
//! - a client holding two tags of one pool goes to the newest (the last sent), whose
//!   backend restores only its own tag;
//! - four keep-alive connections each fetching a browser page's objects (images, the
//!   application, session pages) get each from its pool, content checked;
//! - switch-back: a connection moved away and back continues on the kernel connection its
//!   first agent kept parked (`resumed`, no new handshake there), and a request of the
//!   pool it left goes back to a backend that holds it (`handoff_returns`);
//! - termination notices (paper 003): with the default 30 s FIN timeout, every entry is
//!   gone 1.5 s after the last connection closed, ended by its agent's notice;
//! - counters: tags written and restored, none missed, no handoff failure.
use std::time::Duration;

use serde_json::Value;
use webswitch_tests::handoff::*;
use webswitch_tests::{counter, root_or_skip, testbed_lock, Switch, Testbed};

const COOKIE: &str = "PHPSESSID";

fn start(tb: &Testbed, workers: usize) -> (Vec<Switch>, Switch) {
    let agents: Vec<Switch> = BACKENDS
        .iter()
        .map(|&b| {
            let mut c = agent_config(tb, b);
            c["vips"][0]["session_cookie"] = COOKIE.into();
            Switch::start_in(tb, &format!("be{b}"), &format!("{}-agent{b}", tb.name), &c)
        })
        .collect();
    let mut c = switch_config(tb, workers);
    c["vips"][0]["session_cookie"] = COOKIE.into();
    // The default FIN timeout: entries must go by the agents' termination notices.
    c["tcp"]["fin_timeout_ms"] = 30_000.into();
    let sw = Switch::start(tb, &c);
    wait_agents(&sw, &["be1", "be2", "be3"]);
    wait_ready(tb);
    (agents, sw)
}

/// A GET on its own connection with `cookie` (if any): (X-Backend, the Set-Cookie
/// headers, the body's first line).
fn get(tb: &Testbed, path: &str, cookie: Option<&str>) -> (String, Vec<String>, String) {
    let url = format!("http://{}{path}", tb.ip(0, 10));
    let mut args = vec!["curl", "-sS", "--max-time", "10", "-D", "-"];
    let header;
    if let Some(c) = cookie {
        header = format!("Cookie: {c}");
        args.extend_from_slice(&["-H", &header]);
    }
    args.push(&url);
    let out = tb.exec("cli", &args, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let field = |name: &str| -> Vec<String> {
        head.lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .collect()
    };
    let be = field("X-Backend").into_iter().next().unwrap_or_default();
    let first = body.lines().next().unwrap_or("").to_string();
    (be, field("Set-Cookie"), first)
}

/// The tag of backend `n` (1-based name, `be<n>`, id n - 1) on `PHPSESSID`.
fn tagged(n: u8) -> String {
    format!("WS{:06}D", n - 1)
}

fn scenario(tb: &Testbed, workers: usize) {
    let (agents, sw) = start(tb, workers);

    // The login: its Set-Cookie comes back with the answering backend's tag.
    let (be, set, body) = get(tb, "/session/login", None);
    assert_eq!(body, format!("login on {be}"));
    let n: u8 = be.trim_start_matches("be").parse().unwrap();
    assert_eq!(set.len(), 1, "{set:?}");
    let (name, rest) = set[0].split_once('=').unwrap();
    assert_eq!(name, tagged(n), "Set-Cookie {:?} from {be}", set[0]);
    let value = rest.split(';').next().unwrap().to_string();
    assert!(value.starts_with(&format!("{be}-")), "{value}");

    // Back with it on new connections: always that backend, which sees PHPSESSID.
    for _ in 0..4 {
        let (b, _, body) = get(tb, "/session/cart", Some(&format!("{name}={value}")));
        assert_eq!(b, be);
        assert_eq!(body, format!("session on {be}: {COOKIE}={value}"));
    }
    // Every backend of the default pool, by its own tag.
    for n in 1..=3u8 {
        for k in 0..3 {
            let v = format!("v{n}{k}");
            let (b, _, body) = get(tb, "/session/x", Some(&format!("{}={v}", tagged(n))));
            assert_eq!(b, format!("be{n}"));
            assert_eq!(body, format!("session on be{n}: {COOKIE}={v}"));
        }
    }
    // URL rules still apply: be3's tag on the images and apps pools' paths.
    let c3 = format!("{}=x", tagged(3));
    assert_eq!(get(tb, "/img/logo.png", Some(&c3)).0, "be1");
    let (b, _, body) = get(tb, "/app/run", Some(&c3));
    assert_eq!((b.as_str(), body.as_str()), ("be2", "app on be2: /app/run"));
    // Two tags of one pool: the last sent wins, and only its backend's is restored.
    let both = format!("{}=old; a=1; {}=new", tagged(1), tagged(3));
    let (b, _, body) = get(tb, "/session/y", Some(&both));
    assert_eq!(
        (b.as_str(), body.as_str()),
        ("be3", "session on be3: PHPSESSID=new")
    );

    // One keep-alive connection, cookies naming be1, be3, be2, then an image.
    let req = |path: &str, n: u8, v: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: ws\r\nCookie: {}={v}\r\n\r\n",
            tagged(n)
        )
    };
    let reqs = [
        req("/session/k1", 1, "a"),
        req("/session/k2", 3, "b"),
        req("/session/k3", 3, "c"),
        req("/session/k4", 2, "d"),
        req("/img/logo.png", 2, "e"),
        req("/session/k6", 1, "f"),
    ];
    let refs: Vec<&str> = reqs.iter().map(String::as_str).collect();
    let lines = keep_alive(tb, &refs);
    let want = [
        ("be1", "session on be1: PHPSESSID=a"),
        ("be3", "session on be3: PHPSESSID=b"),
        ("be3", "session on be3: PHPSESSID=c"),
        ("be2", "session on be2: PHPSESSID=d"),
        ("be1", ""),
        ("be1", "session on be1: PHPSESSID=f"),
    ];
    assert_eq!(lines.len(), want.len(), "{lines:?}");
    for (line, (be, body)) in lines.iter().zip(want) {
        assert!(
            line.starts_with(&format!("ok HTTP/1.1 200 OK {be}")) && line.contains(body),
            "{line:?}, wanted {be} {body:?}; all: {lines:?}"
        );
    }

    browser(tb);

    // Back to where it was: the default pool's request after an app request goes to a
    // backend that keeps the connection parked: the one that served the first request,
    // or be2 (the app's backend, in the default pool too, which the move just left).
    let plain = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: ws\r\n\r\n");
    let reqs = [plain("/session/n1"), plain("/app/z"), plain("/session/n2")];
    let refs: Vec<&str> = reqs.iter().map(String::as_str).collect();
    let lines = keep_alive(tb, &refs);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let be_of = |l: &str| l.split_whitespace().nth(4).unwrap_or("").to_string();
    assert!(lines[1].ends_with("app on be2: /app/z"), "{lines:?}");
    let back = be_of(&lines[2]);
    assert!(back == be_of(&lines[0]) || back == "be2", "{lines:?}");

    std::thread::sleep(Duration::from_millis(1500));
    let stats = sw.stop();
    let t = &stats["total"];
    eprintln!("switch: {t}");
    assert!(counter(t, &["session_cookie_hits"]) >= 20, "{t}");
    assert_eq!(counter(t, &["handoff_failures"]), 0, "{t}");
    assert_eq!(counter(t, &["handoff_moves_failed"]), 0, "{t}");
    assert!(counter(t, &["handoff_moves"]) >= 3, "{t}");
    assert!(counter(t, &["handoff_returns"]) >= 1, "{t}");
    // Every connection closed by its client ended at its backend, whose agent said so:
    // 1.5 s after the last, with a 30 s FIN timeout, no entry is left.
    assert_eq!(counter(t, &["flows_live"]), 0, "{t}");
    assert!(counter(t, &["handoff_closed_notices"]) >= 20, "{t}");
    assert_eq!(counter(&stats, &["mbufs_in_use"]), 0, "mbufs leaked");
    let mut tagged_total = 0;
    let mut restored = 0;
    let mut resumed = 0;
    for a in agents {
        let s: Value = a.stop();
        eprintln!("agent: {s}");
        tagged_total += counter(&s, &["cookies_tagged"]);
        restored += counter(&s, &["cookies_restored"]);
        resumed += counter(&s, &["resumed"]);
        assert!(counter(&s, &["parked"]) >= counter(&s, &["resumed"]), "{s}");
        assert_eq!(counter(&s, &["cookies_missed"]), 0, "{s}");
        for k in ["drop_bad_option", "drop_bad_syn_ack", "drop_no_mbuf"] {
            assert_eq!(counter(&s, &[k]), 0, "{k}: {s}");
        }
    }
    assert_eq!(tagged_total, 1, "one login");
    assert!(restored >= 20, "restored {restored}");
    // Each browser connection comes back to each of its three backends once, and the
    // keep-alive walks above come back too.
    assert!(resumed >= 12, "resumed {resumed}");
}

/// A browser-like client: four keep-alive connections at once, each fetching a page's
/// objects in its own order (images from the images pool, the application from the apps
/// pool, session pages by the session cookie), each object checked against its pool.
fn browser(tb: &Testbed) {
    let page: Vec<(String, &str)> = vec![
        ("/img/logo.png".into(), "be1"),
        ("/app/main.js".into(), "be2"),
        ("/session/page".into(), "be3"),
        ("/img/photo.jpg".into(), "be1"),
        ("/app/data?x=1".into(), "be2"),
        ("/session/more".into(), "be3"),
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|c| {
                let mut objects = page.clone();
                objects.rotate_left(c);
                let cookie = format!("{}=s{c}", tagged(3));
                scope.spawn(move || {
                    let reqs: Vec<String> = objects
                        .iter()
                        .map(|(p, _)| {
                            format!("GET {p} HTTP/1.1\r\nHost: ws\r\nCookie: {cookie}\r\n\r\n")
                        })
                        .collect();
                    let refs: Vec<&str> = reqs.iter().map(String::as_str).collect();
                    (objects, keep_alive(tb, &refs))
                })
            })
            .collect();
        for h in handles {
            let (objects, lines) = h.join().expect("browser connection");
            assert_eq!(lines.len(), objects.len(), "{lines:?}");
            for (line, (path, be)) in lines.iter().zip(&objects) {
                assert!(
                    line.starts_with(&format!("ok HTTP/1.1 200 OK {be}")),
                    "{path}: {line:?}; all: {lines:?}"
                );
                if let Some(p) = path.strip_prefix("/app/") {
                    assert!(line.ends_with(&format!("app on be2: /app/{p}")), "{line:?}");
                }
            }
        }
    });
}

#[test]
fn handoff_session_cookie_one_worker() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hcoo1", 225);
    scenario(&tb, 1);
}

#[test]
fn handoff_session_cookie_two_workers() {
    if !root_or_skip() {
        return;
    }
    let _l = testbed_lock();
    let tb = Testbed::up_handoff("hcoo2", 226);
    scenario(&tb, 2);
}
