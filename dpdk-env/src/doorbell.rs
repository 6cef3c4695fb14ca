//! Waking an idle poll loop when a frame arrives, on ports whose PMD has no receive
//! interrupt (`net_af_packet` has none in DPDK 22.11).
//!
//! A [`Doorbell`] holds, per kernel interface, an `AF_PACKET` socket of its own that sees
//! the same frames the PMD receives, plus eventfds other threads can ring. The socket's
//! filter drops every frame while the loop is busy (a one-instruction classic BPF
//! program, run before the kernel copies anything), and lets them through only while
//! the loop is [`arm`](Doorbell::arm)ed for a sleep: the first frame then makes the socket
//! readable and ends [`wait`](Doorbell::wait). This is l3fwd-power's enable-interrupt,
//! poll once more, sleep, disable-interrupt, with a socket filter as the interrupt mask.
//! Outgoing frames are ignored (`PACKET_IGNORE_OUTGOING`), so the loop's own transmissions
//! never wake it.
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{DpdkError, Result};

/// `SO_ATTACH_FILTER` and `PACKET_IGNORE_OUTGOING` (linux/asm-generic/socket.h,
/// linux/if_packet.h), not exported by `libc` on every target.
const SO_ATTACH_FILTER: libc::c_int = 26;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// A classic BPF `ret #k`: accept `k` bytes of the frame (0: drop it).
fn ret(k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: 0x06, // BPF_RET | BPF_K
        jt: 0,
        jf: 0,
        k,
    }
}

fn last_os_error(what: &str) -> DpdkError {
    let e = std::io::Error::last_os_error();
    DpdkError::new(what, e.raw_os_error().unwrap_or(libc::EIO))
}

/// An eventfd another thread rings to end a [`Doorbell::wait`] (e.g. a peer core that
/// queued work for a sleeping one).
#[derive(Debug)]
pub struct Ringer {
    fd: OwnedFd,
}

impl Ringer {
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own; a full counter
        // (EAGAIN) means it is rung already.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }
}

/// See the module comment. One per poll loop (thread).
#[derive(Debug)]
pub struct Doorbell {
    epoll: OwnedFd,
    sockets: Vec<OwnedFd>,
    ringers: Vec<Arc<Ringer>>,
    armed: bool,
}

impl Doorbell {
    pub fn new() -> Result<Doorbell> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(last_os_error("epoll_create1"));
        }
        Ok(Doorbell {
            // SAFETY: fd is a fresh descriptor nobody else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            sockets: Vec::new(),
            ringers: Vec::new(),
            armed: false,
        })
    }

    /// Whether anything can ring this doorbell.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty() && self.ringers.is_empty()
    }

    fn watch(&self, fd: RawFd) -> Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are open; ev lives across the call.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0
        {
            return Err(last_os_error("epoll_ctl"));
        }
        Ok(())
    }

    /// Adds a socket that sees the frames arriving on kernel interface `ifname`.
    pub fn add_interface(&mut self, ifname: &str) -> Result<()> {
        self.add_socket(ifname, false)
    }

    /// Adds a socket that sees the frames the kernel sends out of `ifname`: for a TAP
    /// whose far end the loop polls (the kernel's transmissions are its arrivals).
    /// Frames written into the TAP by the loop's own cores wake it too (they are rare
    /// while it sleeps).
    pub fn add_kernel_tap(&mut self, ifname: &str) -> Result<()> {
        self.add_socket(ifname, true)
    }

    fn add_socket(&mut self, ifname: &str, outgoing: bool) -> Result<()> {
        let name = CString::new(ifname)
            .map_err(|_| DpdkError::new("interface name with NUL byte", libc::EINVAL))?;
        // SAFETY: name is a valid C string for the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(last_os_error(&format!("interface {ifname}")));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if fd < 0 {
            return Err(last_os_error("doorbell socket"));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        set_filter(fd, 0)?;
        if !outgoing {
            let one: libc::c_int = 1;
            // SAFETY: an int option read from a live local. Older kernels refuse it: the
            // doorbell then also rings for our own transmissions (spurious wake-ups only).
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_PACKET,
                    PACKET_IGNORE_OUTGOING,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: sll is a live sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(last_os_error(&format!("binding the doorbell to {ifname}")));
        }
        self.watch(fd)?;
        self.sockets.push(sock);
        Ok(())
    }

    /// A new eventfd on this doorbell, for another thread to ring.
    pub fn ringer(&mut self) -> Result<Arc<Ringer>> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(last_os_error("eventfd"));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let r = Arc::new(Ringer { fd });
        self.watch(r.fd.as_raw_fd())?;
        self.ringers.push(Arc::clone(&r));
        Ok(r)
    }

    /// Lets frames ring the doorbell. The caller then polls its queues once more (a frame
    /// that came before this call rang nothing) and, if they were empty, [`wait`]s.
    ///
    /// [`wait`]: Doorbell::wait
    pub fn arm(&mut self) {
        if self.armed {
            return;
        }
        for s in &self.sockets {
            // One byte is enough to be readable; a failure leaves it silent (the wait's
            // timeout still bounds the sleep).
            let _ = set_filter(s.as_raw_fd(), 1);
        }
        self.armed = true;
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Sleeps until a frame arrives on an armed interface, a ringer rings, or `timeout`
    /// passes. Stays armed (a long idle spell is then one `epoll_wait` per timeout); what
    /// woke it is read away so the next wait sleeps again. The caller disarms once it has
    /// work.
    pub fn wait(&mut self, timeout: Duration) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: events is a live array of the length given.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        if n > 0 {
            self.drain();
        }
    }

    /// Silences the sockets and drops what they queued (and resets the ringers).
    pub fn disarm(&mut self) {
        for s in &self.sockets {
            let _ = set_filter(s.as_raw_fd(), 0);
        }
        self.drain();
        self.armed = false;
    }

    /// Reads away what the sockets queued and resets the ringers.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        for s in &self.sockets {
            // SAFETY: reads into a live local buffer of the length given; non-blocking.
            while unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            } >= 0
            {}
        }
        for r in &self.ringers {
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
            unsafe {
                libc::read(r.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8);
            }
        }
    }
}

/// Attaches a filter accepting `snap` bytes of every frame (0: none).
fn set_filter(fd: RawFd, snap: u32) -> Result<()> {
    let mut prog = [ret(snap)];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: fprog points at a live one-instruction program for the call's duration.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last_os_error("SO_ATTACH_FILTER"));
    }
    Ok(())
}
