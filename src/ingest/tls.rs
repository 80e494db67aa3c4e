//! The TLS listener: HEP3 over TLS (rustls), with the operator's own
//! certificate, key and — for client authentication — CA, all PEM files.
//! After the handshake a connection is served by the same length-framed
//! stream reader as TCP ([`super::tcp::connection`]). Handshakes are bounded
//! by `handshake_timeout` and count against `max_connections`.

use super::tcp::{accept_loop, connection, StreamLimits};
use super::Decoder;
use crate::config::TlsListenerConfig;
use crate::pipeline::Pipeline;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Build the rustls server configuration of a listener; the error says
/// which file is wrong and how.
pub fn server_config(cfg: &TlsListenerConfig) -> Result<Arc<ServerConfig>, String> {
    let chain = certs(&cfg.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| {
        format!(
            "key_file {}: no usable PEM private key ({e}); give the key of cert_file in PKCS#8, PKCS#1 or SEC1 PEM",
            cfg.key_file.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca, "client_ca_file")? {
                roots
                    .add(c)
                    .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "cert_file {} and key_file {} do not form a usable pair: {e}",
            cfg.cert_file.display(),
            cfg.key_file.display()
        )
    })?;
    Ok(Arc::new(config))
}

/// Accept TLS connections until `stop` turns true; then wait for every
/// connection task to end. The handshake runs in the connection's task,
/// bounded by `handshake_timeout`, and holds a connection slot.
pub async fn serve(
    listener: Arc<TcpListener>,
    cfg: TlsListenerConfig,
    tls: Arc<ServerConfig>,
    decoder: Arc<Decoder>,
    pipeline: Arc<Pipeline>,
    stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limits = StreamLimits {
        max_message_bytes: cfg.max_message_bytes,
        idle_timeout: cfg.idle_timeout,
    };
    let handshake_timeout = cfg.handshake_timeout;
    let d = decoder.clone();
    let s = stop.clone();
    accept_loop(
        listener,
        cfg.max_connections,
        decoder,
        stop,
        "TLS",
        move |stream, peer| {
            let (acceptor, decoder, pipeline, stop) =
                (acceptor.clone(), d.clone(), pipeline.clone(), s.clone());
            async move {
                let m = &decoder.metrics;
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        m.connections.inc();
                        m.open_connections.add(1);
                        connection(tls, peer, limits, &decoder, &pipeline, stop).await;
                        m.open_connections.add(-1);
                    }
                    Ok(Err(e)) => {
                        m.tls_handshake_failures.inc();
                        m.log_bad(peer, &format!("TLS handshake failed: {e}"));
                    }
                    Err(_) => {
                        m.tls_handshake_failures.inc();
                        m.log_bad(peer, "TLS handshake timed out");
                    }
                }
            }
        },
    )
    .await;
}
