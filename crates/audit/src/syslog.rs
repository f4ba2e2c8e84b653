//! Sending audit messages to a syslog collector (an IHE ATNA audit record repository): RFC
//! 5424 messages over UDP (RFC 5426), TCP or TLS (RFC 5425, octet-counted frames).
//!
//! The catalog's audit trail is the record; the export is a copy sent as events happen, from a
//! bounded queue ([`QUEUE`] events): a collector that is down or slow loses events beyond it
//! (counted and logged), never slows a request down.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use radport_catalog::{AuditEvent, AuditSink, Outcome};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

use crate::message::{audit_message, AuditSource};

/// Events waiting to be sent, at most.
pub const QUEUE: usize = 4096;

/// The syslog facility of audit messages: 10, security/authorization (RFC 5424 6.2.1).
const FACILITY: u8 = 10;

/// RFC 5424's MSGID of DICOM audit messages (PS3.15 A.5).
const MSGID: &str = "DICOM+RFC3881";

/// Why the export cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// Not `udp://`, `tcp://` or `tls://` with a host and a port.
    #[error("audit syslog target {0:?}: use udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")]
    Target(String),
    /// TLS without a CA to check the collector's certificate, or a CA that cannot be used.
    #[error("audit syslog over TLS: {0}")]
    Tls(String),
}

/// How messages travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per message.
    Udp,
    /// A TCP connection, octet-counted frames.
    Tcp,
    /// TLS over TCP, octet-counted frames.
    Tls,
}

/// Where audit messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    /// How.
    pub transport: Transport,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::str::FromStr for SyslogTarget {
    type Err = SyslogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SyslogError::Target(s.to_string());
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(bad()),
        };
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(SyslogTarget {
            transport,
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// An RFC 5424 message carrying `event` as a DICOM audit message.
pub fn syslog_message(event: &AuditEvent, source: &AuditSource) -> Vec<u8> {
    let severity = match event.outcome {
        Outcome::Success => 5,                    // notice
        Outcome::Refused | Outcome::Failure => 4, // warning
    };
    let field = |value: &str, max: usize| -> String {
        let printable: String = value
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(max)
            .collect();
        if printable.is_empty() {
            "-".into()
        } else {
            printable
        }
    };
    let header = format!(
        "<{}>1 {} {} radport {} {MSGID} - \u{feff}",
        u16::from(FACILITY) * 8 + severity,
        field(&event.at, 32),
        field(&source.host, 255),
        std::process::id(),
    );
    let mut message = header.into_bytes();
    message.extend_from_slice(audit_message(event, source).as_bytes());
    message
}

/// Sends every event recorded by this process to a syslog collector.
pub struct SyslogExporter {
    queue: mpsc::Sender<AuditEvent>,
    dropped: Arc<AtomicU64>,
}

impl SyslogExporter {
    /// Starts the sending task (on the current runtime). `ca`: the CA that issued the
    /// collector's certificate (TLS only, required there).
    pub fn start(
        target: SyslogTarget,
        source: AuditSource,
        ca: Option<&Path>,
    ) -> Result<Arc<SyslogExporter>, SyslogError> {
        let tls = match target.transport {
            Transport::Tls => {
                let ca = ca.ok_or_else(|| {
                    SyslogError::Tls("give the collector's CA (audit_syslog_ca)".into())
                })?;
                let config = radport_access::tls::client_config(ca)
                    .map_err(|e| SyslogError::Tls(e.to_string()))?;
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            _ => None,
        };
        let (queue, receiver) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(send_all(receiver, target, source, tls, dropped.clone()));
        Ok(Arc::new(SyslogExporter { queue, dropped }))
    }
}

impl AuditSink for SyslogExporter {
    fn recorded(&self, event: &AuditEvent) {
        if self.queue.try_send(event.clone()).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(
                    dropped = before + 1,
                    "audit syslog export is behind: events not exported (they stay in the audit trail)"
                );
            }
        }
    }
}

/// A connection to the collector.
enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(
    target: &SyslogTarget,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> std::io::Result<Connection> {
    let addr = (target.host.as_str(), target.port);
    match target.transport {
        Transport::Udp => {
            let socket = UdpSocket::bind(("0.0.0.0", 0)).await?;
            socket.connect(addr).await?;
            Ok(Connection::Udp(socket))
        }
        Transport::Tcp => Ok(Connection::Tcp(TcpStream::connect(addr).await?)),
        Transport::Tls => {
            let stream = TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let connector = tls.ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
            Ok(Connection::Tls(Box::new(
                connector.connect(name, stream).await?,
            )))
        }
    }
}

impl Connection {
    async fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        let framed = || {
            let mut frame = format!("{} ", message.len()).into_bytes();
            frame.extend_from_slice(message);
            frame
        };
        match self {
            Connection::Udp(socket) => socket.send(message).await.map(|_| ()),
            Connection::Tcp(stream) => stream.write_all(&framed()).await,
            Connection::Tls(stream) => {
                stream.write_all(&framed()).await?;
                stream.flush().await
            }
        }
    }
}

async fn send_all(
    mut receiver: mpsc::Receiver<AuditEvent>,
    target: SyslogTarget,
    source: AuditSource,
    tls: Option<tokio_rustls::TlsConnector>,
    dropped: Arc<AtomicU64>,
) {
    let mut connection: Option<Connection> = None;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_secs(1);
    while let Some(event) = receiver.recv().await {
        let message = syslog_message(&event, &source);
        // Two tries: a connection the collector closed is found out by the first write.
        for _ in 0..2 {
            if connection.is_none() {
                if retry_at.is_some_and(|at| Instant::now() < at) {
                    break;
                }
                match connect(&target, tls.as_ref()).await {
                    Ok(c) => {
                        connection = Some(c);
                        retry_at = None;
                        backoff = Duration::from_secs(1);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, host = target.host, port = target.port,
                            "cannot reach the audit syslog collector; retrying in {} s", backoff.as_secs());
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        break;
                    }
                }
            }
            let Some(c) = connection.as_mut() else { break };
            match c.send(&message).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "sending to the audit syslog collector failed");
                    connection = None;
                }
            }
        }
        if connection.is_none() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t: SyslogTarget = "tls://audit.example.org:6514".parse().unwrap();
        assert_eq!(
            (t.transport, t.host.as_str(), t.port),
            (Transport::Tls, "audit.example.org", 6514)
        );
        let t: SyslogTarget = "udp://[::1]:514".parse().unwrap();
        assert_eq!(t.host, "::1");
        for bad in [
            "audit:514",
            "http://a:514",
            "udp://a",
            "tcp://:514",
            "udp://a:0",
            "udp://a:x",
        ] {
            assert!(bad.parse::<SyslogTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc5424_header() {
        let event = AuditEvent {
            id: "1".into(),
            at: "2026-12-02T16:00:00.000000Z".into(),
            actor: "alice".into(),
            address: "10.0.0.1".into(),
            action: "sign-in".into(),
            target: String::new(),
            outcome: Outcome::Refused,
            detail: "401".into(),
        };
        let source = AuditSource {
            source_id: "radport@pacs".into(),
            host: "pacs host".into(),
            ae_title: "RADPORT".into(),
        };
        let message = String::from_utf8(syslog_message(&event, &source)).unwrap();
        let expected = format!(
            "<84>1 2026-12-02T16:00:00.000000Z pacshost radport {} DICOM+RFC3881 - \u{feff}<?xml",
            std::process::id()
        );
        assert!(message.starts_with(&expected), "{message}");
    }
}
