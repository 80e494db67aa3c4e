//! The UDP listener: `workers` sockets bound to the same address with
//! SO_REUSEPORT, each served by its own OS thread running a batched receive
//! loop (`recvmmsg` on Linux). Datagrams are received into a per-thread
//! scratch area, then packed back to back into one buffer per receive call,
//! sized exactly to them, so an event's bytes are a slice of its batch's
//! buffer rather than one allocation per datagram, and a batch keeps no
//! memory alive but its own; the events of one batch share one allocation
//! ([`ReceiveBatch`]). Each received batch is decoded and handed to the
//! pipeline in one call.

use super::Decoder;
use crate::config::UdpListenerConfig;
use crate::pipeline::Pipeline;
use crate::supervise::{restarts_counter, supervised};
use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Size of the shared buffer datagrams are packed into when the caller
/// does not say beforehand how many bytes a batch will hold
/// ([`ReceiveBatch::begin`]; the Linux receive loop always does, so there
/// each batch gets a buffer of exactly its size). A buffer lives as long as
/// any message in it waits in some queue.
pub const ARENA_BYTES: usize = 256 * 1024;

/// How often a blocked receive wakes up to check for shutdown.
const POLL: Duration = Duration::from_millis(200);

fn bind_one(addr: SocketAddr, rcvbuf: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    if let Err(e) = socket.set_recv_buffer_size(rcvbuf) {
        tracing::warn!(%addr, error = %e, "could not set SO_RCVBUF");
    }
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket.into())
}

/// Bind the listener's sockets (one per worker; `workers = 0` means one per
/// core). With port 0 the first socket picks the port and the others join it.
pub fn bind(cfg: &UdpListenerConfig) -> io::Result<Vec<UdpSocket>> {
    let workers = if cfg.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.workers
    };
    let first = bind_one(cfg.bind, cfg.recv_buffer_bytes)?;
    let addr = first.local_addr()?;
    // The kernel caps SO_RCVBUF at net.core.rmem_max without an error
    // (Linux reports twice the usable size it granted); every worker's
    // socket gets the same, so the first one tells.
    let rcvbuf = cfg.recv_buffer_bytes;
    match socket2::SockRef::from(&first).recv_buffer_size() {
        Ok(got) if got < rcvbuf => tracing::warn!(
            %addr, requested = rcvbuf, granted = got,
            "the kernel capped the UDP receive buffer below recv_buffer_bytes; bursts may be dropped at the socket (raise it: sysctl -w net.core.rmem_max={rcvbuf})"
        ),
        _ => {}
    }
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(bind_one(addr, cfg.recv_buffer_bytes)?);
    }
    Ok(sockets)
}

/// Start one receive thread per socket.
pub fn spawn(
    name: &str,
    sockets: Vec<UdpSocket>,
    cfg: &UdpListenerConfig,
    decoder: Arc<Decoder>,
    pipeline: Arc<Pipeline>,
    stop: Arc<AtomicBool>,
    registry: &hepflow_sdk::metrics::Registry,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let decoder = decoder.clone();
        let pipeline = pipeline.clone();
        let stop = stop.clone();
        let batch = cfg.batch_size;
        let max = cfg.max_datagram_bytes;
        let task = format!("udp:{name}:{i}");
        let restarts = restarts_counter(registry, &task);
        handles.push(
            std::thread::Builder::new()
                .name(format!("udp-{name}-{i}"))
                .spawn(move || {
                    supervised(&task, &restarts, &stop, || {
                        receive_loop(&socket, batch, max, &decoder, &pipeline, &stop)
                    })
                })?,
        );
    }
    Ok(handles)
}

/// Packs datagrams into shared arena buffers.
struct Arena {
    buf: BytesMut,
}

/// Turns the datagrams of one receive call into events: each datagram is
/// packed into the batch's buffer, decoded (its fields are slices of the
/// buffer), and the batch's events are made in one allocation. This
/// allocates nothing per datagram: per batch one buffer (of the size given
/// to [`Self::begin`], else one per [`ARENA_BYTES`] of traffic), the
/// batch's event storage (reserved whole at the first push, and never
/// moved afterwards), and two allocations in [`ReceiveBatch::take_events`]
/// (the shared handle and the list).
pub struct ReceiveBatch {
    arena: Arena,
    events: hepflow_sdk::EventBatch,
}

impl ReceiveBatch {
    /// A batcher for up to `batch` datagrams per receive call.
    pub fn new(batch: usize) -> Self {
        ReceiveBatch {
            arena: Arena::new(),
            events: hepflow_sdk::EventBatch::with_reserve(batch),
        }
    }

    /// Start a batch whose datagrams add up to `bytes`: they are packed
    /// into one buffer of exactly that size, which the batch's events then
    /// keep alive and nothing else (a buffer shared with the next batch
    /// would stay alive as long as either batch's messages wait anywhere,
    /// which the queues' byte bounds would not see).
    pub fn begin(&mut self, bytes: usize) {
        self.arena.buf = BytesMut::with_capacity(bytes);
    }

    /// Store and decode one datagram (errors are counted by the decoder).
    pub fn push(&mut self, decoder: &Decoder, data: &[u8], peer: SocketAddr, now: SystemTime) {
        let raw = self.arena.store(data);
        decoder.decode_into(raw, peer, now, &mut self.events);
    }

    /// The events of the datagrams pushed since the last call.
    pub fn take_events(&mut self) -> Vec<hepflow_sdk::Event> {
        let mut events = Vec::with_capacity(self.events.len());
        self.events.finish(&mut events);
        events
    }
}

impl Arena {
    fn new() -> Self {
        Arena {
            buf: BytesMut::new(),
        }
    }

    fn store(&mut self, data: &[u8]) -> Bytes {
        if self.buf.capacity() < data.len() {
            self.buf = BytesMut::with_capacity(ARENA_BYTES.max(data.len()));
        }
        self.buf.extend_from_slice(data);
        self.buf.split().freeze()
    }
}

#[cfg(target_os = "linux")]
fn receive_loop(
    socket: &UdpSocket,
    batch: usize,
    max: usize,
    decoder: &Decoder,
    pipeline: &Pipeline,
    stop: &AtomicBool,
) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    // One slot per datagram, one byte longer than the largest accepted
    // datagram so that truncation is detectable through MSG_TRUNC.
    let slot = max + 1;
    let mut scratch = vec![0u8; batch * slot];
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; batch];
    let mut iovecs: Vec<libc::iovec> = (0..batch)
        .map(|i| libc::iovec {
            iov_base: scratch[i * slot..].as_mut_ptr().cast(),
            iov_len: slot,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    let mut received = ReceiveBatch::new(batch);
    let m = &decoder.metrics;
    // Once stopped: what the socket already holds, without waiting.
    let mut draining_until: Option<std::time::Instant> = None;
    loop {
        match draining_until {
            None if stop.load(Ordering::Relaxed) => {
                draining_until = Some(std::time::Instant::now() + super::STOP_DRAIN_MAX);
            }
            Some(until) if std::time::Instant::now() >= until => break,
            _ => {}
        }
        let flags = if draining_until.is_some() {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        for i in 0..batch {
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            msgs[i].msg_len = 0;
        }
        // SAFETY: every mmsghdr points at a live iovec into `scratch` and at
        // a live sockaddr_storage, all sized as declared, for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                batch as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if draining_until.is_some() && err.kind() == io::ErrorKind::WouldBlock {
                break;
            }
            match err.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => continue,
                _ => {
                    tracing::error!(error = %err, "UDP receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let now = SystemTime::now();
        let fits = |m: &libc::mmsghdr| {
            (m.msg_len as usize) <= max && m.msg_hdr.msg_flags & libc::MSG_TRUNC == 0
        };
        received.begin(
            msgs[..n as usize]
                .iter()
                .filter(|m| fits(m))
                .map(|m| m.msg_len as usize)
                .sum(),
        );
        for i in 0..n as usize {
            let len = msgs[i].msg_len as usize;
            m.received.inc();
            m.bytes.add(len as u64);
            // SAFETY: the kernel wrote msg_namelen bytes of a valid address.
            let peer = unsafe { socket2::SockAddr::new(addrs[i], msgs[i].msg_hdr.msg_namelen) }
                .as_socket()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            if !fits(&msgs[i]) {
                m.truncated.inc();
                m.log_bad(peer, "dropped a datagram larger than max_datagram_bytes");
                continue;
            }
            received.push(decoder, &scratch[i * slot..i * slot + len], peer, now);
        }
        let events = received.take_events();
        if !events.is_empty() {
            pipeline.dispatch_blocking(events);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn receive_loop(
    socket: &UdpSocket,
    _batch: usize,
    max: usize,
    decoder: &Decoder,
    pipeline: &Pipeline,
    stop: &AtomicBool,
) {
    let mut scratch = vec![0u8; max + 1];
    let mut received = ReceiveBatch::new(1);
    let m = &decoder.metrics;
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut scratch) {
            Ok((len, peer)) => {
                m.received.inc();
                m.bytes.add(len as u64);
                if len > max {
                    m.truncated.inc();
                    continue;
                }
                received.push(decoder, &scratch[..len], peer, SystemTime::now());
                let events = received.take_events();
                if !events.is_empty() {
                    pipeline.dispatch_blocking(events);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => tracing::error!(error = %e, "UDP receive failed"),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::ingest::testing::{hep3_message, one_queue};
    use hepflow_sdk::Transport;

    /// Datagrams the kernel received before the stop are read and handed
    /// over by the receive loop before it ends.
    #[test]
    fn at_stop_the_datagrams_already_received_are_handed_over() {
        let (decoder, pipeline, queue, _r) = one_queue(Transport::Udp, 1 << 20);
        let socket = bind_one("127.0.0.1:0".parse().unwrap(), 4 << 20).unwrap();
        let to = socket.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let msg = hep3_message();
        let n = 100;
        for _ in 0..n {
            sender.send_to(&msg, to).unwrap();
        }
        let stop = AtomicBool::new(true);
        receive_loop(&socket, 32, 65535, &decoder, &pipeline, &stop);
        assert_eq!(decoder.metrics.received.get(), n as u64);
        assert_eq!(queue.len(), n);
    }
}
