//! Access control: who is asking ([`Principal`]), what they want to do ([`Action`]), and
//! whether they may ([`Principal::may`]); and the secrets that prove who is asking — passwords
//! ([`password`], argon2id), API tokens ([`token`]) — with a bound on guessing them
//! ([`LoginLimiter`]).
//!
//! The model: a global administrator may do everything, and is the only one who sees project
//! `admin` (every series) and manages accounts. Anyone else holds a [`Role`] per project:
//! `viewer` sees the project's series, thumbnails, reports and downloads; `contributor` also
//! uploads, imports into the project and sends to it; `manager` also manages its members and
//! DICOM rules and deletes or moves its series. A series in two projects is visible to the
//! members of either. An API token acts for its user, limited to the projects and the role it
//! was made with.
//!
//! The rules live here, in one function, and are stored by `radport-catalog`; the HTTP and
//! DIMSE layers ask [`Principal::may`] at their one point of entry.

#![warn(missing_docs)]

mod authenticate;
pub mod dicom;
mod limiter;
pub mod oidc;
pub mod password;
mod policy;
pub mod tls;
pub mod token;

pub use authenticate::{Authenticator, Denied, FirstAdmin, FirstAdminError, SignedIn, FIRST_ADMIN};
pub use limiter::LoginLimiter;
pub use policy::{Action, Principal};
pub use radport_catalog::Role;

/// Whether requests must prove who sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Anyone who reaches the ports may do everything (radport before access control).
    Open,
    /// Every request signs in (a session or a token) and is held to its roles.
    #[default]
    Enforced,
}

impl Mode {
    /// The mode's name as in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Enforced => "enforced",
        }
    }

    /// Parses a settings value.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "open" => Some(Mode::Open),
            "enforced" => Some(Mode::Enforced),
            _ => None,
        }
    }
}
