//! The TCP listener: HEP3 messages back to back on a stream, each framed by
//! its own total length (bytes 4-5). A connection owns a read buffer; a
//! frame is parsed only once it is wholly buffered, otherwise more is read,
//! so split and coalesced messages both work. A framing error (not `HEP3`,
//! a length below 6 or above `max_message_bytes`) is counted and closes the
//! connection; a well-framed message that does not decode is counted and
//! skipped. Bounds: `max_connections`, `max_message_bytes`, `idle_timeout`.

use super::Decoder;
use crate::config::TcpListenerConfig;
use crate::pipeline::Pipeline;
use bytes::BytesMut;
use futures::FutureExt;
use hepflow_sdk::hep::hep3_frame_len;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// A connection task yields to the runtime after handing on this many
/// messages. A busy stream is always readable, so without it a task
/// keeps its worker for up to tokio's budget of 128 reads (~12,000
/// messages of 600 bytes) at a time; four such connections filled a sink's
/// 32 MiB queue before the sink's own task got a turn, and 21 % of the
/// messages were dropped at the null sink's queue at 1.6 M msg/s.
const YIELD_EVERY_MESSAGES: usize = 2048;

/// Bind a stream listener (TCP, or TLS before its handshake).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accept stream connections until `stop` turns true, at most
/// `max_connections` at once (more are closed at once and counted); each
/// accepted connection is served by `serve_one` in its own task, holding
/// its connection slot until it ends. On stop, waits for every connection
/// task to hand over what it has framed and end. Shared by TCP and TLS.
pub async fn accept_loop<F, Fut>(
    listener: Arc<TcpListener>,
    max_connections: usize,
    decoder: Arc<Decoder>,
    mut stop: watch::Receiver<bool>,
    kind: &'static str,
    serve_one: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections));
    let m = decoder.metrics.clone();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        // Reap finished connection tasks so the set stays bounded; one
        // that panicked closed its connection (the agent reconnects).
        while let Some(done) = conns.try_join_next() {
            if let Err(e) = done {
                if e.is_panic() {
                    m.connection_panics.inc();
                    tracing::error!(error = %e, "a {kind} connection task panicked; its connection is closed");
                }
            }
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "{kind} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            m.connections_rejected.inc();
            m.log_bad(
                peer,
                &format!("refused a {kind} connection over max_connections"),
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task = serve_one(stream, peer);
        conns.spawn(async move {
            task.await;
            drop(permit);
        });
    }
    // Stop: every connection task sees the same signal, hands what it has
    // already framed to the pipeline, and ends.
    while conns.join_next().await.is_some() {}
}

/// Accept TCP connections until `stop` turns true; then wait for every
/// connection task to hand over what it has framed and end.
pub async fn serve(
    listener: Arc<TcpListener>,
    cfg: TcpListenerConfig,
    decoder: Arc<Decoder>,
    pipeline: Arc<Pipeline>,
    stop: watch::Receiver<bool>,
) {
    let limits = StreamLimits {
        max_message_bytes: cfg.max_message_bytes,
        idle_timeout: cfg.idle_timeout,
    };
    let d = decoder.clone();
    let s = stop.clone();
    accept_loop(
        listener,
        cfg.max_connections,
        decoder,
        stop,
        "TCP",
        move |stream, peer| {
            let (decoder, pipeline, stop) = (d.clone(), pipeline.clone(), s.clone());
            async move {
                decoder.metrics.connections.inc();
                decoder.metrics.open_connections.add(1);
                connection(stream, peer, limits, &decoder, &pipeline, stop).await;
                decoder.metrics.open_connections.add(-1);
            }
        },
    )
    .await;
}

/// Bounds of one stream connection (TCP or TLS).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Largest HEP3 message accepted.
    pub max_message_bytes: usize,
    /// Close after this long without data.
    pub idle_timeout: Duration,
}

/// Serve one HEP3 stream until EOF, a framing error, idleness or `stop`
/// (after which what is already waiting is still read and handed over,
/// see [`super::STOP_DRAIN_MAX`]).
pub async fn connection<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    cfg: StreamLimits,
    decoder: &Decoder,
    pipeline: &Pipeline,
    mut stop: watch::Receiver<bool>,
) {
    let m = &decoder.metrics;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut parts = hepflow_sdk::EventBatch::new();
    let mut since_yield = 0;
    let mut draining_until = None;
    loop {
        // Cut every whole frame out of the buffer; the frames of one read
        // become events in one shared allocation.
        let now = SystemTime::now();
        loop {
            let len = match hep3_frame_len(&buf) {
                Ok(Some(len)) if len <= cfg.max_message_bytes => len,
                Ok(Some(len)) => {
                    m.framing_errors.inc();
                    m.log_bad(
                        peer,
                        &format!(
                            "closing TCP connection: HEP3 length {len} exceeds max_message_bytes {}",
                            cfg.max_message_bytes
                        ),
                    );
                    flush(pipeline, &mut parts).await;
                    return;
                }
                Ok(None) => break,
                Err(e) => {
                    m.framing_errors.inc();
                    m.decode_errors[e.reason_index()].inc();
                    m.log_bad(
                        peer,
                        &format!("closing TCP connection on a framing error: {e}"),
                    );
                    flush(pipeline, &mut parts).await;
                    return;
                }
            };
            if buf.len() < len {
                buf.reserve(len - buf.len());
                break;
            }
            let frame = buf.split_to(len).freeze();
            m.received.inc();
            m.bytes.add(len as u64);
            decoder.decode_into(frame, peer, now, &mut parts);
        }
        since_yield += parts.len();
        flush(pipeline, &mut parts).await;
        if since_yield >= YIELD_EVERY_MESSAGES {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let read = if let Some(until) = draining_until {
            // Stopping: only what is already waiting, then end.
            if std::time::Instant::now() >= until {
                return;
            }
            match stream.read_buf(&mut buf).now_or_never() {
                Some(r) => Ok(r),
                None => return,
            }
        } else {
            tokio::select! {
                r = tokio::time::timeout(cfg.idle_timeout, stream.read_buf(&mut buf)) => r,
                _ = stop.changed() => {
                    draining_until = Some(std::time::Instant::now() + super::STOP_DRAIN_MAX);
                    continue;
                }
            }
        };
        match read {
            Err(_) => {
                m.idle_closed.inc();
                return;
            }
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    m.decode_errors[0].inc();
                    m.log_bad(
                        peer,
                        "TCP connection closed in the middle of a HEP3 message",
                    );
                }
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TCP read failed");
                return;
            }
        }
    }
}

async fn flush(pipeline: &Pipeline, parts: &mut hepflow_sdk::EventBatch) {
    if !parts.is_empty() {
        let mut events = Vec::with_capacity(parts.len());
        parts.finish(&mut events);
        pipeline.dispatch(events).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::testing::{hep3_message, one_queue};
    use hepflow_sdk::Transport;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncWriteExt, ReadBuf};

    fn limits() -> StreamLimits {
        StreamLimits {
            max_message_bytes: 65535,
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// What the peer sent before the stop is read and handed over, even
    /// though the peer keeps the connection open.
    #[tokio::test]
    async fn at_stop_what_is_already_waiting_is_handed_over() {
        let (decoder, pipeline, queue, _r) = one_queue(Transport::Tcp, 1 << 20);
        let msg = hep3_message();
        let n = 3000;
        let (mut peer, ours) = tokio::io::duplex(n * msg.len() + 1);
        for _ in 0..n {
            peer.write_all(&msg).await.unwrap();
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        stop_tx.send(true).unwrap();
        let addr = "127.0.0.1:9060".parse().unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            connection(ours, addr, limits(), &decoder, &pipeline, stop_rx),
        )
        .await
        .expect("the connection task ends after the stop");
        assert_eq!(queue.len(), n, "every message sent before the stop");
        assert_eq!(decoder.metrics.decoded.get(), n as u64);
        drop(peer);
    }

    /// A peer that never stops sending cannot hold the shutdown: the task
    /// reads for at most STOP_DRAIN_MAX after the stop.
    #[tokio::test]
    async fn a_peer_that_keeps_sending_does_not_hold_the_stop() {
        struct Endless(Vec<u8>, usize);
        impl AsyncRead for Endless {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                while buf.remaining() > 0 {
                    let at = self.1;
                    let k = buf.remaining().min(self.0.len() - at);
                    buf.put_slice(&self.0[at..at + k]);
                    self.1 = (at + k) % self.0.len();
                }
                Poll::Ready(Ok(()))
            }
        }
        // A small queue: what does not fit is dropped (and counted).
        let (decoder, pipeline, _queue, _r) = one_queue(Transport::Tcp, 4096);
        let (stop_tx, stop_rx) = watch::channel(false);
        stop_tx.send(true).unwrap();
        let addr = "127.0.0.1:9060".parse().unwrap();
        tokio::time::timeout(
            Duration::from_secs(60),
            connection(
                Endless(hep3_message(), 0),
                addr,
                limits(),
                &decoder,
                &pipeline,
                stop_rx,
            ),
        )
        .await
        .expect("the drain after a stop is bounded");
        assert!(decoder.metrics.decoded.get() > 0);
    }
}
