//! Which worker core owns a flow.
//!
//! Both directions of a connection must be handled by one core, which keeps its flow
//! entry in a table no other core touches. The client side is steered by a hash of the
//! client's 4-tuple; the backend side cannot be hashed the same way (its tuple is a
//! different one), so the switch picks the local port of each backend connection such
//! that `local_port % cores` names the owning core. Virtual devices without RSS deliver
//! packets to whichever queue the kernel chose; the receiving worker computes the owner
//! with these functions and passes the packet on when it is not itself.
use std::net::Ipv4Addr;

/// The core owning a client-side flow (client address/port → VIP address/port).
#[inline]
pub fn client_flow_core(
    client: Ipv4Addr,
    client_port: u16,
    vip: Ipv4Addr,
    vip_port: u16,
    cores: usize,
) -> usize {
    if cores <= 1 {
        return 0;
    }
    let a = (u64::from(u32::from(client)) << 16) | u64::from(client_port);
    let b = (u64::from(u32::from(vip)) << 16) | u64::from(vip_port);
    // A 64-bit multiply-xorshift mix (from splitmix64): cheap, and every input bit
    // reaches the high bits that pick the core.
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b;
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (((x >> 32) * cores as u64) >> 32) as usize
}

/// The core owning a backend-side flow, from the switch's local port on it.
#[inline]
pub fn local_port_core(local_port: u16, cores: usize) -> usize {
    if cores <= 1 {
        0
    } else {
        local_port as usize % cores
    }
}

/// The first local port at or after `from` (within `range`) that maps to `core`.
/// Used by a core to allocate ephemeral ports whose replies come back to it.
pub fn next_local_port_for_core(
    from: u16,
    core: usize,
    cores: usize,
    range: std::ops::RangeInclusive<u16>,
) -> u16 {
    let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
    let cores = cores.max(1) as u32;
    let core = core as u32 % cores;
    let p = u32::from(from).clamp(lo, hi);
    let up = p + (core + cores - p % cores) % cores;
    let chosen = if up <= hi {
        up
    } else {
        lo + (core + cores - lo % cores) % cores
    };
    chosen as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hash_spreads_and_is_stable() {
        let vip = Ipv4Addr::new(10, 99, 0, 10);
        let mut counts = [0usize; 2];
        for port in 32768..(32768 + 4000u16) {
            let c = client_flow_core(Ipv4Addr::new(10, 99, 0, 2), port, vip, 80, 2);
            assert_eq!(
                c,
                client_flow_core(Ipv4Addr::new(10, 99, 0, 2), port, vip, 80, 2)
            );
            counts[c] += 1;
        }
        assert!(counts.iter().all(|&n| n > 1700), "{counts:?}");
        for cores in 1..=8 {
            for port in 0..200 {
                assert!(client_flow_core(Ipv4Addr::new(1, 2, 3, 4), port, vip, 80, cores) < cores);
            }
        }
    }

    #[test]
    fn local_ports_map_back_to_their_core() {
        for cores in 1..=4 {
            for core in 0..cores {
                let mut p = 1024;
                for _ in 0..50 {
                    p = next_local_port_for_core(p, core, cores, 1024..=65535);
                    assert_eq!(local_port_core(p, cores), core);
                    p += 1;
                }
                let wrapped = next_local_port_for_core(65535, core, cores, 1024..=65535);
                assert_eq!(local_port_core(wrapped, cores), core);
                assert!(wrapped >= 1024);
            }
        }
    }
}
