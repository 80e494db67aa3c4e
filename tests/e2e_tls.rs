//! End to end: HEP3 over TLS into the real `hepflow` binary, with
//! certificates made in the test (rcgen): a plain TLS listener, and one
//! that requires client certificates (mutual TLS); bad certificate files
//! are refused by `validate` with the file named.

mod common;

use common::pki::TestPki;
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// Connect, handshake, send `bytes`, close. Err when the handshake or a
/// write fails.
async fn send_tls(
    to: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    bytes: &[u8],
) -> std::io::Result<()> {
    let tcp = tokio::net::TcpStream::connect(to).await?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    tls.write_all(bytes).await?;
    tls.flush().await?;
    tls.shutdown().await?;
    // With TLS 1.3 a refused client certificate surfaces on the next read.
    let mut buf = [0u8; 1];
    let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
    Ok(())
}

fn tls_listener(dir: &Path, port: u16, mutual: bool) -> String {
    let mut s = format!(
        "[listeners.tls]\nkind = \"tls\"\nbind = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    if mutual {
        s.push_str(&format!(
            "client_ca_file = \"{}\"\n",
            dir.join("ca.pem").display()
        ));
    }
    s
}

/// hepflow with a TLS listener `tls` on a free port using the PKI's
/// server certificate (and, with `mutual`, its CA for client
/// certificates); returns it and the listener's address.
fn start_tls(p: &TestPki, mutual: bool) -> (Hepflow, SocketAddr) {
    let port = free_port();
    let h = Hepflow::start("", &tls_listener(p.dir.path(), port, mutual));
    (h, ([127, 0, 0, 1], port).into())
}

const DECODED: &str = r#"hepflow_decoded_total{listener="tls",transport="tls"}"#;

fn stream() -> Vec<u8> {
    corpus_messages("kamailio-hep3-tcp.pcapng").remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_over_tls_arrives() {
    let p = TestPki::generate();
    let (mut h, to) = start_tls(&p, false);
    send_tls(to, p.client_config(false), &stream())
        .await
        .expect("TLS send");
    tokio::task::block_in_place(|| h.expect_metric(DECODED, 14.0));
    assert!(h.stop().success());
    let docs = h.documents();
    assert_eq!(docs.len(), 14);
    assert!(docs.iter().all(|d| d["transport"] == "tls"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let p = TestPki::generate();
    let (mut h, to) = start_tls(&p, true);
    // Without a client certificate: refused at the handshake, counted.
    let _ = send_tls(to, p.client_config(false), &stream()).await;
    let failures = r#"hepflow_tls_handshake_failures_total{listener="tls",transport="tls"}"#;
    tokio::task::block_in_place(|| h.expect_metric(failures, 1.0));
    // With one: accepted.
    send_tls(to, p.client_config(true), &stream())
        .await
        .expect("mutual TLS send");
    tokio::task::block_in_place(|| h.expect_metric(DECODED, 14.0));
    assert!(h.stop().success());
    assert_eq!(h.documents().len(), 14);
}

#[test]
fn validate_names_a_bad_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    let (code, err) = validate_config(&format!(
        "{}\n[sinks.n]\ntype = \"null\"\n[default_route]\nsinks = [\"n\"]\n",
        tls_listener(dir.path(), 0, false)
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("listeners.tls: cert_file"), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
}
