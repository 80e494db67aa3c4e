//! One connection to a target and its batched writers.
//!
//! - UDP: a connected socket; one datagram per message, sent in batches
//!   with `sendmmsg` (Linux; elsewhere one `send` per message). A connected
//!   UDP socket learns of ICMP "port unreachable" from the target's host:
//!   that surfaces as `ECONNREFUSED` on a send or on the socket's receive
//!   side and counts as the target being down.
//! - TCP: HEP3 messages back to back (they carry their own length),
//!   several per `write`; `TCP_NODELAY` and keep-alive are on.
//! - TLS: the same over rustls (tokio-rustls), flushed after each batch.
//!
//! Receivers never send anything on a HEP stream; the read side is only
//! watched for the end of the stream (EOF or reset), so a target that
//! closes is noticed while idle, not only on the next write. Bytes a
//! receiver does send are read and discarded.

use crate::prepare::Msg;
use crate::target::{Scheme, TargetUrl};
use crate::tls::TlsClient;
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;

/// An open connection.
pub enum Conn {
    /// A connected UDP socket.
    Udp(UdpSocket),
    /// A TCP stream, split.
    Tcp(OwnedReadHalf, OwnedWriteHalf),
    /// A TLS stream, split, and its socket (for [`Conn::peer_gone`]).
    Tls(
        Box<ReadHalf<TlsStream<TcpStream>>>,
        Box<WriteHalf<TlsStream<TcpStream>>>,
        std::os::fd::RawFd,
    ),
}

/// What one batch write achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Messages written.
    pub sent: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Write calls made.
    pub writes: u64,
    /// Messages that could not be sent and were given up (a datagram the
    /// kernel refused, e.g. too large); counted as `send_error`.
    pub failed: u64,
}

/// A write that lost the connection after `done` messages of the batch
/// went out (those are in `written`).
#[derive(Debug)]
pub struct WriteFailed {
    /// Messages of the batch written before the failure.
    pub done: usize,
    /// What was written before the failure.
    pub written: Written,
    /// The error.
    pub error: io::Error,
}

async fn resolve(url: &TargetUrl) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {}: {e}", url.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", url.host),
        ));
    }
    Ok(addrs)
}

async fn connect_tcp(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                let ka = socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(30))
                    .with_interval(Duration::from_secs(10));
                // Keep-alive is a help for finding dead peers, not a need.
                let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&ka);
                return Ok(s);
            }
            Err(e) => last = Some(io::Error::new(e.kind(), format!("connect to {a}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

async fn connect_udp(addrs: &[SocketAddr]) -> io::Result<UdpSocket> {
    let mut last = None;
    for a in addrs {
        let local: SocketAddr = if a.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let r = async {
            let s = UdpSocket::bind(local).await?;
            s.connect(a).await?;
            Ok::<_, io::Error>(s)
        }
        .await;
        match r {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(io::Error::new(e.kind(), format!("udp socket to {a}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address to send to")))
}

/// Open a connection to `url` within `timeout` (resolve, connect, TLS
/// handshake).
pub async fn connect(
    url: &TargetUrl,
    tls: Option<&TlsClient>,
    timeout: Duration,
) -> io::Result<Conn> {
    let work = async {
        let addrs = resolve(url).await?;
        match url.scheme {
            Scheme::Udp => Ok(Conn::Udp(connect_udp(&addrs).await?)),
            Scheme::Tcp => {
                let (r, w) = connect_tcp(&addrs).await?.into_split();
                Ok(Conn::Tcp(r, w))
            }
            Scheme::Tls => {
                let tls = tls.ok_or_else(|| io::Error::other("no TLS settings"))?;
                let tcp = connect_tcp(&addrs).await?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(stream.get_ref().0);
                let (r, w) = tokio::io::split(stream);
                Ok(Conn::Tls(Box::new(r), Box::new(w), fd))
            }
        }
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect timed out after {timeout:?}"),
        )
    })?
}

impl Conn {
    /// True for TCP and TLS.
    pub fn is_stream(&self) -> bool {
        !matches!(self, Conn::Udp(_))
    }

    /// Resolves when the target ends the connection (EOF, reset, or for
    /// UDP an ICMP error), with why. Cancel-safe.
    pub async fn closed(&mut self) -> io::Error {
        let mut scratch = [0u8; 2048];
        loop {
            let r = match self {
                Conn::Udp(s) => s.recv(&mut scratch).await,
                Conn::Tcp(r, _) => r.read(&mut scratch).await,
                Conn::Tls(r, _, _) => r.read(&mut scratch).await,
            };
            match r {
                Ok(0) if self.is_stream() => {
                    return io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the target closed the connection",
                    )
                }
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    }

    /// Whether the kernel already knows the stream's peer is gone (it sent
    /// FIN or RST), asked of the socket itself rather than of the
    /// runtime's readiness, which may not have seen it yet: a write then
    /// would be accepted by the kernel and lost. `None` for UDP, and while
    /// the peer is there (receivers never send; data it did send is left
    /// for [`Self::closed`]).
    pub fn peer_gone(&self) -> Option<io::Error> {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Conn::Udp(_) => return None,
            Conn::Tcp(_, w) => w.as_ref().as_raw_fd(),
            Conn::Tls(_, _, fd) => *fd,
        };
        let mut byte = 0u8;
        // SAFETY: `fd` is this connection's open socket (the connection
        // owns it for as long as `self` lives); one byte is peeked into a
        // local, nothing is consumed, and the call does not block.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => Some(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the target closed the connection",
            )),
            n if n > 0 => None,
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                    _ => Some(e),
                }
            }
        }
    }

    /// Write `msgs` (prepared for this target's kind), several per write
    /// call. `buf` is a reusable scratch buffer for stream writes.
    pub async fn write_batch(
        &mut self,
        msgs: &[Msg],
        buf: &mut BytesMut,
    ) -> Result<Written, WriteFailed> {
        match self {
            Conn::Udp(s) => send_datagrams(s, msgs).await,
            Conn::Tcp(_, w) => write_stream(w, msgs, buf, false).await,
            Conn::Tls(_, w, _) => write_stream(w.as_mut(), msgs, buf, true).await,
        }
    }
}

async fn write_stream<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    msgs: &[Msg],
    buf: &mut BytesMut,
    flush: bool,
) -> Result<Written, WriteFailed> {
    buf.clear();
    for m in msgs {
        buf.extend_from_slice(&m.bytes);
    }
    let r = async {
        w.write_all(buf).await?;
        if flush {
            w.flush().await?;
        }
        Ok::<_, io::Error>(())
    }
    .await;
    match r {
        Ok(()) => Ok(Written {
            sent: msgs.len() as u64,
            bytes: buf.len() as u64,
            writes: 1,
            failed: 0,
        }),
        // What part reached the receiver is unknown: the whole batch is
        // sent again (a message may then arrive twice).
        Err(error) => Err(WriteFailed {
            done: 0,
            written: Written::default(),
            error,
        }),
    }
}

/// Errors that mean the target (or the way to it) is gone, as opposed to
/// one datagram being unsendable.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED)
            | Some(libc::ENETUNREACH)
            | Some(libc::EHOSTUNREACH)
            | Some(libc::ENETDOWN)
            | Some(libc::EHOSTDOWN)
            | Some(libc::ENOTCONN)
            | Some(libc::EPIPE)
            | Some(libc::EADDRNOTAVAIL)
    )
}

async fn send_datagrams(s: &UdpSocket, msgs: &[Msg]) -> Result<Written, WriteFailed> {
    let mut w = Written::default();
    let mut done = 0;
    while done < msgs.len() {
        let r = s.try_io(tokio::io::Interest::WRITABLE, || {
            send_some(s, &msgs[done..])
        });
        match r {
            Ok(n) => {
                w.writes += 1;
                w.sent += n as u64;
                w.bytes += msgs[done..done + n]
                    .iter()
                    .map(|m| m.bytes.len() as u64)
                    .sum::<u64>();
                done += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(error) = s.writable().await {
                    return Err(WriteFailed {
                        done,
                        written: w,
                        error,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if is_connection_error(&error) => {
                return Err(WriteFailed {
                    done,
                    written: w,
                    error,
                })
            }
            Err(_) => {
                // This datagram cannot be sent (EMSGSIZE, ENOBUFS...): give
                // it up and go on with the rest.
                w.failed += 1;
                done += 1;
            }
        }
    }
    Ok(w)
}

/// Send as many of `msgs` as the kernel takes in one call; at least one
/// or an error.
#[cfg(target_os = "linux")]
fn send_some(s: &UdpSocket, msgs: &[Msg]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = msgs.len().min(crate::config::MAX_WRITE_MESSAGES);
    let mut iovs: Vec<libc::iovec> = msgs[..n]
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.bytes.as_ptr() as *mut libc::c_void,
            iov_len: m.bytes.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is a plain C struct; all-zero is valid
            // (no name: the socket is connected; no control data).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov as *mut libc::iovec;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: `hdrs` holds `n` initialised headers whose iovecs point into
    // `msgs`' buffers, all alive for the duration of the call; the kernel
    // only reads them (and writes `msg_len`).
    let r = unsafe {
        libc::sendmmsg(
            s.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Send one datagram (platforms without `sendmmsg`).
#[cfg(not(target_os = "linux"))]
fn send_some(s: &UdpSocket, msgs: &[Msg]) -> io::Result<usize> {
    s.try_send(&msgs[0].bytes).map(|_| 1)
}
