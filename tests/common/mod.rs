//! Shared harness of the end-to-end tests: start the real `hepflow` binary
//! on free loopback ports with a generated config, read its metrics over
//! HTTP, read the documents its file sink wrote, stop it with SIGTERM.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Path of a fixture under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

mod ports;
#[allow(unused_imports)] // each test binary uses a part of the harness
pub use ports::{free_port, restart_port};

/// Blocking HTTP/1.0 GET; returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Value of one Prometheus series (exact label set, in rendered order), or 0.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A running hepflow process.
pub struct Hepflow {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub api: SocketAddr,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub log: PathBuf,
}

impl Hepflow {
    /// Start hepflow with UDP and TCP listeners named `udp` and `tcp`, a
    /// file sink `files` under `<tmp>/data`, plus `extra` TOML appended
    /// (more sinks, routes, ...). `listener_extra` is added to both
    /// listener tables. If `extra` has no `[default_route]`, one sending
    /// everything to `files` is added.
    pub fn start(listener_extra: &str, extra: &str) -> Self {
        Self::start_on_port(free_port(), listener_extra, extra)
    }

    /// hepflow's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.api, "/metrics").expect("GET /metrics").1
    }

    /// Wait until the series reaches `want` (or time out), return its value.
    pub fn wait_metric(&self, series: &str, want: f64) -> f64 {
        let mut v = 0.0;
        wait_until(Duration::from_secs(20), || {
            v = metric(&self.metrics(), series);
            v >= want
        });
        v
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!(
                    "hepflow did not exit after SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every document every `.ndjson` file under `<tmp>/data` holds.
    pub fn documents(&self) -> Vec<serde_json::Value> {
        read_documents(&self.dir.path().join("data"))
    }
}

/// The Call-IDs in a hepflow's file documents (one per document that has
/// one, repeats kept).
pub fn call_ids_of(h: &Hepflow) -> Vec<String> {
    h.documents()
        .iter()
        .filter_map(|d| d["call_id"].as_str().map(str::to_owned))
        .collect()
}

impl Drop for Hepflow {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every JSON line of every `.ndjson` file under `dir` (sorted by file
/// name). Safe to call while hepflow writes: a last line without its
/// newline yet (the file grows page by page during one write) is not a
/// document yet and is left out; a file that ends so after hepflow
/// stopped shows up as a missing document in the caller's count.
pub fn read_documents(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "ndjson"));
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let mut bytes = std::fs::read(&f).expect("read ndjson");
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(complete);
        let text =
            String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: not UTF-8 ({e})", f.display()));
        for line in text.lines().filter(|l| !l.is_empty()) {
            docs.push(
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: line is not JSON ({e}): {line}", f.display())),
            );
        }
    }
    docs
}

/// The HEP messages of a corpus capture sent to port 9060: UDP datagrams
/// one by one, TCP streams as one item each.
pub fn corpus_messages(name: &str) -> Vec<Vec<u8>> {
    hepflow::capture::read_port(&fixture(&format!("hep/{name}")), 9060)
        .expect("read capture")
        .into_iter()
        .map(|p| p.data)
        .collect()
}

/// The UDP corpus files and how many HEP messages each holds.
pub const UDP_CORPUS: [(&str, usize); 6] = [
    ("kamailio-hep3-udp.pcapng", 14),
    ("kamailio-hep2-udp.pcapng", 14),
    ("kamailio-hep1-udp.pcapng", 14),
    ("sngrep-hep3-udp.pcapng", 13),
    ("hepjs-hep3-udp.pcapng", 1),
    ("wireshark-sample-hep3.pcap", 8),
];

/// Send datagrams to `to`, pacing lightly so loopback never drops.
pub fn send_udp(to: SocketAddr, msgs: &[Vec<u8>]) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    for (i, m) in msgs.iter().enumerate() {
        s.send_to(m, to).expect("send");
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Hepflow {
    /// As [`Hepflow::start`], but the UDP and TCP listeners bind `port`
    /// (to restart a receiver on the port it had before).
    pub fn start_on_port(port: u16, listener_extra: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_port = free_port();
        let data = dir.path().join("data");
        let mut config = format!(
            r#"
[node]
name = "test-node"
data_dir = "{state}"
[api]
bind = "127.0.0.1:{api_port}"
[shutdown]
grace_period = "10s"
[listeners.udp]
kind = "udp"
bind = "127.0.0.1:{port}"
workers = 2
{listener_extra}
[listeners.tcp]
kind = "tcp"
bind = "127.0.0.1:{port}"
{listener_extra}
[sinks.files]
type = "file"
path = "{}"
{extra}
"#,
            data.display(),
            state = dir.path().join("state").display()
        );
        if !extra.contains("[default_route]") {
            config.push_str("\n[default_route]\nsinks = [\"files\"]\n");
        }
        let cfg_path = dir.path().join("hepflow.toml");
        std::fs::write(&cfg_path, config).expect("write config");
        let log = dir.path().join("hepflow.log");
        let mut h = Hepflow {
            child: None,
            dir,
            api: ([127, 0, 0, 1], api_port).into(),
            udp: ([127, 0, 0, 1], port).into(),
            tcp: ([127, 0, 0, 1], port).into(),
            log,
        };
        for attempt in 0.. {
            match h.try_spawn() {
                Ok(()) => break,
                // The API port free_port() found was taken by another
                // process before hepflow bound it: pick another one.
                Err(log) if attempt < 3 && log.contains("binding api.bind") => {
                    let cfg = h.dir.path().join("hepflow.toml");
                    let old = format!("[api]\nbind = \"{}\"", h.api);
                    h.api = ([127, 0, 0, 1], free_port()).into();
                    let text = std::fs::read_to_string(&cfg).expect("read config");
                    assert!(text.contains(&old), "config without {old}");
                    let new = format!("[api]\nbind = \"{}\"", h.api);
                    std::fs::write(&cfg, text.replace(&old, &new)).expect("write config");
                }
                Err(log) => panic!("hepflow did not come up; log:\n{log}"),
            }
        }
        h
    }

    /// Start the process on this instance's config and wait for `/health`;
    /// its stderr is appended to the log.
    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("hepflow did not come up; log:\n{log}");
        }
    }

    /// As [`Self::spawn`], but a process that exits or never answers is
    /// reaped and its log returned.
    fn try_spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "hepflow is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hepflow"))
            .arg("run")
            .arg("-c")
            .arg(self.dir.path().join("hepflow.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hepflow");
        self.child = Some(child);
        let mut exited = false;
        let up = wait_until(Duration::from_secs(20), || {
            exited = matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))));
            exited || matches!(http_get(self.api, "/health"), Ok((200, _)))
        });
        if up && !exited {
            return Ok(());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Err(self.log_text())
    }

    /// Start hepflow again after [`Self::stop`] or [`Self::kill9`]: the
    /// same config, ports, data and state directories (its spools).
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Kill the process with SIGKILL (no shutdown at all) and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The running process's id (to signal it).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }
}

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod pki;

/// A required test-service variable; fails (never skips) when absent.
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run `bash tests/run.sh`, or start the test services \
             (`bash tests/services/services.sh start`) and source their env file \
             (`set -a; . /tmp/hepflow-services/env; set +a`)"
        )
    })
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Sends `msgs` in chunks, `pause` between chunks.
pub fn send_paced(to: SocketAddr, msgs: &[Vec<u8>], chunk: usize, pause: Duration) {
    for c in msgs.chunks(chunk) {
        send_udp(to, c);
        std::thread::sleep(pause);
    }
}

impl Hepflow {
    /// Wait until the series reaches `want` (or time out) and assert that
    /// it is exactly `want`, with hepflow's log in the failure message.
    pub fn expect_metric(&self, series: &str, want: f64) {
        let got = self.wait_metric(series, want);
        assert_eq!(got, want, "{series}; log:\n{}", self.log_text());
    }
}

/// Run `hepflow validate -c FILE` (RUST_LOG unset) on a config file
/// holding `toml`; returns the exit code and the output, stderr first.
pub fn validate_config(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("hepflow.toml");
    std::fs::write(&cfg, toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_hepflow"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .output()
        .expect("run hepflow validate");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

/// `http://127.0.0.1:PORT` -> the socket address.
pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("{url}: not http://IP:PORT ({e})"))
}

/// One HTTP exchange (`Connection: close`, body read by its
/// Content-Length); returns status and body bytes.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    req.push_str("\r\n");
    (&s).write_all(req.as_bytes())?;
    (&s).write_all(body)?;
    let mut r = BufReader::new(&s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len: Option<usize> = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut sz = String::new();
            r.read_line(&mut sz)?;
            let n = usize::from_str_radix(sz.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, out))
}

/// A server process a test owns, listening on a TCP port: freeze
/// (SIGSTOP), thaw (SIGCONT), kill; killed (thawed first) when dropped.
pub struct OwnedServer {
    child: Option<Child>,
    what: &'static str,
}

impl OwnedServer {
    pub fn spawn(what: &'static str, cmd: &mut Command, port: u16, log: &std::path::Path) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "{what} did not listen on {port}");
        OwnedServer {
            child: Some(child),
            what,
        }
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal {}", self.what);
    }

    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnedServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A frozen process must be thawed to die cleanly.
            let _ = unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
        }
        self.kill();
    }
}
