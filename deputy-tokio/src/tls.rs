//! TLS for [`serve`](crate::serve) (the `tls` feature): rustls, with ALPN offering `h2` and
//! `http/1.1` on one port, and a certificate read from PEM files that is read again when
//! they change.
//!
//! A Kubernetes Secret mounted as a volume is updated in place (the kubelet swaps a symlink
//! to a new directory), and cert-manager renews certificates long before they expire: the
//! service must pick the new one up without a restart and without dropping a connection.
//! Here each handshake looks at the two files' metadata (a `stat` each: a microsecond or two,
//! next to a handshake's hundreds) and reads them again when it changed; the new
//! certificate is served from that handshake on, and connections already open keep theirs.
//! A pair that cannot be used (half written, or a key that does not match) is reported once
//! and the last good one is kept.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// TLS settings for [`ServeOptions::tls`](crate::ServeOptions::tls).
///
/// ```no_run
/// # async fn example(shutdown: deputy_core::Shutdown) -> std::io::Result<()> {
/// let tls = deputy_tokio::Tls::from_pem_files("/etc/tls/tls.crt", "/etc/tls/tls.key")?;
/// let options = deputy_tokio::ServeOptions::default().tls(tls);
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
/// deputy_tokio::serve_with(listener, shutdown, app, options).await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    files: Option<Arc<PemFiles>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Tls");
        if let Some(files) = &self.files {
            debug.field("cert", &files.cert).field("key", &files.key);
        }
        debug.finish_non_exhaustive()
    }
}

impl Tls {
    /// The certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1) from
    /// PEM files, such as a Kubernetes `kubernetes.io/tls` Secret's `tls.crt` and `tls.key`.
    /// Both are read now, so a missing file, a file without a certificate or a key, or a key
    /// that does not match the certificate is an error here, naming the file; later they are
    /// read again whenever they change (see the module's docs).
    ///
    /// ALPN offers `h2` then `http/1.1`; TLS 1.2 and 1.3, with rustls' safe defaults (the
    /// `ring` provider; for post-quantum key exchange, build a config with aws-lc-rs and
    /// use [`from_config`](Self::from_config)).
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Tls> {
        // ring, not aws-lc-rs: no C++ or CMake to build, and a static musl build just works.
        // rustls deprecates ring's provider for its lack of post-quantum key exchange; a
        // service that needs that builds its config with aws-lc-rs and uses `from_config`.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = Arc::new(PemFiles::load(
            cert.as_ref().to_path_buf(),
            key.as_ref().to_path_buf(),
            provider.clone(),
        )?);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(files.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            files: Some(files),
        })
    }

    /// A rustls configuration of your own: client certificates (mTLS), other providers,
    /// certificates from elsewhere. If it offers no ALPN protocol, `h2` and `http/1.1` are
    /// offered; a connection that agrees on none is spoken to in HTTP/1.
    ///
    /// ```
    /// # fn example(config: rustls::ServerConfig) {
    /// let tls = deputy_tokio::Tls::from_config(std::sync::Arc::new(config));
    /// # drop(tls);
    /// # }
    /// ```
    pub fn from_config(config: Arc<ServerConfig>) -> Tls {
        let config = if config.alpn_protocols.is_empty() {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        } else {
            config
        };
        Tls {
            acceptor: TlsAcceptor::from(config),
            files: None,
        }
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// What tells two versions of a file apart without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> io::Result<Stamp> {
        // Follows symlinks: a Secret's file is a link into the directory being swapped.
        std::fs::metadata(path).map(|metadata| Stamp::from(&metadata))
    }
}

impl From<&Metadata> for Stamp {
    fn from(metadata: &Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
        }
    }
}

/// The certificate and key files, and what was last read from them.
#[derive(Debug)]
struct PemFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    /// The files' stamps when last looked at (read or not).
    stamps: (Stamp, Stamp),
    /// The last pair that could be used.
    certified: Arc<CertifiedKey>,
}

impl PemFiles {
    fn load(cert: PathBuf, key: PathBuf, provider: Arc<CryptoProvider>) -> io::Result<PemFiles> {
        let stamps = (Stamp::of(&cert), Stamp::of(&key));
        let certified = read_pair(&cert, &key, &provider)?;
        let stamps = (
            stamps.0.map_err(|error| named(&cert, error))?,
            stamps.1.map_err(|error| named(&key, error))?,
        );
        Ok(PemFiles {
            current: Mutex::new(Current {
                stamps,
                certified: Arc::new(certified),
            }),
            cert,
            key,
            provider,
        })
    }

    /// The pair to serve: read again first if either file changed since last looked at.
    fn certified(&self) -> Arc<CertifiedKey> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let (Ok(cert), Ok(key)) = (Stamp::of(&self.cert), Stamp::of(&self.key)) else {
            // Mid-swap (or gone): serve the last good pair, and look again next time.
            return current.certified.clone();
        };
        if (cert, key) != current.stamps {
            current.stamps = (cert, key);
            match read_pair(&self.cert, &self.key, &self.provider) {
                Ok(certified) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate read again");
                    current.certified = Arc::new(certified);
                }
                // Reported once per change; the next change is tried again.
                Err(error) => tracing::warn!("{error}; serving the previous certificate"),
            }
        }
        current.certified.clone()
    }
}

impl ResolvesServerCert for PemFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified())
    }
}

/// The chain and key in `cert` and `key`, checked to match; errors name the file.
fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> io::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| named(cert, pem_error(error)))?;
    if chain.is_empty() {
        return Err(named(cert, io::Error::other("no PEM certificate in it")));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|error| named(key, io::Error::other(error)))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|error| {
        let error = io::Error::other(error);
        io::Error::other(format!(
            "TLS key {} and certificate {}: {error}",
            key.display(),
            cert.display()
        ))
    })
}

/// A PEM reader's error as an I/O error: the file's own (not found, no permission) as it is.
fn pem_error(error: rustls::pki_types::pem::Error) -> io::Error {
    match error {
        rustls::pki_types::pem::Error::Io(error) => error,
        rustls::pki_types::pem::Error::NoItemsFound => io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM section of the kind wanted in it",
        ),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

fn named(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("TLS file {}: {error}", path.display()),
    )
}

/// Reads a TLS connection's first bytes, until they tell HTTP/2 (its preface) from HTTP/1:
/// the bytes read, and whether it is HTTP/2. As [`serve`](crate::serve) peeks on cleartext
/// (a TLS stream cannot be peeked), so a connection silent after its handshake is treated
/// as one silent before it.
pub(crate) async fn first_bytes<I>(stream: &mut I) -> io::Result<(Vec<u8>, bool)>
where
    I: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let preface = crate::serve::PREFACE;
    let mut read = Vec::with_capacity(preface.len());
    while read.len() < preface.len() {
        let mut buf = [0u8; 24];
        let wanted = preface.len() - read.len();
        let got = stream.read(&mut buf[..wanted]).await?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        read.extend_from_slice(&buf[..got]);
        if read[..] != preface[..read.len()] {
            return Ok((read, false));
        }
    }
    Ok((read, true))
}

pin_project_lite::pin_project! {
    /// A stream whose first bytes were read already: they are read again first.
    #[derive(Debug)]
    pub(crate) struct Prefixed<I> {
        prefix: Vec<u8>,
        at: usize,
        #[pin]
        inner: I,
    }
}

impl<I> Prefixed<I> {
    pub(crate) fn new(prefix: Vec<u8>, inner: I) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<I: tokio::io::AsyncRead> tokio::io::AsyncRead for Prefixed<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.project();
        if *this.at < this.prefix.len() {
            let left = &this.prefix[*this.at..];
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            *this.at += n;
            return std::task::Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite> tokio::io::AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
