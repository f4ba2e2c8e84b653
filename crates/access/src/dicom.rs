//! Which DICOM peers may store into a project: its calling AE titles and networks
//! ([`DicomRules`], stored by the catalog). An empty list allows anyone for its part.

use std::net::IpAddr;

use ipnet::IpNet;
use radport_catalog::DicomRules;

/// Why an association is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DicomRefusal {
    /// The calling AE title is not among the project's.
    #[error("calling AE title {0:?} may not store into this project")]
    CallingAeTitle(String),
    /// The peer's address is in none of the project's networks.
    #[error("address {0} may not store into this project")]
    Address(IpAddr),
}

/// Whether `calling_ae_title` from `peer` may store into a project with `rules`.
pub fn check(rules: &DicomRules, calling_ae_title: &str, peer: IpAddr) -> Result<(), DicomRefusal> {
    let calling = calling_ae_title.trim();
    if !rules.calling_ae_titles.is_empty()
        && !rules.calling_ae_titles.iter().any(|a| a.trim() == calling)
    {
        return Err(DicomRefusal::CallingAeTitle(calling.to_string()));
    }
    if !rules.networks.is_empty() {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address.
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        let inside = rules
            .networks
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .any(|n| n.contains(&peer));
        if !inside {
            return Err(DicomRefusal::Address(peer));
        }
    }
    Ok(())
}

/// Most entries of each list.
pub const MAX_RULES: usize = 1000;

/// The rules as given by a user, checked and normalised: AE titles of 1 to 16 printable
/// characters (no backslash), networks in CIDR form or single addresses.
pub fn normalise(rules: &DicomRules) -> Result<DicomRules, String> {
    if rules.calling_ae_titles.len() > MAX_RULES || rules.networks.len() > MAX_RULES {
        return Err(format!(
            "at most {MAX_RULES} AE titles and {MAX_RULES} networks"
        ));
    }
    let mut out = DicomRules::default();
    for a in &rules.calling_ae_titles {
        let a = a.trim();
        if a.is_empty()
            || a.len() > 16
            || !a.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
        {
            return Err(format!(
                "{a:?} is not an AE title (1 to 16 printable ASCII characters, no backslash)"
            ));
        }
        if !out.calling_ae_titles.iter().any(|x| x == a) {
            out.calling_ae_titles.push(a.to_string());
        }
    }
    for n in &rules.networks {
        let net = parse_network(n.trim()).map_err(|_| {
            format!("{n:?} is not a network (like 10.1.0.0/16 or 2001:db8::/32) nor an address")
        })?;
        let text = net.trunc().to_string();
        if !out.networks.contains(&text) {
            out.networks.push(text);
        }
    }
    Ok(out)
}

fn parse_network(text: &str) -> Result<IpNet, ipnet::AddrParseError> {
    text.parse::<IpNet>()
        .or_else(|e| text.parse::<IpAddr>().map(IpNet::from).map_err(|_| e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(aes: &[&str], nets: &[&str]) -> DicomRules {
        DicomRules {
            calling_ae_titles: aes.iter().map(|s| s.to_string()).collect(),
            networks: nets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_allow_their_peers_and_refuse_the_rest() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(check(&rules(&[], &[]), "ANY", ip("8.8.8.8")), Ok(()));
        let r = rules(
            &["CT-1", "MR-2"],
            &["10.1.0.0/16", "2001:db8::/32", "192.168.5.7"],
        );
        assert_eq!(check(&r, "CT-1 ", ip("10.1.200.3")), Ok(()));
        assert_eq!(check(&r, "MR-2", ip("192.168.5.7")), Ok(()));
        assert_eq!(check(&r, "MR-2", ip("::ffff:10.1.0.9")), Ok(()));
        assert_eq!(check(&r, "MR-2", ip("2001:db8::1")), Ok(()));
        assert_eq!(
            check(&r, "US-3", ip("10.1.0.1")),
            Err(DicomRefusal::CallingAeTitle("US-3".into()))
        );
        assert_eq!(
            check(&r, "CT-1", ip("10.2.0.1")),
            Err(DicomRefusal::Address(ip("10.2.0.1")))
        );
        assert_eq!(
            check(&r, "CT-1", ip("192.168.5.8")),
            Err(DicomRefusal::Address(ip("192.168.5.8")))
        );
    }

    #[test]
    fn rules_are_checked_and_normalised() {
        let n = normalise(&rules(&[" CT-1 ", "CT-1"], &["10.1.2.3/16", "::1"])).unwrap();
        assert_eq!(n, rules(&["CT-1"], &["10.1.0.0/16", "::1/128"]));
        assert!(normalise(&rules(&["A-VERY-LONG-AE-TITLE"], &[])).is_err());
        assert!(normalise(&rules(&["BAD\\AE"], &[])).is_err());
        assert!(normalise(&rules(&[""], &[])).is_err());
        assert!(normalise(&rules(&[], &["10.0.0.0/33"])).is_err());
        assert!(normalise(&rules(&[], &["not a network"])).is_err());
        let many: Vec<String> = (0..=MAX_RULES).map(|i| format!("AE{i}")).collect();
        assert!(normalise(&DicomRules {
            calling_ae_titles: many,
            networks: vec![]
        })
        .is_err());
    }
}
