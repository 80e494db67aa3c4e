//! A throw-away PKI for the TLS tests, made with rcgen: a CA, a server
//! certificate for `localhost` and 127.0.0.1, a client certificate signed
//! by the CA, and a second, unrelated CA. The PEM texts are kept and
//! written to a temp dir; rustls server and client configs built from
//! them stand in for the other end of a connection.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates and keys as PEM, also written to [`TestPki::dir`] as
/// `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key` and
/// `other-ca.pem`. The directory goes when this is dropped.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub client_pem: String,
    pub client_key_pem: String,
    /// A CA that signed none of the others (to test an untrusted server).
    pub other_ca_pem: String,
}

impl TestPki {
    /// Make the certificates and write them out.
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "hepflow test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        // "127.0.0.1" becomes an IP address SAN, "localhost" a DNS name.
        let mut sp =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(vec!["hepflow-test-client".to_string()]).unwrap();
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = cp.signed_by(&client_key, &ca_cert, &ca_key).unwrap();

        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let other_ca = other.self_signed(&other_key).unwrap();

        let pki = TestPki {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: ca_cert.pem(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            other_ca_pem: other_ca.pem(),
        };
        for (name, text) in [
            ("ca.pem", &pki.ca_pem),
            ("server.pem", &pki.server_pem),
            ("server.key", &pki.server_key_pem),
            ("client.pem", &pki.client_pem),
            ("client.key", &pki.client_key_pem),
            ("other-ca.pem", &pki.other_ca_pem),
        ] {
            std::fs::write(pki.path(name), text).unwrap();
        }
        pki
    }

    /// Path of one of the written files (`ca.pem`, `client.key`, ...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A rustls server config with the server certificate; with `mutual`
    /// it requires a client certificate signed by the CA.
    pub fn server_config(&self, mutual: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let cfg = builder
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(self.server_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        Arc::new(cfg)
    }

    /// A rustls client config trusting the CA; `with_cert` presents the
    /// client certificate.
    pub fn client_config(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(self.roots());
        let cfg = if with_cert {
            builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(self.client_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes()).unwrap(),
                )
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(cfg)
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        roots
    }
}
