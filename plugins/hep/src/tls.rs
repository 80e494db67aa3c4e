//! The rustls client configuration of a `tls://` target: the CA file that
//! verifies the server, and the optional client certificate and key. Files
//! are read when the sink is built (and by `hepflow validate`); errors name
//! the key and the file and say what is wrong, never a key's content.

use crate::config::TlsConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// A ready client config for one target.
#[derive(Clone)]
pub struct TlsClient {
    /// The rustls config (shared by every connect of the target).
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server certificate must carry.
    pub server_name: ServerName<'static>,
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{key}: {} is not a PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{key}: {} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
            path.display()
        ));
    }
    Ok(certs)
}

/// Build the client config of a target whose TLS section is `tls` (at key
/// path `key`, e.g. `sinks.relay.tls`) and whose URL host is `host`.
pub fn client_config(tls: &TlsConfig, key: &str, host: &str) -> Result<TlsClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{key}: TLS setup failed: {e}"))?;
    let ca = tls.ca_file.as_ref().ok_or_else(|| {
        format!("{key}.ca_file: is required for tls:// targets: give a PEM file of the CA certificate(s)")
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca, &format!("{key}.ca_file"))? {
        roots.add(cert).map_err(|e| {
            format!(
                "{key}.ca_file: {} holds a certificate that is not a usable CA certificate: {e}",
                ca.display()
            )
        })?;
    }
    let builder = builder.with_root_certificates(roots);
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(keyf)) => {
            let chain = read_certs(cert, &format!("{key}.cert_file"))?;
            let pk = PrivateKeyDer::from_pem_file(keyf).map_err(|e| {
                format!(
                    "{key}.key_file: {} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                    keyf.display()
                )
            })?;
            builder.with_client_auth_cert(chain, pk).map_err(|e| {
                format!(
                    "{key}.key_file: the key in {} does not fit the certificate in {}: {e}",
                    keyf.display(),
                    cert.display()
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(format!(
                "{key}: cert_file and key_file go together: give both or neither"
            ))
        }
    };
    config.enable_sni = true;
    let name = tls.server_name.as_deref().unwrap_or(host);
    let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
        format!("{key}.server_name: {name:?} is not a valid DNS name or IP address; set server_name to the name in the target's certificate")
    })?;
    Ok(TlsClient {
        config: Arc::new(config),
        server_name,
    })
}
