//! Behaviour of the `hep` sink against real sockets on loopback: test
//! receivers (plain TCP/UDP sockets in this file that frame HEP3 and keep
//! what arrives), a port nobody listens on (a dead target), and — as fault
//! injection no real server produces on demand — a TCP listener that
//! accepts and never reads (a stalled target).
//!
//! - broadcast: a dead and a stalled target never hold up a live one
//!   (which blocks when full and so loses nothing); their full queues
//!   drop and count; a target queue is bounded in bytes as well as in
//!   messages.
//! - `when_full = "block"`: a target that is down at first and comes up
//!   later gets every message, none dropped.
//! - hash: a target lost with messages queued hands them to each key's
//!   next choice; every message is accounted for.
//! - round robin over the targets that are up.
//! - HEPv3 re-encoding: auth key stripped, node name set; loop protection.
//! - close: drains, and gives up on a dead target after `drain_timeout`,
//!   counting what was left.
//! - health: `any` and `all`.

use bytes::Bytes;
use hepflow_hep::HepSinkFactory;
use hepflow_sdk::hep::{decode, hep3_frame_len};
use hepflow_sdk::sink::{Sink, SinkContext, SinkFactory};
use hepflow_sdk::{DecodeOptions, Event, HepMessage};
use serde_json::json;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

// ------------------------------------------------------------- helpers

fn event(n: usize, pad: usize, node: Option<&str>, auth: Option<&str>) -> Event {
    let body = "x".repeat(pad);
    let sip = format!(
        "OPTIONS sip:b@example.com SIP/2.0\r\nCall-ID: c{n}@test\r\nCSeq: 1 OPTIONS\r\nX-Pad: {body}\r\nContent-Length: 0\r\n\r\n"
    );
    let mut m = HepMessage::new_v3(Bytes::from(sip));
    m.src_ip = [10, 0, 0, 1].into();
    m.dst_ip = [10, 0, 0, 2].into();
    m.src_port = 5060;
    m.dst_port = 5060;
    m.capture_id = 11;
    m.node_name = node.map(|s| Bytes::copy_from_slice(s.as_bytes()));
    m.auth_key = auth.map(|s| Bytes::copy_from_slice(s.as_bytes()));
    Event::received_over_udp(&m, "127.0.0.1:5060".parse().unwrap(), SystemTime::now()).unwrap()
}

fn build(cfg: serde_json::Value) -> (Box<dyn Sink>, SinkContext) {
    let ctx = SinkContext::for_tests("relay");
    let sink = HepSinkFactory
        .build("sinks.relay", &cfg, ctx.clone())
        .expect("build");
    (sink, ctx)
}

fn value(ctx: &SinkContext, name: &str, target: &str) -> f64 {
    ctx.registry
        .value(name, &[("sink", "relay"), ("target", target)])
        .unwrap_or(0.0)
}

fn dropped(ctx: &SinkContext, target: &str, reason: &str) -> f64 {
    ctx.registry
        .value(
            "hepflow_hep_target_dropped_total",
            &[("sink", "relay"), ("target", target), ("reason", reason)],
        )
        .unwrap_or(0.0)
}

async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[path = "../../../tests/common/ports.rs"]
mod ports;

/// A loopback port nobody listens on, and nobody is given by `bind(0)`
/// meanwhile (below the ephemeral range).
fn dead_port() -> u16 {
    ports::restart_port()
}

/// Test receiver: accepts TCP connections, frames HEP3, keeps frames.
struct TcpReceiver {
    addr: SocketAddr,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl TcpReceiver {
    fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn on(l: TcpListener) -> Self {
        let addr = l.local_addr().unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (frames.clone(), stop.clone());
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let f = f.clone();
                        s.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || {
                            let mut buf = Vec::new();
                            let mut chunk = [0u8; 65536];
                            loop {
                                while let Ok(Some(n)) = hep3_frame_len(&buf) {
                                    if buf.len() < n {
                                        break;
                                    }
                                    f.lock().unwrap().push(buf.drain(..n).collect());
                                }
                                match s.read(&mut chunk) {
                                    Ok(0) | Err(_) => return,
                                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpReceiver { addr, frames, stop }
    }

    fn count(&self) -> usize {
        self.frames.lock().unwrap().len()
    }
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Fault injection: accepts TCP connections and never reads from them;
/// dropping it closes the listener and every connection it holds (unread
/// data makes the kernel reset them).
struct StalledListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl StalledListener {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !st.load(Ordering::Relaxed) {
                if let Ok((s, _)) = l.accept() {
                    held.push(s);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        StalledListener { addr, stop }
    }
}

impl Drop for StalledListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Test receiver: a UDP socket whose datagrams are kept.
struct UdpReceiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl UdpReceiver {
    fn start() -> Self {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            // Ends when the test is over (the Arc is the only other owner).
            while Arc::strong_count(&g) > 1 {
                if let Ok(n) = s.recv(&mut buf) {
                    g.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        UdpReceiver { addr, got }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

// ------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_a_dead_and_a_stalled_target_never_hold_up_a_live_one() {
    let live = TcpReceiver::start();
    let stalled = StalledListener::start();
    let dead = format!("tcp://127.0.0.1:{}", dead_port());
    let live_url = format!("tcp://{}", live.addr);
    let stalled_url = format!("tcp://{}", stalled.addr);
    // The live target blocks when full (lossless); the others drop.
    let (mut sink, ctx) = build(json!({
        "targets": [{"url": live_url, "when_full": "block", "queue_capacity": 1000}, dead, stalled_url],
        "queue_capacity": 200,
        "write_timeout": "300ms",
        "reconnect_initial_backoff": "20ms",
        "reconnect_max_backoff": "100ms",
        "drain_timeout": "2s",
    }));
    sink.start().await.unwrap();
    // 40 MB in all: far more than the stalled connection's socket buffers.
    let batches = 100;
    let per = 100;
    for b in 0..batches {
        let batch: Vec<Event> = (0..per)
            .map(|i| event(b * per + i, 4000, None, None))
            .collect();
        let d = tokio::time::timeout(Duration::from_secs(30), sink.write(&batch))
            .await
            .expect("write never waits on a dead or stalled target (drop_newest there)")
            .unwrap();
        assert_eq!(d.events, per as u64);
    }
    let total = (batches * per) as f64;
    assert!(
        wait_until(Duration::from_secs(30), || live.count() == batches * per).await,
        "live target got {} of {total}",
        live.count()
    );
    assert_eq!(
        value(&ctx, "hepflow_hep_target_sent_total", &live_url),
        total
    );
    assert_eq!(dropped(&ctx, &live_url, "queue_full"), 0.0);
    // The dead one queued what fit and dropped the rest, counted.
    assert_eq!(value(&ctx, "hepflow_hep_target_connected", &dead), 0.0);
    assert_eq!(value(&ctx, "hepflow_hep_target_sent_total", &dead), 0.0);
    assert_eq!(dropped(&ctx, &dead, "queue_full"), total - 200.0);
    assert!(value(&ctx, "hepflow_hep_target_connect_failures_total", &dead) >= 1.0);
    // The stalled one: what did not fit its queue (and socket) was dropped,
    // and its writes timed out into reconnects.
    assert!(dropped(&ctx, &stalled_url, "queue_full") > 0.0);
    assert!(
        wait_until(Duration::from_secs(10), || value(
            &ctx,
            "hepflow_hep_target_reconnects_total",
            &stalled_url
        ) >= 1.0)
        .await
    );
    let closed = tokio::time::timeout(Duration::from_secs(20), sink.close())
        .await
        .expect("close is bounded by drain_timeout");
    let err = closed.expect_err("the dead target's queue could not drain");
    assert!(err.message.contains("left in HEP target queues"), "{err}");
    assert_eq!(dropped(&ctx, &dead, "shutdown"), 200.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_queue_is_bounded_in_bytes_too() {
    // A dead target: nothing leaves its queue.
    let dead = format!("tcp://127.0.0.1:{}", dead_port());
    let (mut sink, ctx) = build(json!({
        "targets": [{"url": dead, "queue_max_bytes": 65536}],
        "queue_capacity": 10000,
        "reconnect_initial_backoff": "1s",
    }));
    sink.start().await.unwrap();
    let batch: Vec<Event> = (0..200).map(|i| event(i, 1000, None, None)).collect();
    // The memory each message keeps alive (its own receive buffer here),
    // in order, while it fits in 64 KiB.
    let (mut fit, mut bytes) = (0, 0);
    for e in &batch {
        if bytes + e.batch_footprint() > 65536 {
            break;
        }
        bytes += e.batch_footprint();
        fit += 1;
    }
    assert!(fit > 10 && fit < 100, "{fit}");
    sink.write(&batch).await.unwrap();
    assert_eq!(
        value(&ctx, "hepflow_hep_target_queue_depth", &dead),
        fit as f64
    );
    assert_eq!(
        value(&ctx, "hepflow_hep_target_queue_bytes", &dead),
        bytes as f64
    );
    assert_eq!(dropped(&ctx, &dead, "queue_full"), (200 - fit) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_loses_nothing_for_a_target_that_comes_up_late() {
    // The target is down at first; nobody else takes its port meanwhile.
    let addr = SocketAddr::from(([127, 0, 0, 1], dead_port()));
    let url = format!("tcp://{addr}");
    let (mut sink, ctx) = build(json!({
        "targets": [{"url": url, "when_full": "block", "queue_capacity": 10}],
        "reconnect_initial_backoff": "20ms",
        "reconnect_max_backoff": "100ms",
        "max_write_messages": 4,
    }));
    sink.start().await.unwrap();
    assert_eq!(value(&ctx, "hepflow_hep_target_connected", &url), 0.0);
    let writer = tokio::spawn(async move {
        for b in 0..10 {
            let batch: Vec<Event> = (0..10).map(|i| event(b * 10 + i, 10, None, None)).collect();
            sink.write(&batch).await.unwrap();
        }
        sink
    });
    // The writer is held up by the full queue of the down target.
    assert!(
        wait_until(Duration::from_secs(10), || value(
            &ctx,
            "hepflow_hep_target_queue_depth",
            &url
        ) == 10.0)
        .await
    );
    assert!(!writer.is_finished());
    let rx = TcpReceiver::on(TcpListener::bind(addr).expect("rebind the reserved port"));
    let mut sink = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("writer finishes once the target is up")
        .unwrap();
    sink.close().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || rx.count() == 100).await,
        "{}",
        rx.count()
    );
    assert_eq!(dropped(&ctx, &url, "queue_full"), 0.0);
    assert_eq!(value(&ctx, "hepflow_hep_target_sent_total", &url), 100.0);
    // Batched: at most 4 per write, so at least 25 writes.
    assert!(value(&ctx, "hepflow_hep_target_writes_total", &url) >= 25.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_over_the_targets_that_are_up() {
    let a = UdpReceiver::start();
    let b = UdpReceiver::start();
    let dead = format!("tcp://127.0.0.1:{}", dead_port());
    let (mut sink, ctx) = build(json!({
        "targets": [format!("udp://{}", a.addr), dead, format!("udp://{}", b.addr)],
        "mode": "round_robin",
    }));
    sink.start().await.unwrap();
    for k in 0..20 {
        let batch: Vec<Event> = (0..10).map(|i| event(k * 10 + i, 10, None, None)).collect();
        sink.write(&batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(wait_until(Duration::from_secs(10), || a.count() + b.count() == 200).await);
    sink.close().await.unwrap();
    let (na, nb) = (a.count(), b.count());
    assert!(
        (80..=120).contains(&na) && (80..=120).contains(&nb),
        "{na} / {nb}"
    );
    assert_eq!(value(&ctx, "hepflow_hep_target_sent_total", &dead), 0.0);
    assert_eq!(dropped(&ctx, &dead, "queue_full"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hepv3_strips_the_auth_key_sets_the_node_and_drops_loops() {
    let rx = UdpReceiver::start();
    let url = format!("udp://{}", rx.addr);
    let (mut sink, ctx) = build(json!({
        "targets": [url],
        "encoding": "hepv3",
        "strip_auth_key": true,
        "set_node_name": "relay-x",
        "set_capture_id": 99,
    }));
    sink.start().await.unwrap();
    let batch = vec![
        event(1, 10, Some("agent-7"), Some("agentkey")),
        // Already through this node (SinkContext::for_tests names it "test").
        event(2, 10, Some("test"), None),
        // Stamped by this sink before: a loop.
        event(3, 10, Some("relay-x"), None),
        event(4, 10, None, None),
    ];
    let d = sink.write(&batch).await.unwrap();
    assert_eq!(d.events, 2);
    assert!(wait_until(Duration::from_secs(10), || rx.count() == 2).await);
    sink.close().await.unwrap();
    assert_eq!(
        ctx.registry.value(
            "hepflow_hep_dropped_total",
            &[("sink", "relay"), ("reason", "loop")]
        ),
        Some(2.0)
    );
    for dgram in rx.got.lock().unwrap().iter() {
        let m = decode(Bytes::copy_from_slice(dgram), &DecodeOptions::default()).unwrap();
        assert_eq!(m.auth_key, None);
        assert_eq!(m.node_name.as_deref(), Some(&b"relay-x"[..]));
        assert_eq!(m.capture_id, 99);
    }
    assert_eq!(value(&ctx, "hepflow_hep_target_sent_total", &url), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_any_and_all() {
    let live = TcpReceiver::start();
    let live_url = format!("tcp://{}", live.addr);
    let dead = format!("tcp://127.0.0.1:{}", dead_port());
    for (policy, ready) in [("any", true), ("all", false)] {
        let (mut sink, ctx) = build(json!({
            "targets": [live_url, dead],
            "health": policy,
            "drain_timeout": "200ms",
        }));
        sink.start().await.unwrap();
        sink.flush().await.unwrap();
        assert_eq!(
            ctx.health.is_ready(),
            ready,
            "{policy}: {}",
            ctx.health.detail()
        );
        if !ready {
            let d = ctx.health.detail();
            assert!(d.contains(&dead) && !d.contains(&live_url), "{d}");
        }
        let _ = sink.close().await;
    }
    // Nothing up at all: unready under either policy.
    let (mut sink, ctx) = build(json!({"targets": [dead], "drain_timeout": "200ms"}));
    sink.start().await.unwrap();
    sink.flush().await.unwrap();
    assert!(!ctx.health.is_ready());
    assert!(
        ctx.health.detail().contains("HEP targets down"),
        "{}",
        ctx.health.detail()
    );
    let _ = sink.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_a_lost_target_hands_its_queue_to_the_next_choice() {
    use hepflow_hep::select::{fnv1a64, rendezvous, target_seed};
    let live = TcpReceiver::start();
    let stalled = StalledListener::start();
    let live_url = format!("tcp://{}", live.addr);
    let stalled_url = format!("tcp://{}", stalled.addr);
    let seeds = [target_seed(&live_url), target_seed(&stalled_url)];
    // Calls whose first choice is the stalled target.
    let ns: Vec<usize> = (0..100_000)
        .filter(|n| {
            rendezvous(fnv1a64(format!("c{n}@test").as_bytes()), &seeds, |_| true) == Some(1)
        })
        .take(3000)
        .collect();
    let (mut sink, ctx) = build(json!({
        "targets": [live_url, stalled_url],
        "mode": "hash",
        "queue_capacity": 5000,
        "write_timeout": "30s",
        "reconnect_initial_backoff": "20ms",
        "reconnect_max_backoff": "100ms",
    }));
    sink.start().await.unwrap();
    for chunk in ns.chunks(100) {
        let batch: Vec<Event> = chunk.iter().map(|&n| event(n, 4000, None, None)).collect();
        sink.write(&batch).await.unwrap();
    }
    // 12 MB for a target that reads nothing: most of it waits in its queue.
    assert!(
        wait_until(Duration::from_secs(10), || value(
            &ctx,
            "hepflow_hep_target_queue_depth",
            &stalled_url
        ) > 100.0)
        .await
    );
    assert_eq!(
        live.count(),
        0,
        "no call of the stalled target went elsewhere yet"
    );
    drop(stalled); // the target dies with its queue full
    let total = ns.len() as f64;
    let accounted =
        || value(&ctx, "hepflow_hep_target_sent_total", &stalled_url) + live.count() as f64;
    assert!(
        wait_until(Duration::from_secs(20), || accounted() == total).await,
        "sent to the dead target {} + arrived at the live one {} != {total}",
        value(&ctx, "hepflow_hep_target_sent_total", &stalled_url),
        live.count()
    );
    let moved = value(&ctx, "hepflow_hep_target_failover_total", &stalled_url);
    assert!(moved > 100.0, "{moved}");
    assert_eq!(
        value(&ctx, "hepflow_hep_target_connected", &stalled_url),
        0.0
    );
    for t in [&live_url, &stalled_url] {
        assert_eq!(dropped(&ctx, t, "queue_full"), 0.0);
    }
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_go_out_several_per_write() {
    // TCP: the target comes up with 100 messages queued: 64 per write.
    let addr = SocketAddr::from(([127, 0, 0, 1], dead_port()));
    let tcp = format!("tcp://{addr}");
    let udp_rx = UdpReceiver::start();
    let udp = format!("udp://{}", udp_rx.addr);
    let (mut sink, ctx) = build(json!({
        "targets": [tcp, udp],
        "reconnect_initial_backoff": "20ms",
        "reconnect_max_backoff": "50ms",
    }));
    sink.start().await.unwrap();
    let batch: Vec<Event> = (0..100).map(|i| event(i, 10, None, None)).collect();
    sink.write(&batch).await.unwrap();
    let rx = TcpReceiver::on(TcpListener::bind(addr).expect("rebind the reserved port"));
    assert!(wait_until(Duration::from_secs(10), || rx.count() == 100).await);
    assert_eq!(value(&ctx, "hepflow_hep_target_writes_total", &tcp), 2.0);
    // UDP: one write call of the sink queues 100 at once: sendmmsg sends
    // up to 64 datagrams per call.
    assert!(wait_until(Duration::from_secs(10), || udp_rx.count() == 100).await);
    let writes = value(&ctx, "hepflow_hep_target_writes_total", &udp);
    assert!((2.0..=6.0).contains(&writes), "{writes}");
    sink.close().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_closed_is_seen_before_the_next_write() {
    use hepflow_hep::conn::connect;
    use hepflow_hep::target::TargetUrl;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: TargetUrl = format!("tcp://{}", l.local_addr().unwrap())
        .parse()
        .unwrap();
    let conn = connect(&url, None, Duration::from_secs(2)).await.unwrap();
    let (peer, _) = l.accept().await.unwrap();
    assert!(conn.peer_gone().is_none(), "the receiver is there");
    drop(peer);
    let until = Instant::now() + Duration::from_secs(2);
    while conn.peer_gone().is_none() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gone = conn.peer_gone().expect("the closed receiver is seen");
    assert_eq!(gone.kind(), std::io::ErrorKind::UnexpectedEof, "{gone}");
}
