//! What a browser or an OpenID provider hands radport's access control (crates/access): the
//! pending sign-in cookie (`oidc::PendingLogin::from_cookie`), the `return_to` of a sign-in
//! (`oidc::local_path`), the claims of a verified token (`oidc::map_claims`, JSON from the
//! provider) and a bearer value (`token::looks_like_token`).
//!
//! Input: a selector byte, then the text (lossy UTF-8).
//!
//! Contract: no panic; a `return_to` is always a path of this server (starts with one `/`, not
//! `//` or `/\`, no control characters, at most 2048 bytes), from the cookie too; a cookie
//! that parses comes back equal after `to_cookie`; claims give a user name that is a valid
//! radport name, project names that are valid and lower case, at most one role each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_access::oidc::{local_path, map_claims, ClaimMapping, PendingLogin};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

fn assert_local(path: &str, from: &str) {
    assert!(
        path.starts_with('/')
            && !path.starts_with("//")
            && !path.starts_with("/\\")
            && path.len() <= 2048
            && !path.chars().any(char::is_control),
        "{path:?} from {from:?} leaves this server"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 4 {
        0 => assert_local(&local_path(&text), &text),
        1 => {
            if let Some(pending) = PendingLogin::from_cookie(&text) {
                assert_local(&pending.return_to, &text);
                assert_eq!(
                    PendingLogin::from_cookie(&pending.to_cookie()),
                    Some(pending)
                );
            }
        }
        2 => {
            let Ok(serde_json::Value::Object(claims)) = serde_json::from_str(&text) else {
                return;
            };
            let mapping = ClaimMapping {
                roles_claim: if selector & 0x10 == 0 {
                    "groups".into()
                } else {
                    "realm_access.roles".into()
                },
                ..ClaimMapping::default()
            };
            if let Ok(identity) = map_claims(&mapping, &claims) {
                assert!(
                    radport_catalog::is_valid_name(&identity.username),
                    "{identity:?}"
                );
                let mut seen = std::collections::BTreeSet::new();
                for (project, _) in &identity.memberships {
                    assert!(radport_catalog::is_valid_name(project), "{identity:?}");
                    assert_eq!(project, &project.to_ascii_lowercase());
                    assert!(seen.insert(project.clone()), "{identity:?}");
                }
            }
        }
        _ => {
            let _ = radport_access::token::looks_like_token(&text);
        }
    }
});
