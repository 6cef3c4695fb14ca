//! Announcing the VIPs, or withdrawing them, through the routing daemon on the appliance
//! (`cluster.announce` / `cluster.withdraw`: commands such as `birdc ... enable vip`).
//!
//! The daemon's own liveness checks cover an instance that dies or freezes (its BGP and
//! BFD run through the switch's exception path, so they fail with the data plane). What
//! only the switch knows is whether it can serve: an instance whose backends are all down
//! or out of service, or that an operator takes out (`cluster.withdraw`, before an
//! upgrade), asks its daemon to withdraw, and to announce again once it can serve. The
//! main thread calls [`Announcer::tick`] every 100 ms; a command runs at most one at a
//! time, bounded by [`HOOK_TIMEOUT`], and a failed one is retried every
//! [`RETRY_AFTER`]. At a clean stop the VIPs are withdrawn before the ports go down.
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rules::config::ClusterConfig;
use serde_json::{json, Value};

use crate::runtime::Admin;
use crate::worker::{Shared, HEALTH_DOWN};

/// A command that has not exited by then is killed and counted as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed command, the next attempt waits this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why the instance serves or not, as `cluster` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    Yes,
    /// No backend is ready (admin state) and not down by its health checks.
    NoBackend,
    /// Just started in a cluster: not yet heard from every member (nor waited
    /// `dead_after_ms`), so its ownership table may not be the others' yet.
    Joining,
    /// An operator withdrew the instance (`cluster.withdraw`).
    Withdrawn,
}

impl Serving {
    fn name(self) -> &'static str {
        match self {
            Serving::Yes => "serving",
            Serving::NoBackend => "no backend ready and up",
            Serving::Joining => "joining the cluster",
            Serving::Withdrawn => "withdrawn by the operator",
        }
    }
}

/// What became of the last command.
#[derive(Debug, Clone)]
struct Outcome {
    announce: bool,
    ok: bool,
    detail: String,
    at: Instant,
}

#[derive(Debug)]
struct State {
    operator_withdrawn: bool,
    /// What the daemon was last told successfully (None: nothing yet).
    told: Option<bool>,
    running: Option<(bool, Child, Instant)>,
    last: Option<Outcome>,
    retry_at: Option<Instant>,
    serving: Serving,
    runs: u64,
    failures: u64,
}

pub struct Announcer {
    announce: Vec<String>,
    withdraw: Vec<String>,
    started: Instant,
    state: Mutex<State>,
}

/// Whether any backend could take a new connection: ready and not down.
pub fn any_backend_serves(shared: &Shared) -> bool {
    let rt = shared.runtime.load();
    (0..rt.routes.len()).any(|b| {
        !rt.removed[b]
            && rt.admin[b] == Admin::Ready
            && shared.health[b].load(Ordering::Relaxed) != HEALTH_DOWN
    })
}

impl Announcer {
    /// None when the config has no commands (the daemon then announces on its own).
    pub fn new(config: &ClusterConfig) -> Option<Announcer> {
        config.has_hooks().then(|| Announcer {
            announce: config.announce.clone(),
            withdraw: config.withdraw.clone(),
            started: Instant::now(),
            state: Mutex::new(State {
                operator_withdrawn: false,
                told: None,
                running: None,
                last: None,
                retry_at: None,
                serving: Serving::NoBackend,
                runs: 0,
                failures: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks at whether the instance can serve and runs the command that tells the
    /// daemon so, when that changed (one command at a time).
    pub fn tick(&self, shared: &Shared) {
        let backend = any_backend_serves(shared);
        let settled = shared
            .cluster
            .as_ref()
            .is_none_or(|c| c.settled(dpdk_env::rdtsc()));
        let mut st = self.lock();
        st.serving = if st.operator_withdrawn {
            Serving::Withdrawn
        } else if !settled {
            Serving::Joining
        } else if backend {
            Serving::Yes
        } else {
            Serving::NoBackend
        };
        self.reap(&mut st);
        let want = st.serving == Serving::Yes;
        let may_retry = st.retry_at.is_none_or(|t| Instant::now() >= t);
        if st.running.is_none() && st.told != Some(want) && may_retry {
            self.spawn(&mut st, want);
        }
    }

    /// Collects a finished (or overdue) command.
    fn reap(&self, st: &mut State) {
        let Some((announce, child, since)) = st.running.as_mut() else {
            return;
        };
        let (announce, since) = (*announce, *since);
        let (ok, detail) = match child.try_wait() {
            Ok(Some(status)) => (status.success(), status.to_string()),
            Ok(None) if since.elapsed() < HOOK_TIMEOUT => return,
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                (false, format!("killed after {HOOK_TIMEOUT:?}"))
            }
            Err(e) => (false, format!("wait: {e}")),
        };
        st.running = None;
        self.finish(st, announce, ok, detail);
    }

    fn finish(&self, st: &mut State, announce: bool, ok: bool, detail: String) {
        let what = if announce { "announce" } else { "withdraw" };
        if ok {
            st.told = Some(announce);
            st.retry_at = None;
            let done = if announce { "announced" } else { "withdrawn" };
            tracing::warn!(
                command = what,
                "cluster: VIPs {done} through the routing daemon"
            );
        } else {
            st.failures += 1;
            st.retry_at = Some(Instant::now() + RETRY_AFTER);
            tracing::error!(command = what, %detail, "cluster: the {what} command failed; retrying");
        }
        st.last = Some(Outcome {
            announce,
            ok,
            detail,
            at: Instant::now(),
        });
    }

    fn command(&self, announce: bool) -> Command {
        let argv = if announce {
            &self.announce
        } else {
            &self.withdraw
        };
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn spawn(&self, st: &mut State, announce: bool) {
        st.runs += 1;
        match self.command(announce).spawn() {
            Ok(child) => st.running = Some((announce, child, Instant::now())),
            Err(e) => self.finish(st, announce, false, format!("cannot run: {e}")),
        }
    }

    /// The operator's `cluster.withdraw` (true) or `cluster.announce` (false).
    pub fn set_withdrawn(&self, withdrawn: bool) {
        self.lock().operator_withdrawn = withdrawn;
    }

    /// At a clean stop, before the ports go down: withdraws at once and waits for the
    /// command (bounded), so the daemon's update still leaves through the data plane.
    pub fn withdraw_now(&self) {
        let mut st = self.lock();
        if let Some((_, mut child, _)) = st.running.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if st.told == Some(false) {
            return;
        }
        st.runs += 1;
        let deadline = Instant::now() + HOOK_TIMEOUT;
        let (ok, detail) = match self.command(false).spawn() {
            Err(e) => (false, format!("cannot run: {e}")),
            Ok(mut child) => loop {
                match child.try_wait() {
                    Ok(Some(status)) => break (status.success(), status.to_string()),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break (false, format!("killed after {HOOK_TIMEOUT:?}"));
                    }
                }
            },
        };
        self.finish(&mut st, false, ok, detail);
    }

    /// What `cluster` reports.
    pub fn json(&self) -> Value {
        let st = self.lock();
        let ms = |t: Instant| t.saturating_duration_since(self.started).as_millis() as u64;
        json!({
            "serving": st.serving == Serving::Yes,
            "reason": st.serving.name(),
            "announced": st.told,
            "operator_withdrawn": st.operator_withdrawn,
            "command_running": st.running.as_ref().map(|(a, _, _)| if *a { "announce" } else { "withdraw" }),
            "commands_run": st.runs,
            "commands_failed": st.failures,
            "last": st.last.as_ref().map(|o| json!({
                "command": if o.announce { "announce" } else { "withdraw" },
                "ok": o.ok, "detail": o.detail, "at_ms": ms(o.at),
            })),
        })
    }
}
