//! Unit tests of the memory queue and its when-full policies.
use super::*;
use crate::{HepMessage, ReceiveMeta, Transport};
use bytes::Bytes;
use std::sync::Arc;

fn ev() -> Event {
    ev_of(0)
}

fn queue(cap: usize, wf: WhenFull) -> (Arc<SinkQueue>, Registry) {
    let r = Registry::new();
    let q = Arc::new(SinkQueue::new(cap, wf, QueueMetrics::new(&r, "s")));
    (q, r)
}

fn dropped_full(r: &Registry) -> Option<f64> {
    r.value(
        "hepflow_sink_dropped_total",
        &[("sink", "s"), ("reason", "queue_full")],
    )
}

fn meta() -> ReceiveMeta {
    ReceiveMeta {
        listener: "t".into(),
        transport: Transport::Udp,
        peer: "127.0.0.1:1".parse().unwrap(),
        received_at: std::time::SystemTime::now(),
    }
}

fn ev_of(raw_len: usize) -> Event {
    Event::new(
        HepMessage::new_v3(Bytes::from_static(b"x")),
        Bytes::from(vec![0u8; raw_len]),
        meta(),
    )
}

#[tokio::test]
async fn the_byte_bound_drops_what_does_not_fit_and_frees_on_pop() {
    let one = ev_of(1000).batch_footprint();
    assert!(one > 1000, "footprint counts bookkeeping too: {one}");
    let r = Registry::new();
    let q = SinkQueue::new(1000, WhenFull::DropNewest, QueueMetrics::new(&r, "s"))
        .with_max_bytes(3 * one + one / 2);
    let out = q.push((0..5).map(|_| ev_of(1000)).collect()).await;
    assert_eq!(
        out,
        PushOutcome {
            queued: 3,
            dropped: 2
        }
    );
    assert_eq!(q.bytes(), 3 * one);
    assert_eq!(
        r.value("hepflow_sink_queue_bytes", &[("sink", "s")]),
        Some((3 * one) as f64)
    );
    assert_eq!(dropped_full(&r), Some(2.0));
    let mut got = Vec::new();
    assert!(q.pop_batch(2, Duration::ZERO, &mut got).await.is_some());
    assert_eq!(got.len(), 2);
    assert_eq!(q.bytes(), one);
    assert_eq!(
        r.value("hepflow_sink_queue_bytes", &[("sink", "s")]),
        Some(one as f64)
    );
    // Room again for two.
    let out = q.push((0..3).map(|_| ev_of(1000)).collect()).await;
    assert_eq!(out.queued, 2);
    assert_eq!(q.discard_remaining(), 3);
    assert_eq!(q.bytes(), 0);
}

/// `n` events made together (one receive batch), each `raw_len` bytes.
fn batch_of(n: usize, raw_len: usize) -> Vec<Event> {
    let mut b = crate::EventBatch::new();
    for _ in 0..n {
        b.push(
            HepMessage::new_v3(Bytes::from_static(b"x")),
            Bytes::from(vec![0u8; raw_len]),
            meta(),
        );
    }
    let mut out = Vec::new();
    b.finish(&mut out);
    out
}

#[tokio::test]
async fn a_run_of_one_batch_is_charged_the_whole_batch_once() {
    let r = Registry::new();
    let q = SinkQueue::new(1000, WhenFull::DropNewest, QueueMetrics::new(&r, "s"));
    let a = batch_of(100, 500);
    let whole = a[0].batch_footprint();
    assert!(whole > 100 * 500, "the batch's bytes and storage: {whole}");
    // A narrow route: 2 of 100 messages keep all 100 alive.
    q.push(vec![a[3].clone(), a[70].clone()]).await;
    assert_eq!(q.bytes(), whole);
    // Another batch, whole: charged once more.
    let b = batch_of(10, 500);
    let b_whole = b[0].batch_footprint();
    q.push(b.clone()).await;
    assert_eq!(q.bytes(), whole + b_whole);
    assert_eq!(
        r.value("hepflow_sink_queue_bytes", &[("sink", "s")]),
        Some((whole + b_whole) as f64)
    );
    // Popping a's run frees a's charge; popping part of b's run keeps
    // b's charge (its other events still hold the batch alive).
    let mut got = Vec::new();
    assert!(q.pop_batch(2, Duration::ZERO, &mut got).await.is_some());
    assert_eq!(q.bytes(), b_whole);
    assert!(q.pop_batch(4, Duration::ZERO, &mut got).await.is_some());
    assert_eq!(q.len(), 6);
    assert_eq!(q.bytes(), b_whole);
    assert!(q.pop_batch(100, Duration::ZERO, &mut got).await.is_some());
    assert_eq!(q.bytes(), 0);
    assert_eq!(got.len(), 12);
}

#[tokio::test]
async fn the_byte_bound_counts_batches_not_messages() {
    // Room for a little over one batch of 100: a narrow route taking
    // one message from each batch fills it after two batches, not 200.
    let one_batch = batch_of(100, 500)[0].batch_footprint();
    let r = Registry::new();
    let q = SinkQueue::new(1000, WhenFull::DropNewest, QueueMetrics::new(&r, "s"))
        .with_max_bytes(one_batch + one_batch / 2);
    let mut queued = 0;
    for _ in 0..5 {
        queued += q.push(vec![batch_of(100, 500)[0].clone()]).await.queued;
    }
    // The first always fits an empty queue; the second would pass the
    // bound.
    assert_eq!(queued, 1);
    assert_eq!(dropped_full(&r), Some(4.0));
}

#[tokio::test]
async fn a_message_larger_than_the_byte_bound_passes_an_empty_queue() {
    let r = Registry::new();
    let q =
        SinkQueue::new(10, WhenFull::DropNewest, QueueMetrics::new(&r, "s")).with_max_bytes(100);
    let out = q.push(vec![ev_of(5000), ev_of(10)]).await;
    assert_eq!(
        out,
        PushOutcome {
            queued: 1,
            dropped: 1
        }
    );
}

#[test]
fn block_waits_on_the_byte_bound_until_the_consumer_pops() {
    let one = ev_of(100).batch_footprint();
    let r = Registry::new();
    let q = Arc::new(
        SinkQueue::new(1000, WhenFull::Block, QueueMetrics::new(&r, "s")).with_max_bytes(2 * one),
    );
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || q.push_blocking((0..4).map(|_| ev_of(100)).collect()))
    };
    // The producer fills the queue to the byte bound and waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while q.len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(q.len(), 2);
    assert!(!producer.is_finished(), "block must wait, not drop");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        assert!(rt
            .block_on(q.pop_batch(10, Duration::ZERO, &mut got))
            .is_some());
    }
    let out = producer.join().unwrap();
    assert_eq!(
        out,
        PushOutcome {
            queued: 4,
            dropped: 0
        }
    );
}

#[tokio::test]
async fn drop_newest_counts_what_does_not_fit() {
    let (q, r) = queue(3, WhenFull::DropNewest);
    let out = q.push(vec![ev(), ev(), ev(), ev(), ev()]).await;
    assert_eq!(
        out,
        PushOutcome {
            queued: 3,
            dropped: 2
        }
    );
    assert_eq!(dropped_full(&r), Some(2.0));
    let mut got = Vec::new();
    assert!(q.pop_batch(10, Duration::ZERO, &mut got).await.is_some());
    assert_eq!(got.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_waits_for_room_and_loses_nothing() {
    let (q, _r) = queue(4, WhenFull::Block);
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut total = PushOutcome::default();
            for _ in 0..50 {
                let o = q.push_blocking(vec![ev(), ev(), ev()]);
                total.queued += o.queued;
                total.dropped += o.dropped;
            }
            total
        })
    };
    let mut seen = 0;
    let mut buf = Vec::new();
    while seen < 150 {
        buf.clear();
        assert!(q.pop_batch(2, Duration::ZERO, &mut buf).await.is_some());
        seen += buf.len();
    }
    let total = producer.join().unwrap();
    assert_eq!(
        total,
        PushOutcome {
            queued: 150,
            dropped: 0
        }
    );
}

#[tokio::test]
async fn close_refuses_pushes_and_drains() {
    let (q, _r) = queue(10, WhenFull::Block);
    q.push(vec![ev(), ev()]).await;
    q.close();
    assert_eq!(q.push(vec![ev()]).await.dropped, 1);
    let mut got = Vec::new();
    assert!(q
        .pop_batch(10, Duration::from_secs(5), &mut got)
        .await
        .is_some());
    assert_eq!(got.len(), 2);
    assert!(q.pop_batch(10, Duration::ZERO, &mut got).await.is_none());
}

#[tokio::test]
async fn max_wait_fills_batches() {
    let (q, _r) = queue(100, WhenFull::Block);
    q.push(vec![ev()]).await;
    let q2 = q.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        q2.push(vec![ev(), ev()]).await;
    });
    let mut got = Vec::new();
    assert!(q
        .pop_batch(3, Duration::from_secs(5), &mut got)
        .await
        .is_some());
    assert_eq!(got.len(), 3);
}

mod with_disk {
    use super::super::disk::DiskTier;
    use super::*;
    use crate::hep::DecodeOptions;
    use crate::spool::config::{SpoolConfig, SpoolMode};
    use crate::test_events::{number, numbered};

    fn disk_queue(dir: &std::path::Path, mode: SpoolMode, cap: usize) -> (SinkQueue, Registry) {
        let r = Registry::new();
        let cfg = SpoolConfig {
            mode,
            ..SpoolConfig::default()
        };
        let disk =
            DiskTier::open("s", &cfg, dir.to_path_buf(), &r, DecodeOptions::default()).unwrap();
        let q =
            SinkQueue::new(cap, WhenFull::DropNewest, QueueMetrics::new(&r, "s")).with_disk(disk);
        (q, r)
    }

    async fn pop_all(q: &SinkQueue) -> Vec<(usize, bool)> {
        let mut got = Vec::new();
        while !q.is_empty() || q.disk().unwrap().records() > 0 {
            let mut batch = Vec::new();
            let popped = q.pop_batch(3, Duration::ZERO, &mut batch).await.unwrap();
            let from_disk = popped.from_disk();
            got.extend(batch.iter().map(|e| (number(e), from_disk)));
            q.done(popped);
        }
        got
    }

    #[tokio::test]
    async fn overflow_goes_to_disk_in_order_and_back_to_memory_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let (q, r) = disk_queue(dir.path(), SpoolMode::Overflow, 4);
        let out = q.push((0..10).map(numbered).collect()).await;
        assert_eq!(
            out,
            PushOutcome {
                queued: 10,
                dropped: 0
            }
        );
        assert_eq!(q.len(), 4);
        assert_eq!(q.disk().unwrap().records(), 6);
        // While the disk holds a backlog, new messages queue behind it.
        q.push(vec![numbered(10)]).await;
        assert_eq!(q.len(), 4);
        let got = pop_all(&q).await;
        let order: Vec<usize> = got.iter().map(|g| g.0).collect();
        assert_eq!(order, (0..11).collect::<Vec<_>>());
        assert!(got[..4].iter().all(|g| !g.1) && got[4..].iter().all(|g| g.1));
        let written = r.value("hepflow_spool_written_total", &[("sink", "s")]);
        assert_eq!(written, Some(7.0));
        // Backlog delivered: memory again.
        q.push(vec![numbered(11)]).await;
        assert_eq!((q.len(), q.disk().unwrap().records()), (1, 0));
    }

    #[tokio::test]
    async fn a_failing_sink_sends_new_messages_to_disk_with_memory_room_left() {
        let dir = tempfile::tempdir().unwrap();
        let (q, _r) = disk_queue(dir.path(), SpoolMode::Overflow, 1000);
        q.push(vec![numbered(0)]).await;
        q.set_failing(true);
        q.push(vec![numbered(1), numbered(2)]).await;
        assert_eq!((q.len(), q.disk().unwrap().records()), (1, 2));
        q.set_failing(false);
        let order: Vec<usize> = pop_all(&q).await.iter().map(|g| g.0).collect();
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn always_writes_everything_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let (q, r) = disk_queue(dir.path(), SpoolMode::Always, 1000);
        q.push((0..5).map(numbered).collect()).await;
        assert_eq!((q.len(), q.disk().unwrap().records()), (0, 5));
        let got = pop_all(&q).await;
        assert!(got.iter().all(|g| g.1));
        q.push(vec![numbered(5)]).await;
        assert_eq!(q.disk().unwrap().records(), 1, "still write-ahead");
        assert_eq!(
            r.value("hepflow_spool_replayed_total", &[("sink", "s")]),
            Some(5.0)
        );
    }

    #[tokio::test]
    async fn at_shutdown_memory_goes_in_front_of_the_spool_and_comes_back_first() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (q, _r) = disk_queue(dir.path(), SpoolMode::Overflow, 4);
            q.push((0..10).map(numbered).collect()).await;
            // Two popped from memory and not delivered (in flight).
            let mut in_flight = Vec::new();
            let popped = q
                .pop_batch(2, Duration::ZERO, &mut in_flight)
                .await
                .unwrap();
            assert!(!popped.from_disk());
            q.close();
            assert_eq!(q.spill_remaining(in_flight), Some(4));
        }
        let (q, _r) = disk_queue(dir.path(), SpoolMode::Overflow, 4);
        assert_eq!(q.disk().unwrap().records(), 10);
        // New traffic waits behind the backlog.
        q.push(vec![numbered(10)]).await;
        let order: Vec<usize> = pop_all(&q).await.iter().map(|g| g.0).collect();
        assert_eq!(order, (0..11).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn drop_oldest_in_memory_keeps_the_newest() {
        let r = Registry::new();
        let q = SinkQueue::new(3, WhenFull::DropOldest, QueueMetrics::new(&r, "s"));
        q.push((0..5).map(numbered).collect()).await;
        let mut got = Vec::new();
        q.pop_batch(10, Duration::ZERO, &mut got).await.unwrap();
        assert_eq!(got.iter().map(number).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(dropped_full(&r), Some(2.0));
    }
}
