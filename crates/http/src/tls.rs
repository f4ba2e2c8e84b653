//! HTTPS: the server's certificate chain and key, read from PEM files
//! ([`radport_access::tls`]), as a rustls configuration speaking HTTP/1.1 over ALPN.

use std::path::Path;
use std::sync::Arc;

pub use radport_access::tls::TlsError;
use tokio_rustls::rustls;

/// The server's TLS configuration from a certificate chain and a private key (PEM files).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = radport_access::tls::server_config(cert, key, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
