//! Turning what a request presents (a name and password, a token) into a [`Principal`], and
//! the first administrator of a fresh catalog.

use std::time::Duration;

use radport_catalog::{Catalog, CatalogError, User};

use crate::{password, token, LoginLimiter, Principal};

/// Name of the administrator a fresh catalog gets.
pub const FIRST_ADMIN: &str = "admin";

/// A token's last use is recorded at most this often (a write per request would cost more
/// than the information is worth).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Why a request is not let in. The message never says whether an account exists.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// Unknown account, wrong password, or an account without a password.
    #[error("wrong user name or password")]
    BadCredentials,
    /// The account is disabled.
    #[error("this account is disabled")]
    Disabled,
    /// Too many failed attempts: try again after this long.
    #[error("too many failed sign-ins; try again in {} s", .0.as_secs().max(1))]
    Waiting(Duration),
    /// Not a token, an unknown one, a revoked one or an expired one.
    #[error("the token is not valid (unknown, revoked or expired)")]
    BadToken,
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Checks credentials against the catalog's accounts and tokens.
#[derive(Clone, Debug)]
pub struct Authenticator {
    catalog: Catalog,
    limiter: std::sync::Arc<LoginLimiter>,
}

/// Name of the tokens that are web sessions.
pub const SESSION_TOKEN_NAME: &str = "web session";

/// Who presented a token.
#[derive(Clone, Debug)]
pub struct Caller {
    /// What they may do.
    pub principal: Principal,
    /// Their password was set by someone else: a session may only change it.
    pub must_change_password: bool,
    /// The token's id.
    pub token_id: String,
}

/// A successful sign-in.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// Who.
    pub principal: Principal,
    /// The password was set by someone else: the user must choose a new one first.
    pub must_change_password: bool,
}

impl Authenticator {
    /// An authenticator over `catalog`, with its own [`LoginLimiter`].
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            limiter: std::sync::Arc::new(LoginLimiter::new()),
        }
    }

    /// Signs `name` in with `password`, from client address `addr` (rate-limited per account
    /// and per address).
    pub async fn sign_in(
        &self,
        name: &str,
        password_given: &str,
        addr: &str,
    ) -> Result<SignedIn, Denied> {
        let user_key = format!("user:{}", name.to_ascii_lowercase());
        let addr_key = format!("addr:{addr}");
        let keys = [user_key.as_str(), addr_key.as_str()];
        self.limiter.check(&keys).map_err(Denied::Waiting)?;
        let user = self.catalog.get_user(name).await?;
        let matches = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
            Some(stored) => password::verify(password_given, stored),
            None => {
                // As long as a real check, so that timing does not tell which names exist.
                password::verify(password_given, DUMMY_HASH);
                false
            }
        };
        let Some(user) = user.filter(|_| matches) else {
            self.limiter.failed(&keys);
            tracing::info!(addr, "sign-in refused");
            return Err(Denied::BadCredentials);
        };
        if user.disabled {
            return Err(Denied::Disabled);
        }
        self.limiter.succeeded(&keys);
        Ok(SignedIn {
            principal: self.principal_of(&user).await?,
            must_change_password: user.must_change_password,
        })
    }

    /// Who presents the token `secret`.
    pub async fn by_token(&self, secret: &str) -> Result<Caller, Denied> {
        if !token::looks_like_token(secret) {
            return Err(Denied::BadToken);
        }
        let Some(t) = self.catalog.token_by_hash(&token::hash(secret)).await? else {
            return Err(Denied::BadToken);
        };
        let now = chrono::Utc::now();
        let expired = t
            .expires_at
            .as_deref()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .is_some_and(|e| e <= now);
        if t.revoked_at.is_some() || expired {
            return Err(Denied::BadToken);
        }
        let user = self
            .catalog
            .get_user(&t.user)
            .await?
            .ok_or(Denied::BadToken)?;
        if user.disabled {
            return Err(Denied::Disabled);
        }
        let stale = t
            .last_used_at
            .as_deref()
            .and_then(|l| chrono::DateTime::parse_from_rfc3339(l).ok())
            .is_none_or(|l| {
                now.signed_duration_since(l).to_std().unwrap_or_default() > TOUCH_EVERY
            });
        if stale {
            self.catalog.touch_token(&t.id).await?;
        }
        Ok(Caller {
            principal: self
                .principal_of(&user)
                .await?
                .restricted(t.role, t.projects.as_deref()),
            must_change_password: user.must_change_password,
            token_id: t.id,
        })
    }

    /// A session for a signed-in user: a token of theirs named [`SESSION_TOKEN_NAME`] that
    /// expires after `lifetime` (the web UI keeps it in a cookie).
    pub async fn start_session(
        &self,
        user: &str,
        lifetime: Duration,
    ) -> Result<token::Issued, CatalogError> {
        let issued = token::issue();
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(12));
        self.catalog
            .create_token(&radport_catalog::NewToken {
                id: issued.id.clone(),
                user: user.to_string(),
                name: SESSION_TOKEN_NAME.into(),
                token_hash: issued.hash.clone(),
                role: None,
                projects: None,
                expires_at: Some(expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            })
            .await?;
        Ok(issued)
    }

    /// The principal of an account: its administrator flag and memberships.
    pub async fn principal_of(&self, user: &User) -> Result<Principal, CatalogError> {
        let memberships = self.catalog.list_members(None, Some(&user.name)).await?;
        Ok(Principal::user(
            &user.name,
            user.is_admin,
            memberships.into_iter().map(|m| (m.project, m.role)),
        ))
    }

    /// Gives a catalog without accounts its first administrator, [`FIRST_ADMIN`]: with
    /// `password` if one is configured, else a random one that must be changed at the first
    /// sign-in, returned so that the caller can show it once. `None`: the catalog had accounts.
    pub async fn ensure_first_admin(
        &self,
        configured: Option<&str>,
    ) -> Result<Option<FirstAdmin>, FirstAdminError> {
        if self.catalog.count_users().await? > 0 {
            return Ok(None);
        }
        let (secret, generated) = match configured {
            Some(p) => (p.to_string(), false),
            None => (password::random(), true),
        };
        let hash = password::hash(&secret)?;
        match self
            .catalog
            .create_user(FIRST_ADMIN, Some(&hash), true, generated)
            .await
        {
            Ok(_) => Ok(Some(FirstAdmin {
                password: generated.then_some(secret),
            })),
            // Another node made it first.
            Err(CatalogError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The first administrator, just created.
#[derive(Debug)]
pub struct FirstAdmin {
    /// The random password drawn for it (to show once); `None` when it was configured.
    pub password: Option<String>,
}

/// Why the first administrator could not be created.
#[derive(Debug, thiserror::Error)]
pub enum FirstAdminError {
    /// The configured password is not acceptable.
    #[error("the configured initial admin password: {0}")]
    Password(#[from] password::PasswordError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// A valid argon2id hash of a random password, verified against when the account does not
/// exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$eaTQuxjyKqHWcDOhTyVsGgcN8vgWOlbbrtN5gTAAIe4";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_a_real_check() {
        let parsed = argon2::password_hash::PasswordHash::new(DUMMY_HASH).expect("a PHC string");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let started = std::time::Instant::now();
        assert!(!password::verify("anything at all", DUMMY_HASH));
        let dummy = started.elapsed();
        let real = password::hash("anything at all").unwrap();
        let started = std::time::Instant::now();
        assert!(password::verify("anything at all", &real));
        let genuine = started.elapsed();
        // The same parameters: the same order of time (not a timing test: a tenth would do).
        assert!(dummy * 10 > genuine, "dummy {dummy:?}, real {genuine:?}");
    }
}
