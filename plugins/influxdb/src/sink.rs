//! [`InfluxSink`]: the `Sink` the engine drives. `write` counts each batch
//! into the aggregator (and the Prometheus state); `write` and `flush`
//! (which the engine calls every `batch.flush_interval`, idle or not) emit
//! the intervals that are due into the pending buffer; a background task
//! ([`crate::sender`]) writes that buffer to the server. `start` opens the
//! buffer's spool when the sink has one. `close` emits the open
//! intervals, gives the sender `close_timeout` to write everything, and
//! puts what is left in front of the spool (or, without one, counts it).
//!
//! `write` never fails: a message is delivered once it is counted. The
//! `Delivered` of a batch counts its events and 0 bytes (the bytes sent to
//! InfluxDB are `hepflow_influxdb_sent_bytes_total`).

use crate::aggregate::{unix_ns, AggCounters, AggSettings, Aggregator};
use crate::config::{Api, InfluxSinkConfig};
use crate::prom::{self, PromState};
use crate::sender::{self, LineCodec, Pending, SenderMetrics, SenderSettings};
use crate::writer::Writer;
use async_trait::async_trait;
use hepflow_sdk::delivery::RetryConfig;
use hepflow_sdk::queue::spawn_every;
use hepflow_sdk::sink::{Delivered, Sink, SinkContext, SinkError};
use hepflow_sdk::supervise::{restarts_counter, supervise};
use hepflow_sdk::Event;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Name of the gauge that marks which influxdb sink exports the
/// aggregates to Prometheus (only one may: the series have no sink label).
const PROM_CLAIM: &str = "hepflow_influxdb_prometheus_export";

/// The InfluxDB sink.
pub struct InfluxSink {
    cfg: InfluxSinkConfig,
    ctx: SinkContext,
    agg: Aggregator,
    pending: Arc<Pending>,
    writer: Option<Writer>,
    task: Option<tokio::task::JoinHandle<()>>,
    checkpoints: Option<tokio::task::JoinHandle<()>>,
    out: Vec<String>,
    discard_points: bool,
}

impl InfluxSink {
    /// How often the points' spool is fsynced (the sink's spool setting).
    fn fsync_interval(&self) -> Duration {
        self.ctx
            .spool
            .as_ref()
            .map_or(Duration::from_millis(100), |s| s.config.fsync_interval)
    }

    /// Build (no I/O). `path` is the section's key path, for errors.
    pub fn new(cfg: InfluxSinkConfig, ctx: SinkContext, path: &str) -> Result<Self, String> {
        let writer = Writer::new(&cfg, path)?;
        let sink = ctx.name.to_string();
        let prom_state = if cfg.prometheus {
            let taken = ctx.registry.value(PROM_CLAIM, &[]).is_some_and(|v| v > 0.0);
            if taken {
                tracing::warn!(
                    sink = %sink,
                    "another influxdb sink already exposes the aggregates on /metrics; set prometheus = false on this one to silence this"
                );
                None
            } else {
                ctx.registry
                    .gauge(
                        PROM_CLAIM,
                        "1 when an influxdb sink exposes the HEP/SIP/RTCP aggregates on /metrics",
                        &[],
                    )
                    .set(1);
                let st = Arc::new(Mutex::new(PromState::new(
                    &cfg.tags,
                    cfg.max_series,
                    &ctx.registry,
                    &sink,
                )));
                prom::register(&ctx.registry, st.clone());
                Some(st)
            }
        } else {
            None
        };
        let counters = AggCounters {
            rtcp_unparsed: ctx.registry.counter(
                "hepflow_influxdb_rtcp_unparsed_total",
                "RTCP (HEP type 5) payloads that were not the expected JSON report",
                &[("sink", &sink)],
            ),
            unencodable: ctx.registry.counter(
                "hepflow_influxdb_unencodable_total",
                "Points that could not be written as line protocol",
                &[("sink", &sink)],
            ),
        };
        let settings = AggSettings {
            interval_ns: cfg.interval.as_nanos() as i64,
            lateness_ns: cfg.lateness.as_nanos() as i64,
            mode: cfg.mode,
            optional: cfg.tags.clone(),
            prefix_v4: cfg.net_prefix_v4,
            prefix_v6: cfg.net_prefix_v6,
            extra_tags: cfg
                .extra_tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_series: cfg.max_series,
            hepflow_node: ctx.node_name.to_string(),
        };
        let agg = Aggregator::new(settings, &ctx.registry, &sink, counters, prom_state);
        let pending = Arc::new(Pending::new(
            cfg.max_pending_points,
            cfg.when_pending_full,
            SenderMetrics::new(&ctx.registry, &sink),
        ));
        Ok(InfluxSink {
            discard_points: cfg.api == Api::None,
            cfg,
            ctx,
            agg,
            pending,
            writer,
            task: None,
            checkpoints: None,
            out: Vec::new(),
        })
    }

    /// The hub's cumulative decode errors: (listener, reason, total).
    fn decode_error_totals(&self) -> Vec<(String, String, u64)> {
        let snap = self.ctx.registry.snapshot_json();
        let Some(list) = snap
            .get(crate::schema::PROM_DECODE_ERRORS)
            .and_then(|v| v.as_array())
        else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|s| {
                let l = s.get("labels")?;
                Some((
                    l.get("listener")?.as_str()?.to_string(),
                    l.get("reason")?.as_str()?.to_string(),
                    s.get("value")?.as_f64()? as u64,
                ))
            })
            .collect()
    }

    /// Emit what is due (everything when `all`) into the pending buffer.
    fn emit(&mut self, all: bool) {
        let now = unix_ns(SystemTime::now());
        self.agg.emit_due(now, all, &mut self.out);
        if self.cfg.mode.aggregates() && !self.discard_points {
            let stamp = if all {
                // The interval in progress at shutdown.
                Some(now - now.rem_euclid(self.cfg.interval.as_nanos() as i64))
            } else {
                self.agg.decode_errors_due(now)
            };
            if let Some(ts) = stamp {
                let totals = self.decode_error_totals();
                self.agg.decode_errors(&totals, ts, &mut self.out);
            }
        }
        self.hand_over();
    }

    fn hand_over(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.out);
        if !self.discard_points {
            self.pending.push(lines);
        }
    }
}

#[async_trait]
impl Sink for InfluxSink {
    async fn start(&mut self) -> Result<(), SinkError> {
        if self.task.is_some() {
            return Ok(());
        }
        if self.pending.disk().is_none() && !self.discard_points {
            let labels = [("sink", &*self.ctx.name), ("part", "points")];
            if let Some(disk) = self.ctx.part_disk("points", &labels, LineCodec)? {
                self.pending.set_disk(disk);
                let pending = self.pending.clone();
                self.checkpoints = Some(spawn_every(self.fsync_interval(), move || {
                    pending.checkpoint()
                }));
            }
        }
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let retry = RetryConfig::for_plugin(
            self.ctx.retry.as_ref(),
            &format!("sinks.{}", self.ctx.name),
            [
                ("backoff_initial", self.cfg.backoff_initial),
                ("backoff_max", self.cfg.backoff_max),
            ],
            crate::config::default_retry(),
        );
        let settings = SenderSettings {
            sink: self.ctx.name.to_string(),
            target: self.cfg.target(),
            max_points_per_request: self.cfg.max_points_per_request,
            backoff_initial: retry.initial_backoff,
            backoff_max: retry.max_backoff,
            health_interval: self.cfg.health_interval,
        };
        // Supervised: a panic in the writer task is counted and the task
        // started again on the same pending buffer.
        let task = format!("sink:{}:sender", self.ctx.name);
        let restarts = restarts_counter(&self.ctx.registry, &task);
        let (writer, pending, health) = (
            std::sync::Arc::new(writer),
            self.pending.clone(),
            self.ctx.health.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            supervise(&task, &restarts, || {
                sender::run(
                    writer.clone(),
                    pending.clone(),
                    settings.clone(),
                    health.clone(),
                )
            })
            .await
        }));
        tracing::info!(
            sink = %self.ctx.name,
            api = ?self.cfg.api,
            target = %self.cfg.target(),
            interval = ?self.cfg.interval,
            mode = ?self.cfg.mode,
            "influxdb sink started"
        );
        Ok(())
    }

    async fn write(&mut self, batch: &[Event]) -> Result<Delivered, SinkError> {
        let now = unix_ns(SystemTime::now());
        self.agg.ingest(batch, now, &mut self.out);
        self.emit(false);
        Ok(Delivered {
            events: batch.len() as u64,
            bytes: 0,
        })
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.emit(false);
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        self.emit(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        self.pending.wake();
        let deadline = tokio::time::Instant::now() + self.cfg.close_timeout;
        while self.pending.outstanding() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let _ = task.await;
        if let Some(c) = self.checkpoints.take() {
            c.abort();
        }
        let (spooled, left) = self.pending.give_up();
        if spooled > 0 {
            tracing::info!(
                sink = %self.ctx.name,
                target = %self.cfg.target(),
                points = spooled,
                "influxdb sink closed with points not written yet; they are in its spool and the next start sends them"
            );
        }
        if left > 0 {
            tracing::warn!(
                sink = %self.ctx.name,
                target = %self.cfg.target(),
                points = left,
                "influxdb sink closed with points not written (counted as dropped, reason shutdown); raise close_timeout if the server was reachable, or give the sink a spool"
            );
            return Err(SinkError::fatal(
                "shutdown",
                format!("{left} points could not be written before close_timeout"),
            ));
        }
        Ok(())
    }
}

impl Drop for InfluxSink {
    fn drop(&mut self) {
        // A sink dropped without `close` (rebuilt after a panic) lets go
        // of its spool's lock, so the new instance can open it.
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(c) = self.checkpoints.take() {
            c.abort();
        }
    }
}
