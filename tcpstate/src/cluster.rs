//! Several webswitch instances serving one VIP behind ECMP routers (issue 17, paper 001's
//! hash groups): which instance owns a connection, and the beats they exchange.
//!
//! Routers spread a VIP's flows over the live instances by their own hash, which changes
//! whenever an instance comes or goes. The instance that terminates a client's handshake
//! and holds its request must see every later segment of that connection, so ownership
//! is decided by one function every instance computes alike: a Maglev lookup table
//! ([`maglev`]) over the live members, indexed by a hash of the client's tuple
//! ([`flow_key`]). An instance that receives a segment of a flow it holds no state for
//! hands it to the owner ([`ownership`]); membership comes from [`beat`]s.
//!
//! Pure: no I/O, no clock; the data plane passes times and sends what these decide.
pub mod beat;
pub mod load;
pub mod maglev;
pub mod ownership;
pub mod sync;

use std::net::Ipv4Addr;

/// Most members a cluster may list (a beat's live set is a 32-bit mask; tables hold a
/// member index per entry).
pub const MAX_MEMBERS: usize = 32;

/// The key a connection's owner is looked up by: a fixed mix of the client's tuple, the
/// same on every instance (no per-process seed), unlike the per-core steering hash.
#[inline]
pub fn flow_key(client: Ipv4Addr, client_port: u16, vip: Ipv4Addr, vip_port: u16) -> u64 {
    let a = (u64::from(u32::from(client)) << 16) | u64::from(client_port);
    let b = (u64::from(u32::from(vip)) << 16) | u64::from(vip_port);
    // splitmix64's finaliser over both halves: every input bit reaches every output bit.
    let mut x = a.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ b.rotate_left(29);
    x ^= x >> 32;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 32;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^ (x >> 32)
}

/// A 64-bit FNV-1a hash of a member's name: where its Maglev permutation starts and how
/// it steps, the same on every instance.
pub fn name_hash(name: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    // FNV alone mixes the last bytes weakly; finish with a multiply-xorshift.
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_are_fixed_and_spread() {
        let c = Ipv4Addr::new(10, 9, 3, 2);
        let v = Ipv4Addr::new(10, 9, 5, 10);
        // Fixed across processes and builds: instances must agree.
        assert_eq!(flow_key(c, 40000, v, 80), flow_key(c, 40000, v, 80));
        assert_ne!(flow_key(c, 40000, v, 80), flow_key(c, 40001, v, 80));
        let ones: u32 = (0..64u32)
            .map(|bit| {
                (0..1000u16)
                    .filter(|p| flow_key(c, 30000 + p, v, 80) >> bit & 1 == 1)
                    .count() as u32
            })
            .min()
            .unwrap();
        assert!(ones > 400, "some output bit is biased: {ones} of 1000");
    }
}
