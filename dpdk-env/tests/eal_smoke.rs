//! Real DPDK, in-process: EAL init, a mempool, a net_null port, bursts in and out,
//! a ring, and every mbuf back in the pool at the end. Needs root (EAL); skipped with a
//! message otherwise so `cargo test` as a user still runs the pure tests.
use std::sync::Arc;

use dpdk_env::{Eal, Mbuf, MbufBatch, MbufRing, Mempool, Port, PortConfig, BURST};

#[test]
fn eal_pool_port_ring_roundtrip() {
    if unsafe_free_is_root() {
        run();
    } else {
        eprintln!("skipped: needs root for the DPDK EAL");
    }
}

fn unsafe_free_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn run() {
    let prefix = format!("ws-smoke-{}", std::process::id());
    let eal = Eal::init(&[
        "-l",
        "0",
        "--no-huge",
        "-m",
        "128",
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        &prefix,
        "--vdev",
        "net_null0,copy=1",
        "--log-level",
        "lib.eal:error",
    ])
    .expect("EAL init");
    assert_eq!(eal.main_lcore(), 0);
    assert!(eal.lcore_enabled(0));
    assert!(!eal.lcore_enabled(5));
    {
        let pool = Arc::new(Mempool::new("smoke_pool", 2047, 32, 2176).expect("mempool"));
        let id = Port::find("net_null0").expect("find net_null0");
        assert!(Port::find("net_nothing9").is_err());
        let port =
            Port::start(id, "net_null0", &PortConfig::default(), pool.clone()).expect("port start");
        assert!(
            port.wait_link(std::time::Duration::from_secs(1))
                .unwrap()
                .up
        );

        let mut batch = MbufBatch::new();
        let (n, dropped) = port.rx_burst(0, &mut batch);
        assert_eq!(dropped, 0);
        assert!(n > 0 && n <= BURST);
        assert_eq!(pool.in_use() as usize, n);
        for m in batch.drain() {
            assert!(!m.is_empty());
        }
        assert_eq!(pool.in_use(), 0, "drain frees what it yields");

        // Build packets, send them through the ring and out of the port.
        let ring = MbufRing::new("smoke_ring", 64).expect("ring");
        for i in 0..10u8 {
            let mut m = Mbuf::alloc(&pool).expect("alloc");
            m.append(60).expect("room").fill(i);
            assert!(m.prepend(4).is_some());
            assert_eq!(m.len(), 64);
            assert!(m.adj(4) && m.trim(4));
            assert_eq!(&m[..2], &[i, i]);
            ring.enqueue(m).expect("ring has room");
        }
        assert_eq!(ring.count(), 10);
        let mut out = MbufBatch::new();
        assert_eq!(ring.dequeue_burst(&mut out), 10);
        let sent = port.tx_burst(0, &mut out);
        assert_eq!(sent + out.len(), 10);
        drop(out);
        let stats = port.stats().expect("stats");
        assert!(stats.tx_packets >= sent as u64);

        // A partly consumed drain frees the rest; a dropped ring frees its content.
        let _ = port.rx_burst(0, &mut batch);
        let mut it = batch.drain();
        let _first = it.next();
        drop(it);
        for _ in 0..5 {
            ring.enqueue(Mbuf::alloc(&pool).unwrap()).unwrap();
        }
        drop(_first);
        drop(ring);
        assert_eq!(pool.in_use(), 0, "no mbuf leaked");
        drop(port);
    }
    drop(eal);
    let _ = std::fs::remove_dir_all(format!("/run/dpdk/{prefix}"));
}
