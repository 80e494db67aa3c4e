//! Loopback ports for tests: free ones, and ones no `bind(0)` is handed.
//! Shared by the end-to-end tests (through `common`) and by plugin crates'
//! tests (`#[path = ".../tests/common/ports.rs"] mod ports;`).
#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind("127.0.0.1:0").expect("bind tcp 0");
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

/// A loopback port free for TCP and UDP now, below the kernel's ephemeral
/// port range: `bind(0)` (every other `free_port`, every server the tests
/// start) and outgoing connections are never given it. For a server a
/// test stops and starts again on the same port (an outage), and for a
/// URL that must stay dead: nothing else takes the port meanwhile. Ports
/// handed out in this process are not handed out again.
pub fn restart_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u32, ephemeral_low.min(65_536));
    if hi < lo + 1_000 {
        return free_port();
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..2_000u32 {
        let port = (lo + seed.wrapping_add(i.wrapping_mul(7_919)) % (hi - lo)) as u16;
        if taken.contains(&port) {
            continue;
        }
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("no free port below the ephemeral range ({lo}..{hi})");
}
