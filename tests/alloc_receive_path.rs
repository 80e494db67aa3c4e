//! The UDP receive path allocates per batch, not per message: a counting
//! global allocator measures the allocations of storing + decoding a batch
//! of real HEP messages and routing them into sink queues, for a batch of
//! 64 and one of 640 messages; the counts must not grow with the batch.

use hepflow::config::{Config, WhenFull};
use hepflow::ingest::udp::ReceiveBatch;
use hepflow::ingest::{Decoder, ListenerMetrics};
use hepflow::pipeline::{Pipeline, SinkSlot};
use hepflow::route::Router;
use hepflow_sdk::hep::DecodeOptions;
use hepflow_sdk::metrics::Registry;
use hepflow_sdk::queue::{QueueMetrics, SinkQueue};
use hepflow_sdk::sink::Health;
use hepflow_sdk::Transport;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::SystemTime;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, COUNT.with(|c| c.get()))
}

fn corpus() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hep/kamailio-hep3-udp.pcapng"
    );
    hepflow::capture::read_port(std::path::Path::new(path), 9060)
        .unwrap()
        .into_iter()
        .map(|p| p.data)
        .collect()
}

#[test]
fn allocations_per_batch_do_not_grow_with_the_batch() {
    let registry = Registry::new();
    let decoder = Decoder::new(
        "udp",
        Transport::Udp,
        &Default::default(),
        DecodeOptions::default(),
        Arc::new(ListenerMetrics::new(&registry, "udp", "udp")),
    );
    let names = vec!["a".to_string(), "b".to_string()];
    let queues: Vec<Arc<SinkQueue>> = names
        .iter()
        .map(|n| {
            Arc::new(SinkQueue::new(
                1 << 20,
                WhenFull::DropNewest,
                QueueMetrics::new(&registry, n),
            ))
        })
        .collect();
    let mut cfg = Config::default();
    cfg.default_route.sinks = names.clone();
    let pipeline = Pipeline::new(
        Router::new(&cfg, &names, &registry),
        names
            .iter()
            .zip(&queues)
            .map(|(n, q)| SinkSlot {
                name: n.clone(),
                queue: q.clone(),
                health: Health::default(),
            })
            .collect(),
    );
    let msgs = corpus();
    let peer = "127.0.0.1:5060".parse().unwrap();
    let now = SystemTime::now();
    let mut batcher = ReceiveBatch::new(1024);

    let mut run = |n: usize| -> (u64, u64, u64) {
        let bytes: usize = (0..n).map(|i| msgs[i % msgs.len()].len()).sum();
        let (_, store) = counted(|| {
            batcher.begin(bytes);
            for i in 0..n {
                batcher.push(&decoder, &msgs[i % msgs.len()], peer, now);
            }
        });
        let (events, make) = counted(|| batcher.take_events());
        assert_eq!(events.len(), n);
        let (_, dispatch) = counted(|| pipeline.dispatch_blocking(events));
        (store, make, dispatch)
    };
    // Warm up: the queues' buffers.
    run(640);
    run(640);
    let (store_64, make_64, dispatch_64) = run(64);
    let (store_640, make_640, dispatch_640) = run(640);
    // Storing and decoding: no allocation per datagram; per batch its
    // buffer (made shareable: one more small allocation) and its event
    // storage, reserved whole at the first push.
    assert!(
        store_64 <= 3,
        "store+decode of 64 allocated {store_64} times"
    );
    assert_eq!(
        store_64, store_640,
        "store+decode allocations grew with the batch"
    );
    // Making the events: the shared batch and the list, whatever the size.
    assert!(make_64 <= 3, "making 64 events allocated {make_64} times");
    assert_eq!(make_64, make_640, "event allocations grew with the batch");
    // Routing into two queues: a fixed number per batch, whatever its size.
    assert_eq!(
        dispatch_64, dispatch_640,
        "dispatch allocations grew with the batch"
    );
    assert!(dispatch_64 <= 8, "dispatch allocated {dispatch_64} times");
    for q in &queues {
        assert_eq!(q.len(), 640 * 2 + 64 + 640);
    }
}
