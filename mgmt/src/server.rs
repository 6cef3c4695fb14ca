//! The socket server: an accept thread and one thread per client connection.
//!
//! # Owner-only without a window
//!
//! `bind(2)` creates the socket file with the process umask applied, and std's
//! `UnixListener::bind` listens at once, so a `chmod` after it would leave a short window in
//! which another user could connect (and changing the umask is process-wide, racy with other
//! threads, and needs `unsafe` here). Instead [`Server::start`] binds inside a fresh private
//! directory (mode 0700, created next to the final path, so on the same file system), sets the
//! socket file to 0600 there, and only then `rename(2)`s it onto the final path, which is
//! atomic. Before the rename nobody else can reach the socket (the directory is closed to
//! them); after it, it is already 0600. The private directory is removed again.
use std::collections::HashMap;
use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::CtlError;
use crate::protocol::{encode_reply, parse_request, MAX_LINE};
use crate::Control;

/// The most client connections served at once; the next one gets an error line and is closed.
pub const MAX_CLIENTS: usize = 32;

/// How often the accept thread looks for new connections and for a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// How long a client read blocks before the thread looks for a stop.
const READ_POLL: Duration = Duration::from_millis(250);
/// A client that does not read its replies for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Server::stop`] waits for its threads.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// A running management socket server. Dropping it stops it, like [`Server::stop`].
pub struct Server {
    path: PathBuf,
    running: Option<Running>,
}

struct Running {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    /// (device, inode) of the socket file this server created, so that stopping never
    /// removes a file someone else put at the path since.
    ident: (u64, u64),
}

struct Shared {
    control: Arc<dyn Control>,
    stop: AtomicBool,
    clients: Mutex<Clients>,
}

#[derive(Default)]
struct Clients {
    next_id: u64,
    /// A clone of each live connection, to shut it down on stop.
    live: HashMap<u64, UnixStream>,
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn clients(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Server {
    /// Binds the Unix socket at `path` owner-only (0600, see the module docs) and serves it
    /// on its own threads.
    ///
    /// A missing parent directory is created (mode 0700). An existing socket file at `path`
    /// that nobody answers on is replaced; if a server answers there, this fails with
    /// `AddrInUse`; a file at `path` that is not a socket is left alone and this fails with
    /// `AlreadyExists`.
    pub fn start(path: &Path, control: Arc<dyn Control>) -> io::Result<Server> {
        if path.file_name().is_none() {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("socket path {} has no file name", path.display()),
            ));
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&parent)?;
        }
        clear_stale(path)?;
        let listener = bind_owner_only(&parent, path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display()))
        })?;
        let shared = Arc::new(Shared {
            control,
            stop: AtomicBool::new(false),
            clients: Mutex::new(Clients::default()),
        });
        let sh = shared.clone();
        let started = fs::symlink_metadata(path).and_then(|meta| {
            listener.set_nonblocking(true)?;
            let accept = thread::Builder::new()
                .name("mgmt-accept".into())
                .spawn(move || accept_loop(&sh, listener))?;
            Ok((meta, accept))
        });
        let (meta, accept) = match started {
            Ok(x) => x,
            Err(e) => {
                let _ = fs::remove_file(path);
                return Err(e);
            }
        };
        tracing::info!(socket = %path.display(), "management socket listening");
        Ok(Server {
            path: path.to_path_buf(),
            running: Some(Running {
                shared,
                accept,
                ident: (meta.dev(), meta.ino()),
            }),
        })
    }

    /// The socket's path, as given to [`Server::start`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many client connections are being served now.
    pub fn client_count(&self) -> usize {
        self.running
            .as_ref()
            .map_or(0, |r| r.shared.clients().live.len())
    }

    /// Stops accepting, closes every client connection, removes the socket file (if it is
    /// still the one this server created) and joins the threads, waiting at most about two
    /// seconds (a thread stuck in a [`Control::handle`] call is left to finish on its own).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(run) = self.running.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_WAIT;
        run.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == run.ident {
                let _ = fs::remove_file(&self.path);
            }
        }
        // The accept thread owns the listener: once it is joined, nothing new gets in.
        join_until(run.accept, deadline);
        let (live, threads) = {
            let mut c = run.shared.clients();
            (
                c.live.drain().map(|(_, s)| s).collect::<Vec<_>>(),
                std::mem::take(&mut c.threads),
            )
        };
        for s in &live {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in threads {
            join_until(t, deadline);
        }
        tracing::info!(socket = %self.path.display(), "management socket stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.path)
            .field("running", &self.running.is_some())
            .finish()
    }
}

fn join_until(h: JoinHandle<()>, deadline: Instant) {
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if h.is_finished() {
        let _ = h.join();
    }
}

/// Removes a socket file nobody answers on; refuses a live one and anything not a socket.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            ErrorKind::AddrInUse,
            format!("another server is answering on {}", path.display()),
        )),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "replacing a stale socket file");
            match fs::remove_file(path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether {} is stale: {e}", path.display()),
        )),
    }
}

/// Binds in a private 0700 directory beside `path`, makes the socket 0600, renames it onto
/// `path`. See the module docs.
fn bind_owner_only(parent: &Path, path: &Path) -> io::Result<UnixListener> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = parent.join(format!(
        ".wsm{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // Fails if the name exists: never reuse a directory someone else may have prepared.
    DirBuilder::new().mode(0o700).create(&dir)?;
    let tmp = dir.join("s");
    let result = (|| {
        fs::set_permissions(&dir, Permissions::from_mode(0o700))?;
        let listener = UnixListener::bind(&tmp)?;
        fs::set_permissions(&tmp, Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&dir);
    result
}

fn accept_loop(shared: &Arc<Shared>, listener: UnixListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => admit(shared, stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // E.g. out of file descriptors: keep serving the clients we have.
                tracing::warn!(error = %e, "management socket accept failed");
                thread::sleep(ACCEPT_POLL * 5);
            }
        }
    }
}

fn admit(shared: &Arc<Shared>, stream: UnixStream) {
    let _ = stream.set_nonblocking(false);
    let mut clients = shared.clients();
    clients.threads.retain(|h| !h.is_finished());
    if clients.live.len() >= MAX_CLIENTS {
        drop(clients);
        tracing::warn!(
            limit = MAX_CLIENTS,
            "management socket full; refusing a client"
        );
        refuse(stream);
        return;
    }
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let id = clients.next_id;
    clients.next_id += 1;
    clients.live.insert(id, clone);
    let sh = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("mgmt-client-{id}"))
        .spawn(move || {
            serve(&sh, stream);
            sh.clients().live.remove(&id);
        });
    match spawned {
        Ok(h) => clients.threads.push(h),
        Err(e) => {
            clients.live.remove(&id);
            tracing::warn!(error = %e, "cannot start a management client thread");
        }
    }
}

fn refuse(mut stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let err = CtlError::internal(format!(
        "too many management clients (limit {MAX_CLIENTS}); try again later"
    ));
    let _ = stream.write_all(&encode_reply(&Value::Null, &Err(err)));
    let _ = stream.shutdown(Shutdown::Both);
}

/// Serves one connection until EOF, an I/O error, an oversized line or a stop.
fn serve(shared: &Shared, mut stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(READ_POLL));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // Bytes at the front of `buf` known to hold no newline.
    let mut scanned = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(nl) = buf[scanned..].iter().position(|&b| b == b'\n') {
            let nl = scanned + nl;
            if nl > MAX_LINE {
                oversized(&mut stream);
                return;
            }
            if shared.stop.load(Ordering::SeqCst) || !answer(shared, &mut stream, &buf[..nl]) {
                return;
            }
            buf.drain(..=nl);
            scanned = 0;
        }
        scanned = buf.len();
        if buf.len() > MAX_LINE {
            oversized(&mut stream);
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                // A last line without its newline still gets an answer.
                if !shared.stop.load(Ordering::SeqCst) {
                    answer(shared, &mut stream, &buf);
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

fn oversized(stream: &mut UnixStream) {
    let err = CtlError::bad_request(format!(
        "request line longer than {MAX_LINE} bytes; closing the connection"
    ));
    let _ = stream.write_all(&encode_reply(&Value::Null, &Err(err)));
    let _ = stream.shutdown(Shutdown::Both);
}

/// Answers one line (blank lines are skipped). False when the reply could not be written.
fn answer(shared: &Shared, stream: &mut UnixStream, line: &[u8]) -> bool {
    if line.iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let (id, outcome) = match parse_request(line) {
        Ok(req) => {
            let outcome = dispatch(&*shared.control, &req.cmd, &req.args);
            (req.id, outcome)
        }
        Err((id, e)) => (id, Err(e)),
    };
    stream.write_all(&encode_reply(&id, &outcome)).is_ok()
}

fn dispatch(control: &dyn Control, cmd: &str, args: &Value) -> Result<Value, CtlError> {
    let outcome = match panic::catch_unwind(AssertUnwindSafe(|| control.handle(cmd, args))) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            tracing::error!(cmd, panic = %what, "management command panicked");
            Err(CtlError::internal(format!(
                "command `{cmd}` failed: {what}"
            )))
        }
    };
    match &outcome {
        Ok(_) => tracing::debug!(cmd, "management command done"),
        Err(e) => {
            tracing::debug!(cmd, code = %e.code, message = %e.message, "management command failed")
        }
    }
    outcome
}
