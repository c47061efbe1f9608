//! TLS serving: the server's certificate and key, and optionally the client certificate
//! authorities and their revocation lists, all from PEM files that are watched for changes.
//!
//! The files are stat'ed at most once per second, when a connection is accepted. When one of
//! them changed (modification time, size or inode: an atomic rename or a Kubernetes secret's
//! symlink swap counts) the whole configuration is rebuilt and used by the connections that
//! follow; connections already open keep theirs. A rebuild that fails (a file half written,
//! a key written before its certificate) keeps the previous configuration and is logged once
//! per change: certificates rotate without a restart, and a bad rotation never takes the
//! listener down.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The files of TLS serving (the `--tls-*` and `--client-*` flags of cupd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM certificate chain: the server's certificate first, then the intermediates.
    pub cert_file: PathBuf,
    /// PEM private key of the certificate: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: PathBuf,
    /// PEM certificates of the authorities whose client certificates are accepted. A client
    /// presenting a certificate none of them issued (or an expired or revoked one) fails the
    /// handshake; a client presenting none is still served. `None`: no certificate is asked
    /// for.
    pub client_ca_file: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER) of the client authorities; needs
    /// `client_ca_file`.
    pub client_crl_files: Vec<PathBuf>,
}

/// One TLS file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {problem}", path.display())]
pub struct TlsError {
    /// What the file is for.
    pub what: TlsFile,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: TlsProblem,
}

/// The role of a TLS file, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// The server's certificate chain.
    Certificate,
    /// The server's private key.
    PrivateKey,
    /// The client certificate authorities.
    ClientCa,
    /// A client certificate revocation list.
    ClientCrl,
}

impl std::fmt::Display for TlsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFile::Certificate => "TLS certificate",
            TlsFile::PrivateKey => "TLS private key",
            TlsFile::ClientCa => "client CA file",
            TlsFile::ClientCrl => "client CRL file",
        })
    }
}

/// What is wrong with a TLS file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsProblem {
    /// It cannot be read.
    #[error("cannot read it: {0}")]
    Read(#[source] io::Error),
    /// Its PEM is malformed.
    #[error("{}", pem_problem(.0))]
    Pem(#[source] pem::Error),
    /// It holds no certificate.
    #[error("no certificate in it (expected PEM \"CERTIFICATE\" blocks)")]
    NoCertificate,
    /// It holds no private key.
    #[error(
        "no private key in it (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
         \"EC PRIVATE KEY\" block)"
    )]
    NoKey,
    /// It holds no revocation list.
    #[error("no CRL in it (expected PEM \"X509 CRL\" blocks or one DER CRL)")]
    NoCrl,
    /// The private key does not belong to the certificate.
    #[error("does not match the certificate in {}", .0.display())]
    KeyMismatch(PathBuf),
    /// rustls refused it (an unsupported key type, a malformed certificate or CRL).
    #[error("{0}")]
    Refused(String),
}

fn pem_problem(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { .. } => {
            "a PEM block has no END line (truncated or half-written file?)".into()
        }
        pem::Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line".into(),
        pem::Error::Base64Decode(why) => format!("bad base64 in a PEM block: {why}"),
        other => format!("bad PEM: {other}"),
    }
}

/// The file's identity and version: a change of any of them is a change of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

/// `None` for a file that cannot be stat'ed (a rename in progress): a change like any other.
fn stamp(path: &Path) -> Option<Stamp> {
    // Follows symlinks: a secret mounted through `..data` links changes its target.
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, device) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.dev())
    };
    #[cfg(not(unix))]
    let (inode, device) = (0, 0);
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
        device,
    })
}

impl TlsOptions {
    /// Every file, in the order of [`TlsOptions::stamps`].
    fn files(&self) -> impl Iterator<Item = &Path> {
        [self.cert_file.as_path(), self.key_file.as_path()]
            .into_iter()
            .chain(self.client_ca_file.as_deref())
            .chain(self.client_crl_files.iter().map(PathBuf::as_path))
    }

    fn stamps(&self) -> Vec<Option<Stamp>> {
        self.files().map(stamp).collect()
    }

    /// Reads every file and builds the server configuration.
    pub(crate) fn load(&self) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = self.client_verifier(&provider)?;
        let chain = read_certificates(TlsFile::Certificate, &self.cert_file)?;
        let key = read_key(&self.key_file)?;
        let key_error = |problem| TlsError {
            what: TlsFile::PrivateKey,
            path: self.key_file.clone(),
            problem,
        };
        let builder = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| key_error(TlsProblem::Refused(e.to_string())))?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                key_error(TlsProblem::KeyMismatch(self.cert_file.clone()))
            }
            other => key_error(TlsProblem::Refused(other.to_string())),
        })?;
        // The listener speaks HTTP/1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn client_verifier(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
        let Some(ca_file) = &self.client_ca_file else {
            return Ok(None);
        };
        let ca_error = |problem| TlsError {
            what: TlsFile::ClientCa,
            path: ca_file.clone(),
            problem,
        };
        let mut roots = RootCertStore::empty();
        for cert in read_certificates(TlsFile::ClientCa, ca_file)? {
            roots
                .add(cert)
                .map_err(|e| ca_error(TlsProblem::Refused(e.to_string())))?;
        }
        let roots = Arc::new(roots);
        let mut crls = Vec::new();
        for path in &self.client_crl_files {
            let listed = read_crls(path)?;
            // Each file alone first, so a bad list is reported under its own name.
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(listed.iter().cloned())
                .build()
                .map_err(|e| TlsError {
                    what: TlsFile::ClientCrl,
                    path: path.clone(),
                    problem: TlsProblem::Refused(verifier_problem(&e)),
                })?;
            crls.extend(listed);
        }
        // Clients without a certificate are served: they may authenticate otherwise (a
        // bearer token). One that presents a certificate must present a valid one.
        WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .with_crls(crls)
            .allow_unauthenticated()
            .build()
            .map(Some)
            .map_err(|e| ca_error(TlsProblem::Refused(verifier_problem(&e))))
    }
}

fn verifier_problem(error: &rustls::server::VerifierBuilderError) -> String {
    match error {
        rustls::server::VerifierBuilderError::InvalidCrl(why) => {
            format!("not a valid CRL: {why:?}")
        }
        other => other.to_string(),
    }
}

fn read(what: TlsFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        what,
        path: path.to_owned(),
        problem: TlsProblem::Read(e),
    })
}

fn read_certificates(what: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let failed = |problem| TlsError {
        what,
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(TlsProblem::Pem(e)))?;
    if certs.is_empty() {
        return Err(failed(TlsProblem::NoCertificate));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(TlsFile::PrivateKey, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError {
        what: TlsFile::PrivateKey,
        path: path.to_owned(),
        problem: match e {
            pem::Error::NoItemsFound => TlsProblem::NoKey,
            other => TlsProblem::Pem(other),
        },
    })
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(TlsFile::ClientCrl, path)?;
    let failed = |problem| TlsError {
        what: TlsFile::ClientCrl,
        path: path.to_owned(),
        problem,
    };
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(TlsProblem::Pem(e)))?;
    if !crls.is_empty() {
        return Ok(crls);
    }
    // A DER CRL is an ASN.1 SEQUENCE; anything else holds no CRL.
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    Err(failed(TlsProblem::NoCrl))
}

/// The server configuration in use, rebuilt when its files change.
pub(crate) struct TlsConfigs {
    options: TlsOptions,
    state: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    /// The files as they were when `config` was read.
    stamps: Vec<Option<Stamp>>,
    /// The files as they were at the last rebuild that failed, so one bad change is
    /// reported once, not on every connection.
    failed: Option<Vec<Option<Stamp>>>,
    checked: Instant,
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigs")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TlsConfigs {
    /// Loads the files; any problem is an error (at startup nothing else could be served).
    pub(crate) fn load(options: TlsOptions) -> Result<TlsConfigs, TlsError> {
        let stamps = options.stamps();
        let config = Arc::new(options.load()?);
        Ok(TlsConfigs {
            options,
            state: Mutex::new(Loaded {
                config,
                stamps,
                failed: None,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration for a connection accepted now.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current_at(Instant::now())
    }

    fn current_at(&self, now: Instant) -> Arc<ServerConfig> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.checked) < CHECK_EVERY {
            return state.config.clone();
        }
        state.checked = now;
        // Taken before reading: a change during the read is seen at the next check.
        let stamps = self.options.stamps();
        if stamps == state.stamps || state.failed.as_ref() == Some(&stamps) {
            return state.config.clone();
        }
        match self.options.load() {
            Ok(config) => {
                tracing::info!("TLS files changed: new connections use the reloaded certificate");
                state.config = Arc::new(config);
                state.stamps = stamps;
                state.failed = None;
            }
            Err(error) => {
                tracing::warn!(
                    file = %error.path.display(),
                    %error,
                    "TLS files changed but cannot be loaded; still serving the previous \
                     certificate"
                );
                state.failed = Some(stamps);
            }
        }
        state.config.clone()
    }
}

/// Certificates made in tests.
#[cfg(test)]
pub(crate) mod testing {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SerialNumber,
    };

    /// A certificate authority.
    pub(crate) struct Ca {
        pub(crate) cert_pem: String,
        pub(crate) issuer: Issuer<'static, KeyPair>,
    }

    pub(crate) fn new_ca() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for localhost with `serial`: (certificate PEM, key PEM, DER).
    pub(crate) fn leaf(ca: &Ca, serial: u8) -> (String, String, Vec<u8>) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from_slice(&[0x10, serial]));
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A client certificate for `name`: (certificate PEM, key PEM, DER).
    pub(crate) fn client(ca: &Ca, name: &str) -> (String, String, Vec<u8>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Ca, leaf, new_ca};
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            Files {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.path(name);
            std::fs::write(&path, text).unwrap();
            path
        }
        fn options(&self) -> TlsOptions {
            TlsOptions {
                cert_file: self.path("cert.pem"),
                key_file: self.path("key.pem"),
                client_ca_file: None,
                client_crl_files: Vec::new(),
            }
        }
    }

    /// The DER of the certificate `config` serves, from a handshake in memory with a client
    /// trusting `ca`.
    fn served(config: Arc<ServerConfig>, ca: &Ca) -> Vec<u8> {
        let mut roots = RootCertStore::empty();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        roots.add(ca_der).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(config).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            let mut bytes = &wire[..];
            while !bytes.is_empty() {
                server.read_tls(&mut bytes).unwrap();
            }
            server.process_new_packets().unwrap();
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            let mut bytes = &wire[..];
            while !bytes.is_empty() {
                client.read_tls(&mut bytes).unwrap();
            }
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!client.is_handshaking(), "the handshake finished");
        client.peer_certificates().expect("a server certificate")[0].to_vec()
    }

    #[test]
    fn good_files_load_with_http1_alpn() {
        let ca = new_ca();
        let (cert, key, _) = leaf(&ca, 1);
        let files = Files::new();
        files.write("cert.pem", &format!("{cert}{}", ca.cert_pem));
        files.write("key.pem", &key);
        files.write("ca.pem", &ca.cert_pem);
        let mut options = files.options();
        let config = options.load().unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        options.client_ca_file = Some(files.path("ca.pem"));
        options.load().unwrap();
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let ca = new_ca();
        let (cert, key, _) = leaf(&ca, 1);
        let (_, other_key, _) = leaf(&ca, 2);
        let files = Files::new();
        let cases: [(&str, &str, &str, &str); 6] = [
            ("", &key, "cert.pem", "no certificate"),
            (&cert, "", "key.pem", "no private key"),
            (&cert, &cert, "key.pem", "no private key"),
            (&cert[..cert.len() / 2], &key, "cert.pem", "no END line"),
            (&cert, &key[..key.len() - 40], "key.pem", "no END line"),
            (
                &cert,
                &other_key,
                "key.pem",
                "does not match the certificate",
            ),
        ];
        for (cert_text, key_text, file, problem) in cases {
            files.write("cert.pem", cert_text);
            files.write("key.pem", key_text);
            let error = files.options().load().unwrap_err().to_string();
            assert!(error.contains(file), "{error}");
            assert!(error.contains(problem), "{error}");
        }
        std::fs::remove_file(files.path("cert.pem")).unwrap();
        let error = files.options().load().unwrap_err().to_string();
        assert!(error.contains("cert.pem: cannot read it"), "{error}");
    }

    #[test]
    fn bad_client_ca_and_crl_files_are_named() {
        let ca = new_ca();
        let (cert, key, _) = leaf(&ca, 1);
        let files = Files::new();
        files.write("cert.pem", &cert);
        files.write("key.pem", &key);
        files.write("ca.pem", "not a certificate\n");
        let mut options = files.options();
        options.client_ca_file = Some(files.path("ca.pem"));
        let error = options.load().unwrap_err();
        assert_eq!(error.what, TlsFile::ClientCa);
        assert!(error.to_string().contains("no certificate"), "{error}");

        files.write("ca.pem", &ca.cert_pem);
        files.write("crl.pem", "junk");
        options.client_crl_files = vec![files.path("crl.pem")];
        let error = options.load().unwrap_err();
        assert_eq!(error.what, TlsFile::ClientCrl);
        assert!(error.to_string().contains("crl.pem: no CRL"), "{error}");
        files.write(
            "crl.pem",
            "-----BEGIN X509 CRL-----\nMAMCAQA=\n-----END X509 CRL-----\n",
        );
        let error = options.load().unwrap_err();
        assert_eq!(error.what, TlsFile::ClientCrl);
        assert!(error.to_string().contains("not a valid CRL"), "{error}");
    }

    fn served_at(configs: &TlsConfigs, ca: &Ca, now: Instant) -> Vec<u8> {
        served(configs.current_at(now), ca)
    }

    #[test]
    fn a_rebuild_that_fails_keeps_the_old_config_and_a_good_one_is_picked_up() {
        let ca = new_ca();
        let (cert1, key1, der1) = leaf(&ca, 1);
        let (cert2, key2, der2) = leaf(&ca, 2);
        let files = Files::new();
        files.write("cert.pem", &cert1);
        files.write("key.pem", &key1);
        let configs = TlsConfigs::load(files.options()).unwrap();
        let start = Instant::now();
        assert_eq!(served_at(&configs, &ca, start), der1);

        // The certificate is replaced, its key not yet: the old pair stays in use.
        files.write("cert.pem", &cert2);
        let later = start + 2 * CHECK_EVERY;
        assert_eq!(served_at(&configs, &ca, later), der1);
        let failed = configs.state.lock().unwrap().failed.clone();
        assert!(failed.is_some(), "the failed change is remembered");

        // Within a second of the last check nothing is looked at, even though a file changed.
        files.write("key.pem", &key2);
        assert_eq!(served_at(&configs, &ca, later + CHECK_EVERY / 2), der1);
        let last = later + 2 * CHECK_EVERY;
        assert_eq!(served_at(&configs, &ca, last), der2);
        assert!(configs.state.lock().unwrap().failed.is_none());

        // A half-written certificate: the new pair stays.
        files.write("cert.pem", &cert1[..cert1.len() / 2]);
        assert_eq!(served_at(&configs, &ca, last + 2 * CHECK_EVERY), der2);
    }
}
