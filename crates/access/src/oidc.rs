//! Single sign-on with OpenID Connect: the web UI signs in by the authorization code flow with
//! PKCE ([`Oidc::start_login`], [`Oidc::finish_login`]), and API clients send the provider's
//! JWT access tokens as `Authorization: Bearer` ([`Oidc::validate_bearer`]).
//!
//! The provider is found by discovery (`{issuer}/.well-known/openid-configuration`, fetched
//! when first needed and kept); its signing keys (JWKS) are kept too and fetched again when a
//! token names a key that is not among them (at most every [`KEYS_REFETCH_EVERY`]) or when
//! they are older than [`KEYS_MAX_AGE`]. A JWT is accepted only with an asymmetric signature
//! ([`ALLOWED_ALGORITHMS`]: never `none`, never an HMAC, whose key a client could know) by a
//! key of the JWKS, from the discovered issuer, for the configured audience, and within its
//! `exp`/`nbf` (with [`LEEWAY`] for clocks that differ).
//!
//! Who the token names becomes an [`Identity`] through a [`ClaimMapping`]: the user name from
//! one claim (`preferred_username`, else `sub`), global administration and project roles from
//! the values of another (`groups`): the administrators' group, and `radport:<project>:<role>`.
//! Every answer of the provider is read up to a bound (discovery, keys, tokens); nothing here
//! logs a token or a claim.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use radport_catalog::Role;
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest;

use crate::Principal;

/// Signature algorithms accepted in JWTs (asymmetric only).
pub const ALLOWED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Clock difference tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Keys older than this are fetched again at their next use.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

/// A token naming an unknown key makes the keys be fetched again at most this often (a stream
/// of forged tokens cannot make radport hammer the provider).
pub const KEYS_REFETCH_EVERY: Duration = Duration::from_secs(10);

/// A failed discovery is tried again at most this often.
const DISCOVERY_RETRY_EVERY: Duration = Duration::from_secs(5);

/// Largest discovery document, token response or userinfo answer read.
const MAX_DOCUMENT: usize = 64 * 1024;
/// Largest JWKS read.
const MAX_JWKS: usize = 256 * 1024;
/// Largest JWT looked at.
const MAX_JWT: usize = 16 * 1024;
/// Values of the roles claim looked at.
const MAX_GROUPS: usize = 1000;
/// Time for one request to the provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How claims become a user name and roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Claim holding the user name (falls back to `sub` when absent).
    pub username_claim: String,
    /// Claim holding a string array of groups or roles (a dotted path such as
    /// `realm_access.roles` is followed when no claim has the whole name).
    pub roles_claim: String,
    /// The value that makes a global administrator.
    pub admin_group: String,
    /// Values `<prefix><project>:<viewer|contributor|manager>` give project roles.
    pub group_prefix: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            username_claim: "preferred_username".into(),
            roles_claim: "groups".into(),
            admin_group: "radport-admin".into(),
            group_prefix: "radport:".into(),
        }
    }
}

/// How radport talks to its OpenID provider.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The issuer URL (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// radport's client id at the provider.
    pub client_id: String,
    /// The client secret; `None`: a public client (PKCE only).
    pub client_secret: Option<String>,
    /// Where the provider sends the browser back (`…/api/oidc/callback`).
    pub redirect_uri: String,
    /// The audience bearer JWTs must name.
    pub audience: String,
    /// Claims → user name and roles.
    pub mapping: ClaimMapping,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("redirect_uri", &self.redirect_uri)
            .field("audience", &self.audience)
            .field("mapping", &self.mapping)
            .finish()
    }
}

/// Why single sign-on or a bearer JWT failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The settings cannot work.
    #[error("single sign-on settings: {0}")]
    Config(String),
    /// The provider could not be reached or answered something unusable.
    #[error("the OpenID provider: {0}")]
    Provider(String),
    /// The provider refused the sign-in (its `error` and description).
    #[error("the OpenID provider refused the sign-in: {0}")]
    Refused(String),
    /// The sign-in's state is missing or does not match (an old, replayed or forged answer).
    #[error("this sign-in was not started here or has expired; start again")]
    State,
    /// A JWT that is not accepted.
    #[error("the token is not valid: {0}")]
    InvalidToken(String),
    /// The user name from the claims cannot name an account.
    #[error(
        "the provider's user name {0:?} is not a valid account name (1 to 64 of A-Z a-z 0-9 . _ -)"
    )]
    Username(String),
}

/// Who a validated token names, and what the mapping gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The issuer of the token.
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The account name.
    pub username: String,
    /// Global administrator (the admin group).
    pub admin: bool,
    /// Project roles (highest per project), by project name in lower case.
    pub memberships: Vec<(String, Role)>,
}

impl Identity {
    /// The principal of these claims.
    pub fn principal(&self) -> Principal {
        Principal::user(&self.username, self.admin, self.memberships.iter().cloned())
    }
}

/// A sign-in under way: what the callback must find again. Kept by the browser in a
/// short-lived cookie ([`PendingLogin::to_cookie`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLogin {
    /// The `state` sent to the provider.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// The local path to go to afterwards.
    pub return_to: String,
}

impl PendingLogin {
    /// The cookie value (random parts and the base64url path, joined by dots).
    pub fn to_cookie(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.state,
            self.nonce,
            self.verifier,
            b64(self.return_to.as_bytes())
        )
    }

    /// The sign-in from its cookie value.
    pub fn from_cookie(value: &str) -> Option<PendingLogin> {
        let mut parts = value.split('.');
        let (state, nonce, verifier, path) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [state, nonce, verifier].iter().any(|p| p.len() < 32) {
            return None;
        }
        let return_to = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(path)
                .ok()?,
        )
        .ok()?;
        Some(PendingLogin {
            state: state.into(),
            nonce: nonce.into(),
            verifier: verifier.into(),
            return_to: local_path(&return_to),
        })
    }
}

/// `path` if it is a path of this server (`/…`, not `//host` or `/\host`), else `/`.
pub fn local_path(path: &str) -> String {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 2048
        && !path.chars().any(char::is_control);
    if ok {
        path.to_string()
    } else {
        "/".to_string()
    }
}

/// What discovery tells.
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    /// The issuer, as tokens name it.
    pub issuer: String,
    /// Where browsers sign in.
    pub authorization_endpoint: String,
    /// Where codes are exchanged.
    pub token_endpoint: String,
    /// The signing keys.
    pub jwks_uri: String,
    /// Claims of the user, for an access token.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// How the token endpoint authenticates clients.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

struct Keys {
    keys: Vec<Jwk>,
    fetched: Instant,
}

/// The OpenID provider, as radport uses it (cheap to share: keep it in an `Arc`).
pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    metadata: tokio::sync::Mutex<(Option<Arc<Metadata>>, Option<Instant>)>,
    keys: tokio::sync::RwLock<Option<Arc<Keys>>>,
    keys_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.config)
            .finish()
    }
}

/// A sign-in to start: the provider's URL to send the browser to, and what to keep.
#[derive(Debug)]
pub struct LoginStart {
    /// The authorization request.
    pub url: String,
    /// Kept in the browser's cookie until the callback.
    pub pending: PendingLogin,
}

impl Oidc {
    /// radport's side of the provider `config` (nothing is fetched yet).
    pub fn new(config: OidcConfig) -> Result<Oidc, OidcError> {
        check_url("issuer", &config.issuer)?;
        // Where browsers are sent, not what radport fetches: the provider decides whether it
        // takes plain http (radport served without TLS).
        if !url::Url::parse(&config.redirect_uri)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            return Err(OidcError::Config(format!(
                "the redirect URI {:?} is not an http(s) URL",
                config.redirect_uri
            )));
        }
        if config.client_id.is_empty() {
            return Err(OidcError::Config("a client id is needed".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Config(format!("HTTP client: {e}")))?;
        Ok(Oidc {
            config,
            http,
            metadata: tokio::sync::Mutex::new((None, None)),
            keys: tokio::sync::RwLock::new(None),
            keys_refetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider's metadata: discovered once, then kept (a failure is retried, at most
    /// every few seconds).
    pub async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        let mut guard = self.metadata.lock().await;
        if let Some(m) = &guard.0 {
            return Ok(m.clone());
        }
        if guard
            .1
            .is_some_and(|failed| failed.elapsed() < DISCOVERY_RETRY_EVERY)
        {
            return Err(OidcError::Provider(
                "discovery failed moments ago; try again shortly".into(),
            ));
        }
        match self.discover().await {
            Ok(m) => {
                let m = Arc::new(m);
                guard.0 = Some(m.clone());
                Ok(m)
            }
            Err(e) => {
                guard.1 = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Discovers the provider now if it answers (at start): a failure here is not held against
    /// the next attempt, which is made when single sign-on is first needed.
    pub async fn discover_early(&self) -> Result<(), OidcError> {
        let m = self.discover().await?;
        let mut guard = self.metadata.lock().await;
        if guard.0.is_none() {
            guard.0 = Some(Arc::new(m));
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Metadata, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = self
            .fetch(self.http.get(&url), MAX_DOCUMENT, "discovery")
            .await?;
        let m: Metadata = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Provider(format!("discovery document: {e}")))?;
        if m.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(OidcError::Provider(format!(
                "discovery names issuer {:?}, not the configured {:?}",
                m.issuer, self.config.issuer
            )));
        }
        for (what, url) in [
            ("authorization endpoint", &m.authorization_endpoint),
            ("token endpoint", &m.token_endpoint),
            ("jwks_uri", &m.jwks_uri),
        ] {
            check_url(what, url).map_err(|e| OidcError::Provider(e.to_string()))?;
        }
        if let Some(u) = &m.userinfo_endpoint {
            check_url("userinfo endpoint", u).map_err(|e| OidcError::Provider(e.to_string()))?;
        }
        tracing::info!(issuer = m.issuer, "OpenID provider discovered");
        Ok(m)
    }

    /// Sends `request`; the body of a success, read up to `limit` bytes.
    async fn fetch(
        &self,
        request: reqwest::RequestBuilder,
        limit: usize,
        what: &str,
    ) -> Result<Vec<u8>, OidcError> {
        let response = request
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("{what}: {e}")))?;
        let status = response.status();
        let body = read_bounded(response, limit)
            .await
            .map_err(|e| OidcError::Provider(format!("{what}: {e}")))?;
        if !status.is_success() {
            // An OAuth error body says why (`error`, `error_description`).
            let reason = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    let error = v["error"].as_str()?.to_string();
                    Some(match v["error_description"].as_str() {
                        Some(d) => format!("{error}: {}", cut(d, 200)),
                        None => error,
                    })
                })
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(OidcError::Provider(format!("{what}: {reason}")));
        }
        Ok(body)
    }

    /// The signing keys (fetched if none are kept, or if they are old).
    async fn keys(&self) -> Result<Arc<Keys>, OidcError> {
        if let Some(k) = self.keys.read().await.as_ref() {
            if k.fetched.elapsed() < KEYS_MAX_AGE {
                return Ok(k.clone());
            }
        }
        self.refetch_keys(true).await
    }

    /// Fetches the keys again; unless `forced`, at most every [`KEYS_REFETCH_EVERY`] (else the
    /// kept ones are returned).
    async fn refetch_keys(&self, forced: bool) -> Result<Arc<Keys>, OidcError> {
        let mut last = self.keys_refetch.lock().await;
        if !forced && last.is_some_and(|l| l.elapsed() < KEYS_REFETCH_EVERY) {
            return match self.keys.read().await.as_ref() {
                Some(k) => Ok(k.clone()),
                None => Err(OidcError::Provider("no signing keys yet".into())),
            };
        }
        *last = Some(Instant::now());
        let metadata = self.metadata().await?;
        let body = self
            .fetch(self.http.get(&metadata.jwks_uri), MAX_JWKS, "JWKS")
            .await?;
        let set: JwkSet = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| {
                // Keys of kinds this program does not know are skipped, not fatal.
                let keys = v["keys"]
                    .as_array()?
                    .iter()
                    .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok());
                Some(JwkSet {
                    keys: keys.collect(),
                })
            })
            .ok_or_else(|| OidcError::Provider("JWKS: not a key set".into()))?;
        let keys = Arc::new(Keys {
            keys: set.keys,
            fetched: Instant::now(),
        });
        tracing::debug!(keys = keys.keys.len(), "OpenID provider keys fetched");
        *self.keys.write().await = Some(keys.clone());
        Ok(keys)
    }

    /// The claims of `token` after checking its signature, issuer, audience and times.
    async fn verify(&self, token: &str, audience: &str) -> Result<Map<String, Value>, OidcError> {
        let invalid = |why: &str| OidcError::InvalidToken(why.to_string());
        if token.len() > MAX_JWT {
            return Err(invalid("longer than any token radport accepts"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("not a signed JWT with a known algorithm"))?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(invalid(
                "its algorithm is not accepted (asymmetric signatures only)",
            ));
        }
        let metadata = self.metadata().await?;
        let mut keys = self.keys().await?;
        let mut key = pick_key(&keys.keys, header.kid.as_deref(), header.alg);
        if key.is_none() {
            // Perhaps the provider rotated its keys.
            keys = self.refetch_keys(false).await?;
            key = pick_key(&keys.keys, header.kid.as_deref(), header.alg);
        }
        let key = key.ok_or_else(|| invalid("signed by a key the provider does not publish"))?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&metadata.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "it has expired",
                    ErrorKind::ImmatureSignature => "it is not valid yet",
                    ErrorKind::InvalidAudience => "it is for another audience",
                    ErrorKind::InvalidIssuer => "it is from another issuer",
                    ErrorKind::InvalidSignature => "its signature does not verify",
                    ErrorKind::MissingRequiredClaim(_) => "it lacks a required claim",
                    _ => "it cannot be verified",
                })
            })?;
        Ok(data.claims)
    }

    /// Who the bearer JWT `token` names (an access token from the provider for
    /// [`OidcConfig::audience`]).
    pub async fn validate_bearer(&self, token: &str) -> Result<Identity, OidcError> {
        let claims = self.verify(token, &self.config.audience).await?;
        // An ID token has the client as its audience too; it proves a sign-in to the client,
        // not a grant to call an API (RFC 9068, OIDC Core 2): refused by its `nonce` (the code
        // flow's ID tokens carry one) or its Keycloak `typ`.
        if claims.contains_key("nonce") || claims.get("typ").and_then(Value::as_str) == Some("ID") {
            return Err(OidcError::InvalidToken(
                "it is an ID token, not an access token".into(),
            ));
        }
        self.identity(&claims)
    }

    /// Starts a sign-in: the authorization request (code flow, PKCE S256, state, nonce) and
    /// what the callback needs, with `return_to` made a local path.
    pub async fn start_login(&self, return_to: &str) -> Result<LoginStart, OidcError> {
        let metadata = self.metadata().await?;
        let pending = PendingLogin {
            state: random(),
            nonce: random(),
            verifier: random(),
            return_to: local_path(return_to),
        };
        let mut url = url::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| OidcError::Provider(format!("authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("scope", "openid profile")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(LoginStart {
            url: url.into(),
            pending,
        })
    }

    /// Completes a sign-in: `state` must be the pending one's; the code is exchanged (with the
    /// PKCE verifier), the ID token verified (signature, issuer, audience, times, nonce) and
    /// its claims (with the userinfo endpoint's, for claims the ID token lacks) mapped.
    pub async fn finish_login(
        &self,
        code: &str,
        state: &str,
        pending: &PendingLogin,
    ) -> Result<Identity, OidcError> {
        if !constant_time_eq(state.as_bytes(), pending.state.as_bytes()) {
            return Err(OidcError::State);
        }
        let metadata = self.metadata().await?;
        let (request, form) = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.config.redirect_uri)
                .append_pair("code_verifier", &pending.verifier);
            let mut request = self
                .http
                .post(&metadata.token_endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json");
            match &self.config.client_secret {
                None => {
                    form.append_pair("client_id", &self.config.client_id);
                }
                Some(secret) => {
                    let basic = metadata
                        .token_endpoint_auth_methods_supported
                        .as_ref()
                        .is_none_or(|m| m.iter().any(|m| m == "client_secret_basic"));
                    if basic {
                        // RFC 6749 2.3.1: both form-urlencoded, then Basic.
                        let enc = |s: &str| {
                            url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                        };
                        let credentials =
                            format!("{}:{}", enc(&self.config.client_id), enc(secret));
                        request = request.header(
                            "authorization",
                            format!(
                                "Basic {}",
                                base64::engine::general_purpose::STANDARD.encode(credentials)
                            ),
                        );
                    } else {
                        form.append_pair("client_id", &self.config.client_id)
                            .append_pair("client_secret", secret);
                    }
                }
            }
            let form = form.finish();
            (request, form)
        };
        let body = self
            .fetch(request.body(form), MAX_DOCUMENT, "token endpoint")
            .await?;
        let tokens: Value = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        let id_token = tokens["id_token"]
            .as_str()
            .ok_or_else(|| OidcError::Provider("token endpoint: no id_token".into()))?;
        let mut claims = self.verify(id_token, &self.config.client_id).await?;
        if claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_none_or(|n| !constant_time_eq(n.as_bytes(), pending.nonce.as_bytes()))
        {
            return Err(OidcError::InvalidToken(
                "the ID token's nonce is not this sign-in's".into(),
            ));
        }
        // Several audiences: the token must have been issued to radport (`azp`).
        if claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1)
            && claims.get("azp").and_then(Value::as_str) != Some(self.config.client_id.as_str())
        {
            return Err(OidcError::InvalidToken(
                "the ID token was issued to another client (azp)".into(),
            ));
        }
        let lacking = [
            &self.config.mapping.username_claim,
            &self.config.mapping.roles_claim,
        ]
        .iter()
        .any(|c| claim(&claims, c).is_none());
        if let (true, Some(endpoint), Some(access_token)) = (
            lacking,
            metadata.userinfo_endpoint.as_deref(),
            tokens["access_token"].as_str(),
        ) {
            self.merge_userinfo(endpoint, access_token, &mut claims)
                .await?;
        }
        self.identity(&claims)
    }

    /// Adds the userinfo endpoint's claims that `claims` lacks (same subject only).
    async fn merge_userinfo(
        &self,
        endpoint: &str,
        access_token: &str,
        claims: &mut Map<String, Value>,
    ) -> Result<(), OidcError> {
        let body = self
            .fetch(
                self.http
                    .get(endpoint)
                    .bearer_auth(access_token)
                    .header("accept", "application/json"),
                MAX_DOCUMENT,
                "userinfo endpoint",
            )
            .await?;
        let Ok(Value::Object(info)) = serde_json::from_slice::<Value>(&body) else {
            // A signed or encrypted userinfo answer: the ID token's claims are all there is.
            return Ok(());
        };
        if info.get("sub") != claims.get("sub") {
            return Err(OidcError::Provider(
                "userinfo names another subject than the ID token".into(),
            ));
        }
        for (k, v) in info {
            claims.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// Claims → identity, by the mapping.
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, OidcError> {
        map_claims(&self.config.mapping, claims)
    }
}

/// Claims → identity, by `mapping` (the claims were verified by the caller).
pub fn map_claims(
    mapping: &ClaimMapping,
    claims: &Map<String, Value>,
) -> Result<Identity, OidcError> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OidcError::InvalidToken("no subject".into()))?;
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let username = claim(claims, &mapping.username_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(subject);
    if !radport_catalog::is_valid_name(username) {
        return Err(OidcError::Username(cut(username, 80)));
    }
    let values: Vec<&str> = match claim(claims, &mapping.roles_claim) {
        Some(Value::Array(a)) => a
            .iter()
            .take(MAX_GROUPS)
            .filter_map(Value::as_str)
            .collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    };
    let mut admin = false;
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for value in values {
        // Keycloak's full group paths start with `/`.
        let value = value.strip_prefix('/').unwrap_or(value);
        if value == mapping.admin_group {
            admin = true;
            continue;
        }
        let Some(rest) = value.strip_prefix(mapping.group_prefix.as_str()) else {
            continue;
        };
        let Some((project, role)) = rest.rsplit_once(':') else {
            continue;
        };
        let (Some(role), true) = (Role::parse(role), radport_catalog::is_valid_name(project))
        else {
            continue;
        };
        let entry = roles.entry(project.to_ascii_lowercase()).or_insert(role);
        *entry = (*entry).max(role);
    }
    Ok(Identity {
        issuer: issuer.to_string(),
        subject: subject.to_string(),
        username: username.to_string(),
        admin,
        memberships: roles.into_iter().collect(),
    })
}

/// The claim `name`, or, if there is none and the name has dots, the value at that path.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// The key of `keys` for a token signed with `alg` by key `kid` (no kid: the only key that
/// fits). Symmetric keys are never used.
fn pick_key(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let fits = |k: &&Jwk| {
        let family_fits = match &k.algorithm {
            AlgorithmParameters::RSA(_) => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            AlgorithmParameters::EllipticCurve(_) => {
                matches!(alg, Algorithm::ES256 | Algorithm::ES384)
            }
            AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
            AlgorithmParameters::OctetKey(_) => false,
        };
        let use_fits =
            !matches!(k.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature);
        let alg_fits = k
            .common
            .key_algorithm
            .is_none_or(|ka| key_algorithm_is(ka, alg));
        let kid_fits = match kid {
            Some(kid) => k.common.key_id.as_deref() == Some(kid),
            None => true,
        };
        family_fits && use_fits && alg_fits && kid_fits
    };
    let mut candidates = keys.iter().filter(fits);
    let key = candidates.next()?;
    if kid.is_none() && candidates.next().is_some() {
        return None; // no kid and several keys: ambiguous
    }
    DecodingKey::from_jwk(key).ok()
}

fn key_algorithm_is(ka: KeyAlgorithm, alg: Algorithm) -> bool {
    format!("{ka:?}") == format!("{alg:?}")
}

/// Reads a response body up to `limit` bytes (more is an error, found before it is kept).
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|l| l > limit as u64) {
        return Err(format!("the answer is larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `https://…`, or `http://` to this machine only (a provider on the loopback interface).
fn check_url(what: &str, text: &str) -> Result<(), OidcError> {
    let url = url::Url::parse(text)
        .map_err(|e| OidcError::Config(format!("the {what} {text:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(OidcError::Config(format!(
            "the {what} {text:?} must be https (http only on this machine's loopback)"
        ))),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// 32 random bytes, base64url.
fn random() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    b64(&bytes)
}

/// The PKCE S256 challenge of `verifier`.
fn challenge(verifier: &str) -> String {
    b64(&sha2::Sha256::digest(verifier.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// At most `n` characters of `s`, printable only.
fn cut(s: &str, n: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn groups_map_to_roles() {
        let m = ClaimMapping::default();
        let id = map_claims(
            &m,
            &claims(serde_json::json!({
                "sub": "s-1", "iss": "https://idp", "preferred_username": "alice",
                "groups": ["/radport:Lung:viewer", "radport:lung:contributor", "radport:brain:boss",
                           "radport:bad/name:viewer", "other", "radport-admin-not"]
            })),
        )
        .unwrap();
        assert_eq!(id.username, "alice");
        assert!(!id.admin);
        assert_eq!(
            id.memberships,
            vec![("lung".to_string(), Role::Contributor)]
        );
        let admin = map_claims(
            &m,
            &claims(serde_json::json!({"sub": "root-1", "groups": ["/radport-admin"]})),
        )
        .unwrap();
        assert!(admin.admin);
        assert_eq!(
            admin.username, "root-1",
            "sub when the user name claim is absent"
        );
        let nested = map_claims(
            &ClaimMapping {
                roles_claim: "realm_access.roles".into(),
                ..m.clone()
            },
            &claims(serde_json::json!({"sub": "x", "realm_access": {"roles": ["radport-admin"]}})),
        )
        .unwrap();
        assert!(nested.admin);
        assert!(matches!(
            map_claims(
                &m,
                &claims(serde_json::json!({"sub": "x", "preferred_username": "a@b"}))
            ),
            Err(OidcError::Username(_))
        ));
        assert!(map_claims(&m, &claims(serde_json::json!({"preferred_username": "a"}))).is_err());
    }

    #[test]
    fn pending_logins_survive_their_cookie_and_return_only_locally() {
        let p = PendingLogin {
            state: random(),
            nonce: random(),
            verifier: random(),
            return_to: "/#/gallery?project=lung".into(),
        };
        assert_eq!(PendingLogin::from_cookie(&p.to_cookie()), Some(p.clone()));
        assert_eq!(PendingLogin::from_cookie("a.b.c.d"), None);
        for bad in [
            "//evil.example/",
            "/\\evil",
            "https://evil.example",
            "",
            "x",
        ] {
            assert_eq!(local_path(bad), "/", "{bad}");
        }
        assert_eq!(local_path("/#/series/1.2"), "/#/series/1.2");
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn only_https_or_loopback_providers() {
        assert!(check_url("issuer", "https://idp.example/realms/x").is_ok());
        assert!(check_url("issuer", "http://127.0.0.1:9000").is_ok());
        assert!(check_url("issuer", "http://localhost:9000").is_ok());
        assert!(check_url("issuer", "http://idp.example").is_err());
        assert!(check_url("issuer", "ftp://idp.example").is_err());
    }
}
