//! The Environment Abstraction Layer: init from arguments, lcores, launch, clock.
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{DpdkError, Result};
use crate::ffi;

static EAL_UP: AtomicBool = AtomicBool::new(false);

/// A running EAL. There is at most one per process; dropping it calls
/// `rte_eal_cleanup`, so drop every port, ring, mempool and mbuf first.
pub struct Eal {
    // rte_eal_init keeps pointers into argv (it rewrites it in place): keep it alive.
    _argv_storage: Vec<CString>,
    _argv: Vec<*mut c_char>,
    /// `/run/dpdk/<file-prefix>` when we are the primary process: DPDK leaves it behind
    /// after `rte_eal_cleanup`, so the owner removes it.
    runtime_dir: Option<std::path::PathBuf>,
}

type LaunchFn = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn launch_trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<LaunchFn> leaked by `Eal::launch` for exactly this call;
    // DPDK calls the function once, so ownership is taken back exactly once.
    let f: Box<LaunchFn> = unsafe { Box::from_raw(arg.cast::<LaunchFn>()) };
    f()
}

impl Eal {
    /// Initialises DPDK with `args` (argv[0] is added). Fails if an EAL already runs.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal> {
        if EAL_UP.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::new(
                "rte_eal_init (already initialised)",
                libc::EALREADY,
            ));
        }
        let mut storage = vec![CString::new("webswitch").expect("no NUL")];
        for a in args {
            storage.push(
                CString::new(a.as_ref())
                    .map_err(|_| DpdkError::new("EAL argument with NUL byte", libc::EINVAL))?,
            );
        }
        let mut argv: Vec<*mut c_char> =
            storage.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        argv.push(std::ptr::null_mut());
        // SAFETY: argv holds argc valid NUL-terminated strings plus a terminating NULL,
        // and both the strings and the array outlive the EAL (they live in `Eal`).
        let rc = unsafe { ffi::rte_eal_init((argv.len() - 1) as c_int, argv.as_mut_ptr()) };
        if rc < 0 {
            EAL_UP.store(false, Ordering::SeqCst);
            return Err(DpdkError::from_rte_errno("rte_eal_init"));
        }
        // SAFETY: valid after a successful rte_eal_init; returns a static C string.
        let dir = unsafe { std::ffi::CStr::from_ptr(ffi::rte_eal_get_runtime_dir()) };
        // SAFETY: no preconditions after init.
        let primary = unsafe { ffi::rte_eal_process_type() } == ffi::RTE_PROC_PRIMARY;
        let runtime_dir =
            primary.then(|| std::path::PathBuf::from(dir.to_string_lossy().into_owned()));
        Ok(Eal {
            _argv_storage: storage,
            _argv: argv,
            runtime_dir,
        })
    }

    /// The lcore the calling thread runs on (`u32::MAX` on a non-EAL thread).
    pub fn current_lcore(&self) -> u32 {
        // SAFETY: reads a thread-local; no preconditions.
        unsafe { ffi::ws_lcore_id() }
    }

    pub fn main_lcore(&self) -> u32 {
        // SAFETY: valid after rte_eal_init, which `self` proves.
        unsafe { ffi::rte_get_main_lcore() }
    }

    /// Whether `lcore` was given to the EAL (e.g. by `--lcores`).
    pub fn lcore_enabled(&self, lcore: u32) -> bool {
        // SAFETY: any lcore id is accepted; out-of-range ids return false.
        unsafe { ffi::rte_lcore_is_enabled(lcore) != 0 }
    }

    /// The CPU an lcore is pinned to, if it maps to exactly one.
    pub fn lcore_cpu(&self, lcore: u32) -> Option<u32> {
        // SAFETY: any lcore id is accepted; returns -1 when unknown.
        let cpu = unsafe { ffi::rte_lcore_to_cpu_id(lcore as c_int) };
        (cpu >= 0).then_some(cpu as u32)
    }

    /// Runs `f` on worker lcore `lcore` (not the main one). The lcore must be idle.
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<()>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        let boxed: Box<LaunchFn> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed).cast::<c_void>();
        // SAFETY: the trampoline takes ownership of `arg` when DPDK calls it; on failure
        // DPDK never calls it, so we take the box back below.
        let rc = unsafe { ffi::rte_eal_remote_launch(Some(launch_trampoline), arg, lcore) };
        if rc < 0 {
            // SAFETY: the launch failed, so `arg` was not consumed; reclaim it once.
            drop(unsafe { Box::from_raw(arg.cast::<LaunchFn>()) });
            return Err(DpdkError::new(
                format!("rte_eal_remote_launch(lcore {lcore})"),
                rc,
            ));
        }
        Ok(())
    }

    /// Waits for the function launched on `lcore` and returns its result.
    pub fn wait(&self, lcore: u32) -> i32 {
        // SAFETY: any lcore id is accepted; returns 0 if nothing runs there.
        unsafe { ffi::rte_eal_wait_lcore(lcore) }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: every lcore function was waited for by the owner before dropping the EAL
        // (Eal::wait), and DPDK objects hold no borrow of `self`.
        unsafe {
            ffi::rte_eal_mp_wait_lcore();
            ffi::rte_eal_cleanup();
        }
        if let Some(dir) = self.runtime_dir.take() {
            // Only the directory of our own prefix, and only as its primary process.
            let _ = std::fs::remove_dir_all(dir);
        }
        EAL_UP.store(false, Ordering::SeqCst);
    }
}

/// The time-stamp counter (cycles since an arbitrary origin).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the TSC; no preconditions.
    unsafe { ffi::ws_rdtsc() }
}

/// TSC frequency in Hz as measured by the EAL (valid after init).
pub fn tsc_hz() -> u64 {
    // SAFETY: no preconditions; returns 0 before EAL init.
    unsafe { ffi::rte_get_tsc_hz() }
}

/// A spin-wait hint (x86 `pause`).
#[inline]
pub fn pause() {
    // SAFETY: executes a pause instruction; no preconditions.
    unsafe { ffi::ws_pause() }
}

/// Sets the calling thread's timer slack: how late the kernel may wake it from a sleep
/// (50 µs by default, which would stretch a poll loop's 8 µs sleep to about 60). False if
/// the kernel refused.
pub fn set_timer_slack_ns(ns: u64) -> bool {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) == 0 }
}

/// Whether the calling process may run on `cpu` (checked before asking the EAL for it,
/// so a config naming a missing CPU gets a clear error instead of an EAL panic).
pub fn cpu_available(cpu: u32) -> bool {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return false;
        }
        (cpu as usize) < libc::CPU_SETSIZE as usize && libc::CPU_ISSET(cpu as usize, &set)
    }
}
