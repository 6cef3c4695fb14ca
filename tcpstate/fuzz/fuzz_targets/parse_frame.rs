//! Feeds arbitrary bytes to `wire::parse_all` as one received Ethernet frame. Any
//! panic (an out-of-bounds index, an overflow, a failed round-trip assert) is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = tcpstate::wire::parse_all(frame);
});
