//! The socket server and client over real Unix sockets in a temp dir, against a mock switch.
mod common;

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Raw, TempDir};
use mgmt::{CallError, Client, Control, CtlError, ErrorCode, Server, MAX_CLIENTS, MAX_LINE};
use serde_json::{json, Value};

fn code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "{reply}");
    reply["error"]["code"].as_str().expect("error code")
}

#[test]
fn several_requests_on_one_connection_echo_their_ids() {
    let dir = TempDir::new("ids");
    let (server, _) = common::start(&dir);
    let mut c = Raw::connect(server.path());
    // All in one write: the server must split lines, answer in order and echo ids verbatim.
    c.send(
        concat!(
            r#"{"id": 1, "cmd": "backends.list"}"#,
            "\n",
            r#"{"id": "abc", "cmd": "status"}"#,
            "\n",
            r#"{"id": null, "cmd": "status"}"#,
            "\n",
            r#"{"cmd": "pools.list"}"#,
            "\n",
            r#"{"id": {"k": [1.5, true]}, "cmd": "log.level", "args": {"level": "debug"}}"#,
            "\n",
            r#"{"id": -7, "cmd": "backends.drain", "args": {"name": "be2"}}"#,
            "\n",
        )
        .as_bytes(),
    );
    let r = c.recv().unwrap();
    assert_eq!((&r["id"], &r["ok"]), (&json!(1), &json!(true)));
    assert_eq!(r["result"]["backends"][0]["name"], "be1");
    let r = c.recv().unwrap();
    assert_eq!(r["id"], "abc");
    assert_eq!(r["result"]["workers"], json!([1, 2]));
    let r = c.recv().unwrap();
    assert_eq!((&r["id"], &r["ok"]), (&Value::Null, &json!(true)));
    let r = c.recv().unwrap();
    assert!(
        r.as_object().unwrap().contains_key("id"),
        "id null even when absent: {r}"
    );
    assert_eq!(r["id"], Value::Null);
    assert_eq!(r["result"]["pools"][0]["name"], "default");
    let r = c.recv().unwrap();
    assert_eq!(r["id"], json!({"k": [1.5, true]}));
    assert_eq!(r["result"], json!({"level": "debug"}));
    let r = c.recv().unwrap();
    assert_eq!(
        (&r["id"], &r["result"]),
        (&json!(-7), &json!({"version": 2}))
    );

    // The reply line itself: id, ok, result, in that order, one line.
    c.send(b"{\"id\":9,\"cmd\":\"test.echo\",\"args\":{\"x\":1}}\n");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&c.stream), &mut line).unwrap();
    assert_eq!(line, "{\"id\":9,\"ok\":true,\"result\":{\"x\":1}}\n");
}

#[test]
fn malformed_lines_get_bad_request_and_the_connection_stays_usable() {
    let dir = TempDir::new("malformed");
    let (server, _) = common::start(&dir);
    let mut c = Raw::connect(server.path());
    let r = c.ask("{nope");
    assert_eq!((code(&r), &r["id"]), ("bad_request", &Value::Null));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{r}"
    );
    let r = c.ask("[1, 2]");
    assert_eq!((code(&r), &r["id"]), ("bad_request", &Value::Null));
    let r = c.ask(r#"{"id": 5}"#);
    assert_eq!((code(&r), &r["id"]), ("bad_request", &json!(5)));
    let r = c.ask(r#"{"id": 6, "cmd": 3}"#);
    assert_eq!((code(&r), &r["id"]), ("bad_request", &json!(6)));
    let r = c.ask(r#"{"id": 7, "cmd": "status", "args": [1]}"#);
    assert_eq!((code(&r), &r["id"]), ("bad_request", &json!(7)));
    // Invalid UTF-8.
    c.send(b"{\"cmd\": \"\xff\"}\n");
    assert_eq!(code(&c.recv().unwrap()), "bad_request");
    // Blank lines are skipped; CRLF line ends are fine.
    c.send(b"\n  \r\n{\"id\": 8, \"cmd\": \"status\"}\r\n");
    let r = c.recv().unwrap();
    assert_eq!((&r["id"], &r["ok"]), (&json!(8), &json!(true)));
}

#[test]
fn unknown_commands_and_command_errors() {
    let dir = TempDir::new("unknown");
    let (server, _) = common::start(&dir);
    let mut c = Raw::connect(server.path());
    let r = c.ask(r#"{"id": "u", "cmd": "frobnicate"}"#);
    assert_eq!((code(&r), &r["id"]), ("unknown_command", &json!("u")));
    assert_eq!(r["error"]["message"], "unknown command `frobnicate`");
    let r = c.ask(r#"{"id": 1, "cmd": "backends.drain", "args": {"name": "nope"}}"#);
    assert_eq!(code(&r), "not_found");
    let r = c.ask(r#"{"id": 2, "cmd": "backends.drain"}"#);
    assert_eq!(
        (code(&r), r["error"]["message"].as_str()),
        ("invalid_argument", Some("missing argument `name`"))
    );
    let r = c
        .ask(r#"{"id": 3, "cmd": "backends.add", "args": {"name": "be1", "address": "10.0.0.1"}}"#);
    assert_eq!(code(&r), "conflict");
    // None of that changed anything.
    let r = c.ask(r#"{"id": 4, "cmd": "rules.show"}"#);
    assert_eq!(r["result"]["version"], 1);
    // A panicking command is an internal error, and the server lives on.
    let r = c.ask(r#"{"id": 5, "cmd": "test.panic"}"#);
    assert_eq!((code(&r), &r["id"]), ("internal", &json!(5)));
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mock panics on purpose"));
    assert_eq!(c.ask(r#"{"id": 6, "cmd": "status"}"#)["ok"], true);
}

#[test]
fn a_line_over_one_mib_is_refused_and_the_connection_closed() {
    let dir = TempDir::new("oversized");
    let (server, _) = common::start(&dir);

    // Exactly MAX_LINE bytes (without the newline) is still fine.
    let head = r#"{"id":1,"cmd":"test.echo","args":{"p":""#;
    let tail = r#""}}"#;
    let pad = "a".repeat(MAX_LINE - head.len() - tail.len());
    let line = format!("{head}{pad}{tail}");
    assert_eq!(line.len(), MAX_LINE);
    let mut c = Raw::connect(server.path());
    let r = c.ask(&line);
    assert_eq!(
        (&r["id"], r["result"]["p"].as_str().map(str::len)),
        (&json!(1), Some(pad.len()))
    );

    // One byte more, newline or not: bad_request, then the server closes.
    for terminated in [true, false] {
        let mut c = Raw::connect(server.path());
        let mut big = format!("{head}{pad}a{tail}").into_bytes();
        if terminated {
            big.push(b'\n');
        } else {
            big.extend_from_slice(&[b' '; 70_000]);
        }
        // The server may close before taking every byte.
        let _ = c.stream.write_all(&big);
        let r = c.recv().expect("an error line before the close");
        assert_eq!((code(&r), &r["id"]), ("bad_request", &Value::Null));
        assert!(
            r["error"]["message"].as_str().unwrap().contains("1048576"),
            "{r}"
        );
        assert!(c.recv().is_none(), "closed after the error");
    }
    // Other clients never noticed.
    assert_eq!(
        Raw::connect(server.path()).ask(r#"{"cmd":"status"}"#)["ok"],
        true
    );
}

#[test]
fn the_socket_is_owner_only_and_nothing_is_left_beside_it() {
    let dir = TempDir::new("mode");
    let (server, _) = common::start(&dir);
    let meta = std::fs::symlink_metadata(server.path()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ws.sock"], "the private bind directory is gone");
}

#[test]
fn a_missing_parent_directory_is_created_owner_only() {
    let dir = TempDir::new("parent");
    let path = dir.join("run/webswitch/ws.sock");
    let server = Server::start(&path, common::Mock::new()).unwrap();
    let mode = std::fs::metadata(dir.join("run/webswitch"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(Raw::connect(&path).ask(r#"{"cmd":"status"}"#)["ok"], true);
    server.stop();
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.join("ws.sock");
    drop(UnixListener::bind(&path).unwrap()); // a crashed server's leftover
    assert!(path.exists());
    let server = Server::start(&path, common::Mock::new()).expect("stale socket replaced");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(Raw::connect(&path).ask(r#"{"cmd":"status"}"#)["ok"], true);
    server.stop();
}

#[test]
fn a_second_server_on_a_live_socket_is_refused() {
    let dir = TempDir::new("live");
    let (first, _) = common::start(&dir);
    let err = Server::start(first.path(), common::Mock::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("another server"), "{err}");
    // The first one is untouched.
    assert_eq!(
        Raw::connect(first.path()).ask(r#"{"cmd":"status"}"#)["ok"],
        true
    );
    assert!(first.path().exists());
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = TempDir::new("notsock");
    let path = dir.join("ws.sock");
    std::fs::write(&path, "precious").unwrap();
    let err = Server::start(&path, common::Mock::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn stop_closes_clients_and_removes_the_socket_file() {
    let dir = TempDir::new("stop");
    let (server, _) = common::start(&dir);
    let path = server.path().to_path_buf();
    let mut idle = Raw::connect(&path);
    assert_eq!(idle.ask(r#"{"cmd":"status"}"#)["ok"], true);
    let t = Instant::now();
    server.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(!path.exists(), "socket file removed");
    assert!(idle.recv().is_none(), "client connection closed");
    assert!(UnixStream::connect(&path).is_err());
    // The path is free for the next server.
    let again = Server::start(&path, common::Mock::new()).unwrap();
    drop(again); // dropping stops too
    assert!(!path.exists());
}

#[test]
fn stop_leaves_a_file_someone_else_put_at_the_path() {
    let dir = TempDir::new("foreign");
    let (server, _) = common::start(&dir);
    let path = server.path().to_path_buf();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "not ours").unwrap();
    server.stop();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not ours");
}

#[test]
fn the_33rd_concurrent_client_is_refused() {
    let dir = TempDir::new("limit");
    let (server, _) = common::start(&dir);
    let mut clients: Vec<Raw> = (0..MAX_CLIENTS)
        .map(|i| {
            let mut c = Raw::connect(server.path());
            // A round trip proves the server admitted it.
            assert_eq!(c.ask(&format!(r#"{{"id":{i},"cmd":"status"}}"#))["id"], i);
            c
        })
        .collect();
    assert_eq!(server.client_count(), MAX_CLIENTS);

    let mut extra = Raw::connect(server.path());
    let r = extra.recv().expect("an error line");
    assert_eq!((code(&r), &r["id"]), ("internal", &Value::Null));
    assert!(
        r["error"]["message"].as_str().unwrap().contains("too many"),
        "{r}"
    );
    assert!(extra.recv().is_none(), "then closed");
    // Through the client API it is a Ctl error.
    let mut c = Client::connect(server.path()).unwrap();
    match c.call("status", Value::Null) {
        Err(CallError::Ctl(e)) => assert_eq!(e.code, ErrorCode::Internal),
        other => panic!("{other:?}"),
    }

    // Everyone admitted still works; one leaving frees a slot.
    assert_eq!(clients[31].ask(r#"{"cmd":"status"}"#)["ok"], true);
    clients.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.client_count() >= MAX_CLIENTS {
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        Raw::connect(server.path()).ask(r#"{"cmd":"status"}"#)["ok"],
        true
    );
}

#[test]
fn clients_are_served_concurrently() {
    let dir = TempDir::new("concurrent");
    let (server, _) = common::start(&dir);
    let path = server.path().to_path_buf();
    // One client waits inside a slow command while the others go on.
    let slow = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(&path).unwrap();
            c.call("test.sleep", json!({"ms": 700})).unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&path).unwrap();
                for j in 0..20 {
                    let r = c.call("test.echo", json!({"i": i, "j": j})).unwrap();
                    assert_eq!(r, json!({"i": i, "j": j}));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "others waited for the slow one"
    );
    assert_eq!(slow.join().unwrap(), json!({"slept_ms": 700}));
}

#[test]
fn a_last_line_without_newline_is_answered() {
    let dir = TempDir::new("eof");
    let (server, _) = common::start(&dir);
    let mut c = Raw::connect(server.path());
    c.send(br#"{"id": 3, "cmd": "status"}"#);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let r = c.recv().unwrap();
    assert_eq!((&r["id"], &r["ok"]), (&json!(3), &json!(true)));
    assert!(c.recv().is_none());
}

#[test]
fn client_calls_errors_and_timeouts() {
    let dir = TempDir::new("client");
    let (server, _) = common::start(&dir);
    let mut c = Client::connect(server.path()).unwrap();
    assert_eq!(c.path(), server.path());
    assert_eq!(
        c.call("backends.drain", json!({"name": "be1"})).unwrap(),
        json!({"version": 2})
    );
    match c.call("backends.drain", json!({"name": "zz"})) {
        Err(CallError::Ctl(e)) => assert_eq!(e, CtlError::not_found("no backend `zz`")),
        other => panic!("{other:?}"),
    }
    match c.call("nope", Value::Null) {
        Err(CallError::Ctl(e)) => assert_eq!(e.code, ErrorCode::UnknownCommand),
        other => panic!("{other:?}"),
    }
    // A call that times out; the next one skips the late answer and gets its own.
    c.set_timeout(Duration::from_millis(100)).unwrap();
    match c.call("test.sleep", json!({"ms": 400})) {
        Err(CallError::Io(e)) => {
            assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    c.set_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        c.call("test.echo", json!({"after": true})).unwrap(),
        json!({"after": true})
    );

    // The server going away mid-session is a protocol error, not a hang.
    server.stop();
    match c.call("status", Value::Null) {
        Err(CallError::Protocol(_)) | Err(CallError::Io(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(Client::connect(&dir.join("ws.sock")).is_err());
}

#[test]
fn a_closure_is_a_control() {
    let dir = TempDir::new("closure");
    let control: Arc<dyn Control> = Arc::new(|cmd: &str, args: &Value| match cmd {
        "ping" => Ok(json!({"pong": args.clone()})),
        other => Err(CtlError::unknown_command(other)),
    });
    let server = Server::start(&dir.join("c.sock"), control).unwrap();
    let mut c = Client::connect(server.path()).unwrap();
    assert_eq!(c.call("ping", Value::Null).unwrap(), json!({"pong": null}));
    assert!(format!("{server:?}").contains("c.sock"));
}
