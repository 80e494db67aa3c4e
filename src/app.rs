//! `hepflow run`: builds the sinks, queues, router and listeners from a
//! validated [`Config`], serves until SIGINT/SIGTERM, then shuts down in
//! order: stop the listeners, close the queues, let every sink drain its
//! queue within the grace period, close the sinks, and report how many
//! messages (if any) were left undelivered.

use crate::api::{self, ApiState};
use crate::config::{Config, ListenerConfig, SpoolMode};
use crate::ingest::{self, Decoder, ListenerMetrics};
use crate::pipeline::{run_sink, undelivered_counter, Pipeline, SinkHost, SinkSlot, SinkTask};
use crate::route::Router;
use crate::sinks;
use crate::supervise::{restarts_counter, supervise};
use anyhow::Context;
use hepflow_sdk::hep::DecodeOptions;
use hepflow_sdk::metrics::Registry;
use hepflow_sdk::queue::disk::DiskTier;
use hepflow_sdk::queue::{spawn_checkpoints, QueueMetrics, SinkQueue};
use hepflow_sdk::sink::{Health, PartSpool, SinkContext};
use hepflow_sdk::Transport;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a run ended with.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Messages queued but not delivered when the grace period ran out.
    pub undelivered: u64,
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run hepflow until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<RunSummary> {
    let registry = Registry::new();
    registry
        .gauge(
            "hepflow_build_info",
            "Build information (value 1)",
            &[("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1);
    let factories = sinks::factories();
    let (deadline_tx, deadline_rx) = watch::channel(None::<Instant>);

    let decode_opts = DecodeOptions {
        max_inflated_bytes: cfg.decode.max_inflated_bytes,
    };
    // Sinks and their queues (and spools, with a task each that fsyncs
    // and checkpoints them).
    let mut checkpoints = Vec::new();
    let mut slots = Vec::new();
    let mut tasks = Vec::new();
    for (name, sc) in &cfg.sinks {
        let factory = factories
            .iter()
            .find(|f| f.kind() == sc.common.kind)
            .with_context(|| format!("sinks.{name}: unknown type {}", sc.common.kind))?;
        let health = Health::default();
        let ctx = SinkContext {
            name: name.as_str().into(),
            node_name: cfg.node.name.as_str().into(),
            registry: registry.clone(),
            health: health.clone(),
            retry: sc.retry_set.then(|| sc.common.retry.clone()),
            spool: (sc.common.spool.mode != SpoolMode::Off).then(|| PartSpool {
                config: sc.common.spool.clone(),
                dir: sc.common.spool.dir_for(&cfg.node.data_dir, name),
                decode: decode_opts.clone(),
            }),
        };
        let sink = factory
            .build(&format!("sinks.{name}"), &sc.plugin, ctx.clone())
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("building sink {name}"))?;
        let rebuild: crate::pipeline::SinkBuilder = {
            let (factory, path, plugin) = (*factory, format!("sinks.{name}"), sc.plugin.clone());
            Box::new(move || factory.build(&path, &plugin, ctx.clone()))
        };
        let mut queue = SinkQueue::new(
            sc.common.queue.capacity,
            sc.common.queue.when_full,
            QueueMetrics::new(&registry, name),
        )
        .with_max_bytes(sc.common.queue.max_bytes);
        if sc.common.spool.mode != SpoolMode::Off {
            let dir = sc.common.spool.dir_for(&cfg.node.data_dir, name);
            let disk = DiskTier::open(name, &sc.common.spool, dir, &registry, decode_opts.clone())
                .with_context(|| format!("opening the spool of sinks.{name}"))?;
            queue = queue.with_disk(disk);
        }
        let queue = Arc::new(queue);
        checkpoints.extend(spawn_checkpoints(
            queue.clone(),
            sc.common.spool.fsync_interval,
        ));
        slots.push(SinkSlot {
            name: name.clone(),
            queue: queue.clone(),
            health: health.clone(),
        });
        tasks.push(SinkTask {
            name: name.clone(),
            sink: SinkHost::new(name, sink, rebuild, health.clone(), &registry),
            queue,
            common: sc.common.clone(),
            health,
            registry: registry.clone(),
            deadline: deadline_rx.clone(),
        });
    }
    let sink_names: Vec<String> = cfg.sinks.keys().cloned().collect();
    let router = Router::new(&cfg, &sink_names, &registry);
    let pipeline = Arc::new(Pipeline::new(router, slots));
    let sink_handles: Vec<_> = tasks
        .into_iter()
        .map(|t| tokio::spawn(run_sink(t)))
        .collect();

    let state = Arc::new(ApiState {
        registry: registry.clone(),
        listeners_bound: AtomicBool::new(false),
        listeners: Default::default(),
        sinks: pipeline
            .sinks()
            .iter()
            .map(|s| (s.name.clone(), s.health.clone()))
            .collect(),
        memory: crate::api::MemoryGauges::new(&registry),
    });

    // Listeners.
    let stop_flag = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let trims = registry.counter(
            "hepflow_heap_trims_total",
            "Times the heap returned free memory to the kernel (over 64 MiB freed since the last time)",
            &[],
        );
        let stop = stop_flag.clone();
        std::thread::Builder::new()
            .name("heap-reclaim".into())
            .spawn(move || crate::malloc_tuning::reclaim_loop(trims, &stop))
            .context("starting the heap reclaim thread")?;
    }
    let mut udp_threads = Vec::new();
    let mut all_listener_metrics = Vec::new();
    let mut tcp_tasks = Vec::new();
    for (name, l) in &cfg.listeners {
        let kind = l.kind();
        let mut decoder_for = |transport| {
            let metrics = Arc::new(ListenerMetrics::new(&registry, name, kind));
            all_listener_metrics.push(metrics.clone());
            Arc::new(Decoder::new(
                name,
                transport,
                &l.auth(),
                decode_opts.clone(),
                metrics,
            ))
        };
        let bind_context = |bind: std::net::SocketAddr| {
            format!(
                "binding listeners.{name} ({kind}) to {bind}: is another process using the port, or is the address not local?"
            )
        };
        match l {
            ListenerConfig::Udp(u) => {
                let sockets = ingest::udp::bind(u).with_context(|| bind_context(u.bind))?;
                let addr = sockets[0].local_addr()?;
                let decoder = decoder_for(Transport::Udp);
                tracing::info!(listener = %name, %addr, workers = sockets.len(), "UDP listener bound");
                show_listener(&state, name, kind, addr);
                udp_threads.extend(ingest::udp::spawn(
                    name,
                    sockets,
                    u,
                    decoder,
                    pipeline.clone(),
                    stop_flag.clone(),
                    &registry,
                )?);
            }
            ListenerConfig::Tls(t) => {
                let tls = ingest::tls::server_config(t)
                    .map_err(|e| anyhow::anyhow!("listeners.{name}: {e}"))?;
                let listener = Arc::new(
                    ingest::tcp::bind(t.bind)
                        .await
                        .with_context(|| bind_context(t.bind))?,
                );
                let addr = listener.local_addr()?;
                let decoder = decoder_for(Transport::Tls);
                tracing::info!(listener = %name, %addr, mutual_tls = t.client_ca_file.is_some(), "TLS listener bound");
                show_listener(&state, name, kind, addr);
                let (t, pipeline, stop) = (t.clone(), pipeline.clone(), stop_rx.clone());
                tcp_tasks.push(spawn_listener(&registry, name, move || {
                    ingest::tls::serve(
                        listener.clone(),
                        t.clone(),
                        tls.clone(),
                        decoder.clone(),
                        pipeline.clone(),
                        stop.clone(),
                    )
                }));
            }
            ListenerConfig::Tcp(t) => {
                let listener = Arc::new(
                    ingest::tcp::bind(t.bind)
                        .await
                        .with_context(|| bind_context(t.bind))?,
                );
                let addr = listener.local_addr()?;
                let decoder = decoder_for(Transport::Tcp);
                tracing::info!(listener = %name, %addr, "TCP listener bound");
                show_listener(&state, name, kind, addr);
                let (t, pipeline, stop) = (t.clone(), pipeline.clone(), stop_rx.clone());
                tcp_tasks.push(spawn_listener(&registry, name, move || {
                    ingest::tcp::serve(
                        listener.clone(),
                        t.clone(),
                        decoder.clone(),
                        pipeline.clone(),
                        stop.clone(),
                    )
                }));
            }
            #[cfg(feature = "kafka")]
            ListenerConfig::Kafka(k) => {
                let source = ingest::kafka::open(name, k, &cfg.node.name, &registry)
                    .map_err(|e| anyhow::anyhow!(e))?;
                let decoder = decoder_for(Transport::Kafka);
                tracing::info!(listener = %name, brokers = %k.brokers.join(","), topics = %k.topics.join(","), group = %k.group_id, "Kafka listener consuming");
                let dropping: Vec<&str> = cfg
                    .sinks
                    .iter()
                    .filter(|(_, s)| s.common.queue.when_full != crate::config::WhenFull::Block)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if !dropping.is_empty() {
                    tracing::warn!(listener = %name, sinks = ?dropping, "these sinks drop messages when their queue (and spool, if any) is full (when_full = \"drop_newest\" or \"drop_oldest\"): what they drop from this Kafka listener is committed and not read again; set when_full = \"block\" to pause consumption instead");
                }
                // Stopped and awaited with the stream listeners.
                let source = Arc::new(tokio::sync::Mutex::new(source));
                let (k, pipeline, stop) = (k.clone(), pipeline.clone(), stop_rx.clone());
                tcp_tasks.push(spawn_listener(&registry, name, move || {
                    ingest::kafka::serve(
                        source.clone(),
                        k.clone(),
                        decoder.clone(),
                        pipeline.clone(),
                        stop.clone(),
                    )
                }));
            }
        }
    }
    state.listeners_bound.store(true, Ordering::Relaxed);

    // API.
    let (api_stop_tx, mut api_stop_rx) = watch::channel(false);
    let api_task = if cfg.api.enabled {
        let listener = tokio::net::TcpListener::bind(cfg.api.bind)
            .await
            .with_context(|| {
                format!(
                    "binding api.bind {}: is another process using the port? Set api.bind or --api-bind",
                    cfg.api.bind
                )
            })?;
        tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
        let app = api::router(state.clone());
        Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = api_stop_rx.changed().await;
                })
                .await;
        }))
    } else {
        None
    };
    tracing::info!(node = %cfg.node.name, "hepflow running");

    shutdown.await;
    let grace = cfg.shutdown.grace_period;
    tracing::info!(grace_period = ?grace, "shutting down: stopping listeners");
    state.listeners_bound.store(false, Ordering::Relaxed);
    stop_flag.store(true, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    // One deadline for the whole shutdown: listeners hand over what they
    // have already received, then the queues drain into the sinks.
    let deadline = Instant::now() + grace;
    let listeners_done = async move {
        for t in tcp_tasks {
            let _ = t.await;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for h in udp_threads {
                let _ = h.join();
            }
        })
        .await;
    };
    tokio::pin!(listeners_done);
    if tokio::time::timeout_at(deadline, &mut listeners_done)
        .await
        .is_err()
    {
        // A listener waiting for room in a full `block` queue whose sink
        // does not drain: closing the queues makes it give up (what they
        // refuse is counted as dropped, reason "shutdown").
        tracing::warn!("listeners still waiting for queue room at the end of the grace period; closing the queues");
        pipeline.close();
        listeners_done.await;
    }

    // Drain.
    pipeline.close();
    let _ = deadline_tx.send(Some(deadline));
    let mut undelivered = 0u64;
    for (handle, slot) in sink_handles.into_iter().zip(pipeline.sinks()) {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline + Duration::from_secs(1), handle).await {
            Ok(Ok(n)) => undelivered += n,
            Ok(Err(e)) => {
                tracing::error!(sink = %slot.name, error = %e, "sink task failed");
                undelivered += spill_or_discard(&registry, slot);
            }
            Err(_) => {
                abort.abort();
                let n = spill_or_discard(&registry, slot);
                tracing::warn!(sink = %slot.name, undelivered = n, "sink did not drain within the grace period");
                undelivered += n;
            }
        }
    }
    for c in checkpoints {
        c.abort();
    }
    let _ = api_stop_tx.send(true);
    if let Some(t) = api_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let accepted: u64 = all_listener_metrics.iter().map(|m| m.decoded.get()).sum();
    for slot in pipeline.sinks() {
        let get = |name: &str| registry.value(name, &[("sink", &slot.name)]).unwrap_or(0.0) as u64;
        tracing::info!(
            sink = %slot.name,
            queued = get("hepflow_sink_queued_total"),
            sent = get("hepflow_sink_sent_total"),
            "sink closed"
        );
    }
    if undelivered > 0 {
        tracing::warn!(
            accepted,
            undelivered,
            "hepflow stopped; messages left undelivered (raise shutdown.grace_period to give sinks more time)"
        );
    } else {
        tracing::info!(
            accepted,
            "hepflow stopped; every queued message was delivered"
        );
    }
    Ok(RunSummary { undelivered })
}

/// What a sink task that ended abnormally left in its queue: written to
/// the spool (nothing lost; a batch it had in flight from memory is not
/// there) or, without a spool, dropped and counted. Returns how many were
/// lost.
fn spill_or_discard(registry: &Registry, slot: &SinkSlot) -> u64 {
    if let Some(spilled) = slot.queue.spill_remaining(Vec::new()) {
        tracing::info!(sink = %slot.name, spilled, "shutdown: what the sink's queue still held is in the spool; the next start delivers it");
        return 0;
    }
    let n = slot.queue.discard_remaining() as u64;
    undelivered_counter(registry, &slot.name).add(n);
    n
}

/// Show listener `name` and its address on `/api/v1/stats`.
fn show_listener(state: &ApiState, name: &str, kind: &str, addr: std::net::SocketAddr) {
    state
        .listeners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_string(), kind.to_string(), addr));
}

/// Run listener `name`'s task (what `make` builds) under supervision: a
/// panic is counted as `hepflow_task_restarts_total{task="listener:NAME"}`
/// and the task built and run again.
fn spawn_listener<F, Fut>(registry: &Registry, name: &str, make: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let task = format!("listener:{name}");
    let restarts = restarts_counter(registry, &task);
    let mut make = make;
    tokio::spawn(async move { supervise(&task, &restarts, &mut make).await })
}
