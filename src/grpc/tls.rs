//! TLS for the gRPC port, with certificates that can change under a running server.
//!
//! tonic's own TLS reads the PEM files once. Certificates are rotated in production
//! (cert-manager renews them, a Kubernetes secret mount swaps the files), so this
//! module terminates TLS itself: every new connection is accepted with the newest
//! rustls config, which is rebuilt when the files' contents change (checked every
//! `tls.reload_interval_ms`) or on SIGHUP. A change that does not load (a half
//! written file, a key that does not match) keeps the previous config and logs why.
//! Connections already open keep the certificate (and, with mTLS, the client
//! authorization) they were made with, until the client reconnects or the server
//! restarts.

use std::{
    io,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::coalesce::Coalesced;
use crate::{
    config::TlsSettings,
    telemetry::{Metrics, metrics::Outcome},
};

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files of the server's identity and, for mTLS, the client CA.
#[derive(Debug, Clone, PartialEq)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// What the files held when the current config was built.
type Contents = Vec<Vec<u8>>;

impl Files {
    fn read(&self) -> Result<Contents, String> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut all = vec![read(&self.cert)?, read(&self.key)?];
        if let Some(ca) = &self.client_ca {
            all.push(read(ca)?);
        }
        Ok(all)
    }
}

/// Builds the rustls config from the files' contents (in `Files::read` order).
fn build(contents: &Contents) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_slice_iter(&contents[0])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if certs.is_empty() {
        return Err("certificate: no PEM certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| format!("key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match contents.get(2) {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| format!("client CA: {e}"))?;
                roots.add(cert).map_err(|e| format!("client CA: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The current TLS config of the gRPC port, reloadable.
pub struct ReloadingTls {
    files: Files,
    current: RwLock<(Contents, Arc<ServerConfig>)>,
    metrics: Arc<Metrics>,
}

impl ReloadingTls {
    /// `None` without `tls.cert_file`/`tls.key_file`; an error if they do not load.
    pub fn from_settings(s: &TlsSettings, metrics: Arc<Metrics>) -> Result<Option<Arc<Self>>, String> {
        let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) else {
            return Ok(None);
        };
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: s.client_ca_file.clone(),
        };
        let contents = files.read()?;
        let config = Arc::new(build(&contents)?);
        Ok(Some(Arc::new(Self {
            files,
            current: RwLock::new((contents, config)),
            metrics,
        })))
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("tls lock").1.clone())
    }

    /// Rebuilds the config if the files changed. True if it did. Changed files are
    /// counted in `session_tls_reloads_total` by outcome.
    pub fn reload(&self) -> bool {
        let contents = match self.files.read() {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "TLS files unreadable; keeping the current certificate");
                return false;
            }
        };
        if self.current.read().expect("tls lock").0 == contents {
            return false;
        }
        match build(&contents) {
            Ok(config) => {
                *self.current.write().expect("tls lock") = (contents, Arc::new(config));
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                self.counted("reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "new TLS files do not load; keeping the current certificate");
                self.counted("rejected");
                false
            }
        }
    }

    fn counted(&self, outcome: &'static str) {
        self.metrics.tls_reloads.get_or_create(&Outcome { outcome }).inc();
    }

    /// Reloads on SIGHUP and when the files change (checked every `every`; zero:
    /// SIGHUP only), until `stop`.
    pub async fn reload_forever(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler; TLS reloads on file change only");
                None
            }
        };
        let mut tick = (!every.is_zero()).then(|| tokio::time::interval(every));
        loop {
            // A missing source answers None, which disables its branch.
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = async { hangup.as_mut()?.recv().await } => {}
                Some(_) = async { Some(tick.as_mut()?.tick().await) } => {}
            }
            let me = self.clone();
            // File reads and key parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || me.reload()).await;
        }
    }
}

/// Without TLS there is nothing to reload, but SIGHUP must not stop the server
/// (its default action) without draining: log it instead, until `stop`.
pub async fn hangup_without_tls(stop: CancellationToken) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = hangup.recv() => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
        }
    }
}

/// TLS connections accepted on `listener`: each handshake runs in its own task (a
/// slow or silent client cannot hold up the others) with the config current when
/// the connection arrived. Failed handshakes are logged and dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
    stop: CancellationToken,
    coalesce: bool,
) -> ReceiverStream<io::Result<Coalesced<TlsStream<TcpStream>>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    // A peer that gave up before we accepted: nothing to wait for.
                    Err(error) if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {
                        tracing::debug!(%error, "connection gone before accept");
                        continue;
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off a little.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY");
            }
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(Coalesced::new(stream, coalesce))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
