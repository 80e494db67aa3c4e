//! End to end: HEP3 over TLS into the real `hepflow` binary, with
//! certificates made in the test (rcgen): a plain TLS listener, and one
//! that requires client certificates (mutual TLS); bad certificate files
//! are refused by `validate` with the file named.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls::{self, pki_types::ServerName, RootCertStore};

struct Pki {
    ca_pem: String,
    server_pem: String,
    server_key: String,
    client_pem: String,
    client_key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    sp.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &ca_cert, &ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(vec!["agent-1".to_string()]).unwrap();
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_pem: server.pem(),
        server_key: server_key.serialize_pem(),
        client_pem: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

fn write_pki(dir: &Path, p: &Pki) {
    for (name, text) in [
        ("ca.pem", &p.ca_pem),
        ("server.pem", &p.server_pem),
        ("server.key", &p.server_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn client_config(p: &Pki, with_cert: bool) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(p.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = if with_cert {
        builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(p.client_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(p.client_key.as_bytes()).unwrap(),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(cfg)
}

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

fn stream() -> Vec<u8> {
    corpus_messages("kamailio-hep3-tcp.pcapng").remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_over_tls_arrives() {
    let certs = tempfile::tempdir().unwrap();
    let p = pki();
    write_pki(certs.path(), &p);
    let port = free_port();
    let mut h = Hepflow::start("", &tls_listener(certs.path(), port, false));
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    send_tls(to, client_config(&p, false), &stream())
        .await
        .expect("TLS send");
    let series = r#"hepflow_decoded_total{listener="tls",transport="tls"}"#;
    let got = tokio::task::block_in_place(|| h.wait_metric(series, 14.0));
    assert_eq!(got, 14.0, "log:\n{}", h.log_text());
    assert!(h.stop().success());
    let docs = h.documents();
    assert_eq!(docs.len(), 14);
    assert!(docs.iter().all(|d| d["transport"] == "tls"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let p = pki();
    write_pki(certs.path(), &p);
    let port = free_port();
    let mut h = Hepflow::start("", &tls_listener(certs.path(), port, true));
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    // Without a client certificate: refused at the handshake, counted.
    let _ = send_tls(to, client_config(&p, false), &stream()).await;
    let failures = r#"hepflow_tls_handshake_failures_total{listener="tls",transport="tls"}"#;
    assert_eq!(
        tokio::task::block_in_place(|| h.wait_metric(failures, 1.0)),
        1.0,
        "log:\n{}",
        h.log_text()
    );
    // With one: accepted.
    send_tls(to, client_config(&p, true), &stream())
        .await
        .expect("mutual TLS send");
    let series = r#"hepflow_decoded_total{listener="tls",transport="tls"}"#;
    assert_eq!(
        tokio::task::block_in_place(|| h.wait_metric(series, 14.0)),
        14.0
    );
    assert!(h.stop().success());
    assert_eq!(h.documents().len(), 14);
}

#[test]
fn validate_names_a_bad_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[sinks.n]\ntype = \"null\"\n[default_route]\nsinks = [\"n\"]\n",
            tls_listener(dir.path(), 0, false)
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hepflow"))
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("listeners.tls: cert_file"), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
}
