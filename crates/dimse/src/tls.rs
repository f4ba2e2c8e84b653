//! DICOM over TLS (PS3.15 Annex B, the secure transport connection profiles) on a port of
//! its own, 2762 by convention.
//!
//! The same receiver runs over it: the association code is generic over a [`Transport`],
//! plain TCP or TLS over TCP, and both ports share the admission limits. Two things differ
//! from the plain port, because the A-ASSOCIATE-RQ arrives encrypted and cannot be peeked at
//! before dicom-ul reads it:
//! - the request's length is checked by dicom-ul from its PDU header (strict mode), against
//!   the maximum PDU length rather than the A-ASSOCIATE-RQ limit, before its body is read;
//! - a peer over the association limits is closed before the TLS handshake, instead of being
//!   answered with a transient A-ASSOCIATE-RJ.
//!
//! The TLS handshake runs under the ARTIM timeout, like the rest of the handshake. With a
//! client CA ([`radport_access::tls::server_config`]) peers must present a certificate that CA
//! issued (the profiles' mutual authentication); without, any peer may connect, and the
//! project's DICOM rules still apply.

use std::net::SocketAddr;
use std::sync::Arc;

use radport_ingest::Ingestor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
pub use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::{association_options, peer_key, Admission, ServerAssociation, Slot};

/// The DICOM TLS port: its listener and its TLS configuration.
pub struct TlsListener {
    /// Where peers connect.
    pub listener: TcpListener,
    /// The server's certificate, and the client CA if any.
    pub config: Arc<ServerConfig>,
}

/// A connection an association runs over.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP connection underneath (for socket options).
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Transport for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Claims an association slot, then runs the TLS handshake and establishes the association
/// (or refuses it). Runs under the ARTIM timeout.
pub(crate) async fn handshake(
    socket: TcpStream,
    peer: SocketAddr,
    ingestor: &Ingestor,
    admission: &Arc<Admission>,
    tls: Arc<ServerConfig>,
) -> Option<(ServerAssociation<TlsStream<TcpStream>>, Slot)> {
    let slot = match admission.claim(peer_key(&peer)) {
        Ok(slot) => slot,
        Err(why) => {
            tracing::warn!(%peer, ?why, "DICOM TLS connection closed: over the association limits");
            return None;
        }
    };
    let options = association_options(ingestor, peer, &admission.config)
        .strict(true)
        .tls_config(tls);
    match options.establish_tls_async(socket).await {
        Ok(association) => Some((association, slot)),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "DICOM TLS association not established");
            None
        }
    }
}
