//! The `Host` check against DNS rebinding: a web page the user merely visits can point its own
//! domain at this server's address (or at `127.0.0.1`) and read the API as if it were its own
//! origin; the browser then still sends that domain as `Host`. So a request is answered only
//! for a host this server is known by: an IP address literal, `localhost`, its public host name
//! and this machine's name, and whatever `--allowed-hosts` adds (`*`: any host, for setups
//! behind a proxy that checks it).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

/// The host names a request may be addressed to (besides IP address literals).
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
}

impl AllowedHosts {
    /// `localhost`, `public_host`, this machine's name and `extra` (`*` among them: any).
    pub fn new(public_host: &str, extra: &[String]) -> Self {
        let mut names = vec!["localhost".to_string(), public_host.to_ascii_lowercase()];
        if let Ok(hostname) = std::fs::read_to_string("/etc/hostname") {
            names.push(hostname.trim().to_ascii_lowercase());
        }
        let any = extra.iter().any(|h| h.trim() == "*");
        names.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()));
        names.retain(|n| !n.is_empty() && n != "*");
        AllowedHosts { names, any }
    }

    /// Whether a `Host` header value (with or without a port) names this server.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let host = host.trim().to_ascii_lowercase();
        // `[::1]:8080`, `10.0.0.1:8080`, `pacs:8080`, `pacs`
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default().to_string()
        } else {
            host.rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                .map_or(host.clone(), |(name, _)| name.to_string())
        };
        name.parse::<std::net::IpAddr>().is_ok() || self.names.contains(&name)
    }
}

/// The middleware: refuses a request for a host this server is not known by.
pub(crate) async fn check_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if state.allowed_hosts.allows(&h) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "this server is not known by that host name (see --allowed-hosts)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_the_server_is_known_by() {
        let a = AllowedHosts::new("pacs.example.org", &["radport.internal".to_string()]);
        for ok in [
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "pacs.example.org:443",
            "radport.internal",
        ] {
            assert!(a.allows(ok), "{ok}");
        }
        for refused in [
            "attacker.example",
            "attacker.example:8080",
            "pacs.example.org.attacker.example",
            "evil-localhost",
            "",
        ] {
            assert!(!a.allows(refused), "{refused}");
        }
        assert!(AllowedHosts::new("x", &["*".to_string()]).allows("anything.example"));
    }
}
