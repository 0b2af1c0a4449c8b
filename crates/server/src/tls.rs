//! TLS for the listener: rustls with HTTP/2 and HTTP/1.1 offered through ALPN, the certificate
//! and key read from PEM files and re-read when they change (a renewal needs no restart),
//! optional client certificates (mutual TLS), and a self-signed CA for trying Berth out.
//!
//! Plain HTTP sent to a TLS listener gets a `400` that says so (as Go's servers answer), not a
//! TLS alert a person cannot read.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, detail: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), detail: detail.to_string() }
}

/// The provider every TLS object here uses (ring; the process may link others).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read a certificate chain and its private key from PEM files; the key must match the first
/// certificate.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no PEM certificate in the file"));
    }
    let der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, format!("no usable PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, der, &provider())
        .map_err(|e| file_err(key, format!("the key does not fit the certificate in {}: {e}", cert.display())))
}

/// The server certificate, swapped when its files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times and sizes of the two files when last read.
    seen: RwLock<(Stamp, Stamp)>,
}

/// A file's modification time and size (`None` when it cannot be read).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap().clone())
    }
}

impl Reloading {
    /// Re-read the files when either changed; a pair that does not load (half written, a key
    /// that does not fit) keeps the certificate in use and is tried again at the next change.
    fn check(&self) {
        let now = (stamp(&self.cert), stamp(&self.key));
        if *self.seen.read().unwrap() == now {
            return;
        }
        *self.seen.write().unwrap() = now;
        match load_certified_key(&self.cert, &self.key) {
            Ok(k) => {
                *self.current.write().unwrap() = Arc::new(k);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "the changed TLS certificate does not load; keeping the one in use"),
        }
    }
}

/// TLS settings of a listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to (mutual TLS); `None`: no
    /// client certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// A TLS acceptor whose certificate follows its files.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    reloading: Arc<Reloading>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.reloading.cert).finish_non_exhaustive()
    }
}

impl Tls {
    /// Load the certificate (an error names the file that is wrong) and build the acceptor.
    pub fn new(s: &TlsSettings) -> Result<Tls, TlsError> {
        let first = load_certified_key(&s.cert, &s.key)?;
        let reloading = Arc::new(Reloading {
            cert: s.cert.clone(),
            key: s.key.clone(),
            current: RwLock::new(Arc::new(first)),
            seen: RwLock::new((stamp(&s.cert), stamp(&s.key))),
        });
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &s.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| file_err(ca, e))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| file_err(ca, e))?;
                for c in certs {
                    roots.add(c).map_err(|e| file_err(ca, e))?;
                }
                if roots.is_empty() {
                    return Err(file_err(ca, "no PEM certificate in the file"));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| file_err(ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(reloading.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), reloading })
    }

    /// Watch the certificate files (every [`RELOAD_CHECK`]) until the process ends.
    pub fn watch(&self) {
        let r = self.reloading.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            loop {
                tick.tick().await;
                let r = r.clone();
                let _ = tokio::task::spawn_blocking(move || r.check()).await;
            }
        });
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// What a TLS listener answers to a plain HTTP request.
pub(crate) const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\nContent-Length: 48\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Files of a self-signed setup under `dir`: a CA (`ca.pem`, `ca.key`) made once and kept, and
/// a server certificate (`server.pem`, `server.key`) it signs for `names` (host names and IP
/// addresses), re-issued when the names change. Keys are written owner-only. Returns the
/// server certificate's and key's paths.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (srv_pem, srv_key, srv_names) = (dir.join("server.pem"), dir.join("server.key"), dir.join("server.names"));
    let ca_key_pair = match std::fs::read_to_string(&ca_key) {
        Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| file_err(&ca_key, e))?,
        Err(_) => {
            let k = KeyPair::generate().map_err(|e| TlsError::Config(e.to_string()))?;
            write_private(&ca_key, k.serialize_pem().as_bytes())?;
            let _ = std::fs::remove_file(&ca_pem);
            k
        }
    };
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "Berth self-signed CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key_pair).map_err(|e| TlsError::Config(e.to_string()))?;
    if !ca_pem.exists() {
        write_file(&ca_pem, ca_cert.pem().as_bytes(), 0o644)?;
    }
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&srv_names).unwrap_or_default();
    if current != wanted || !srv_pem.exists() || !srv_key.exists() {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, names.first().map(String::as_str).unwrap_or("localhost"));
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(|e: rcgen::Error| TlsError::Config(format!("a TLS host name is not valid: {e}")))?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let key = KeyPair::generate().map_err(|e| TlsError::Config(e.to_string()))?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key_pair).map_err(|e| TlsError::Config(e.to_string()))?;
        write_private(&srv_key, key.serialize_pem().as_bytes())?;
        write_file(&srv_pem, cert.pem().as_bytes(), 0o644)?;
        write_file(&srv_names, wanted.as_bytes(), 0o644)?;
    }
    Ok((srv_pem, srv_key))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_file(path, bytes, 0o600)
}

/// Write a file crash-safely (temporary file, fsync, rename) with the given mode.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}
