//! The PROXY protocol (HAProxy's, versions 1 and 2): behind a load balancer in TCP mode every
//! connection comes from the balancer, so per-peer limits, a project's network rules, the audit
//! trail and the logs would all see the balancer's address. A balancer that is trusted
//! ([`crate::ReceiverConfig::proxy_protocol_from`]) sends, before anything else, a header naming
//! the client's address; this module reads exactly that header (never a byte of the
//! A-ASSOCIATE-RQ behind it) and parses it with the `ppp` crate.
//!
//! Connections from other addresses are taken as they are: a header sent by an untrusted peer
//! is not honoured (it is read as a malformed PDU and the connection is closed).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest version 1 header (the specification's limit, CRLF included).
pub const V1_MAX_LENGTH: usize = 107;
/// Longest version 2 header accepted: the 16 fixed bytes and up to this many bytes of addresses
/// and TLVs (HAProxy sends 12 to 36 bytes of addresses, and a few TLVs when asked to).
pub const V2_MAX_PAYLOAD: usize = 1024;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a trusted balancer's connection was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection ended, or failed, before a whole header arrived.
    #[error("the connection ended before a PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    /// The first bytes are not a PROXY protocol signature.
    #[error("no PROXY protocol header where one is expected")]
    Missing,
    /// A version 2 header declares more than [`V2_MAX_PAYLOAD`] bytes.
    #[error("a PROXY protocol header of {0} bytes (at most {V2_MAX_PAYLOAD} accepted)")]
    TooLong(usize),
    /// The header does not parse.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
}

/// Whether connections from `peer` carry a PROXY protocol header.
pub fn is_trusted(trusted: &[IpNet], peer: &SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Reads one PROXY protocol header from `socket`, and nothing after it. Returns the client's
/// address it names, or `None` when it names none (a balancer's own health check: version 2
/// `LOCAL`, version 1 `UNKNOWN`).
pub async fn read_header<R: AsyncRead + Unpin>(
    socket: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    // Five bytes tell the version: "PROXY" (1) or the start of the binary signature (2). No
    // header is shorter than 15 bytes, so reading them never takes the peer's first PDU bytes.
    let mut start = [0u8; 5];
    socket.read_exact(&mut start).await?;
    if &start == b"PROXY" {
        read_v1(socket, start).await
    } else if start[..] == V2_SIGNATURE[..5] {
        read_v2(socket, start).await
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

async fn read_v1<R: AsyncRead + Unpin>(
    socket: &mut R,
    start: [u8; 5],
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    // One byte at a time up to CRLF: the bytes after it are the DICOM peer's.
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX_LENGTH {
            return Err(ProxyHeaderError::Malformed(format!(
                "no CRLF within {V1_MAX_LENGTH} bytes"
            )));
        }
        line.push(socket.read_u8().await?);
    }
    // US-ASCII only, as the specification says (and `ppp` slices the text at byte offsets:
    // a multi-byte character there would panic, found by fuzz/fuzz_targets/proxy_header.rs).
    if !line.is_ascii() {
        return Err(ProxyHeaderError::Malformed("not ASCII".into()));
    }
    let text =
        std::str::from_utf8(&line).map_err(|_| ProxyHeaderError::Malformed("not ASCII".into()))?;
    let header =
        ppp::v1::Header::try_from(text).map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Unknown => None,
    })
}

async fn read_v2<R: AsyncRead + Unpin>(
    socket: &mut R,
    start: [u8; 5],
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut fixed = [0u8; 16];
    fixed[..5].copy_from_slice(&start);
    socket.read_exact(&mut fixed[5..]).await?;
    if fixed[..12] != V2_SIGNATURE[..] {
        return Err(ProxyHeaderError::Missing);
    }
    let length = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if length > V2_MAX_PAYLOAD {
        return Err(ProxyHeaderError::TooLong(length));
    }
    let mut header = fixed.to_vec();
    header.resize(16 + length, 0);
    socket.read_exact(&mut header[16..]).await?;
    let parsed = ppp::v2::Header::try_from(&header[..])
        .map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    if parsed.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Command, Protocol, Version};

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut input = bytes;
        let result = read_header(&mut input).await;
        (result, input.to_vec())
    }

    fn v2(command: Command, source: &str, destination: &str) -> Vec<u8> {
        let source: SocketAddr = source.parse().unwrap();
        let destination: SocketAddr = destination.parse().unwrap();
        Builder::with_addresses(
            Version::Two | command,
            Protocol::Stream,
            (source, destination),
        )
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn version_2_names_the_client_and_leaves_the_pdu() {
        let mut bytes = v2(Command::Proxy, "10.1.2.3:4567", "10.0.0.1:11112");
        bytes.extend_from_slice(&[0x01, 0x00, 0, 0, 0, 0xcd]);
        let (result, rest) = read(&bytes).await;
        assert_eq!(result.unwrap(), Some("10.1.2.3:4567".parse().unwrap()));
        assert_eq!(rest, [0x01, 0x00, 0, 0, 0, 0xcd], "the PDU is left unread");

        let bytes = v2(Command::Proxy, "[2001:db8::7]:1000", "[2001:db8::1]:11112");
        assert_eq!(
            read(&bytes).await.0.unwrap(),
            Some("[2001:db8::7]:1000".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn a_health_check_names_no_client() {
        let bytes = v2(Command::Local, "10.1.2.3:4567", "10.0.0.1:11112");
        assert_eq!(read(&bytes).await.0.unwrap(), None);
        let (result, rest) = read(b"PROXY UNKNOWN\r\n\x01").await;
        assert_eq!(result.unwrap(), None);
        assert_eq!(rest, [0x01]);
    }

    #[tokio::test]
    async fn version_1_names_the_client_and_leaves_the_pdu() {
        let (result, rest) = read(b"PROXY TCP4 192.168.7.9 10.0.0.1 40000 11112\r\n\x01\x00").await;
        assert_eq!(result.unwrap(), Some("192.168.7.9:40000".parse().unwrap()));
        assert_eq!(rest, [0x01, 0x00]);
        let (result, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 11112\r\n").await;
        assert_eq!(
            result.unwrap(),
            Some("[2001:db8::7]:40000".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn bad_headers_are_refused() {
        // A plain A-ASSOCIATE-RQ where a header is expected.
        let (result, _) = read(&[0x01, 0x00, 0, 0, 0, 0xcd, 0, 1]).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::Missing)),
            "{result:?}"
        );
        // A version 1 line without an end.
        let (result, _) = read(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat()).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::Malformed(_))),
            "{result:?}"
        );
        // Not ASCII: a lone CR followed by a multi-byte character made `ppp` panic (it cuts
        // the text two bytes after the first CR).
        let (result, _) = read("PROXY TCP4 1\r\u{29a}\r\n".as_bytes()).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::Malformed(_))),
            "{result:?}"
        );
        // Nonsense addresses.
        let (result, _) = read(b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n").await;
        assert!(
            matches!(result, Err(ProxyHeaderError::Malformed(_))),
            "{result:?}"
        );
        // A version 2 header declaring 65 535 bytes is refused from its length.
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (result, _) = read(&bytes).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::TooLong(65535))),
            "{result:?}"
        );
        // Cut off.
        let bytes = v2(Command::Proxy, "10.1.2.3:4567", "10.0.0.1:11112");
        let (result, _) = read(&bytes[..20]).await;
        assert!(matches!(result, Err(ProxyHeaderError::Io(_))), "{result:?}");
    }

    #[test]
    fn trust_is_by_network() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/30".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(is_trusted(&trusted, &"10.0.0.2:5".parse().unwrap()));
        assert!(!is_trusted(&trusted, &"10.0.0.4:5".parse().unwrap()));
        assert!(is_trusted(&trusted, &"[::1]:5".parse().unwrap()));
        assert!(
            is_trusted(&trusted, &"[::ffff:10.0.0.1]:5".parse().unwrap()),
            "an IPv4-mapped address is the IPv4 one"
        );
    }
}
