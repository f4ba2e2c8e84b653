//! Single sign-on against a real OpenID provider: the certified `oidc-provider` from npm
//! (`tests/oidc/provider.mjs`, installed by `scripts/install-deps.sh`), with radport as its
//! client. The web UI's sign-in is driven as a browser drives it (cookies, redirects, the
//! provider's login and consent forms); bearer JWTs are the provider's own access tokens, and
//! tokens that differ from a valid one in one respect (expired, another key, another audience,
//! no signature) signed by the provider's key or a throwaway one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::common::*;
use radport_testkit::{series_uid, write_series, SeriesSpec};

const ADMIN_TOKEN: &str = "rpt_oidc-test-admin-token-000000000000000000000";
const CLIENT_SECRET: &str = "radport-test-secret";

/// The test OpenID provider (a node process), stopped when dropped.
struct Provider {
    child: Child,
    port: u16,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl Provider {
    /// Starts the provider on `port`; its log if it did not start.
    fn try_start(port: u16, redirect_uri: &str) -> Result<Provider, String> {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OpenID provider is not installed: run scripts/install-deps.sh \
             (npm ci in {})",
            dir.display()
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = tmp.path().join("provider.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new("node")
            .arg("provider.mjs")
            .arg(port.to_string())
            .arg(redirect_uri)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("node runs (apt-get install nodejs)");
        let provider = Provider {
            child,
            port,
            log,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = provider.log();
            if log.contains("ready http") {
                return Ok(provider);
            }
            if Instant::now() >= deadline || log.contains("EADDRINUSE") {
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A JWT access token of a client_credentials client (audience `radport`).
    fn client_credentials(&self, client: &str) -> String {
        let r = Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "api"),
                ("resource", "urn:radport:api"),
            ])
            .send()
            .expect("the token endpoint answers");
        assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
        let body: Value = r.json().expect("JSON");
        let token = body["access_token"].as_str().expect("an access token");
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        token.to_string()
    }

    /// `claims` signed (RS256) by the provider's key or by a throwaway one (`key: "other"`).
    fn mint(&self, claims: Value, key: &str, kid: &str) -> String {
        let r = Client::new()
            .post(format!("{}/test/mint", self.issuer()))
            .json(&json!({"claims": claims, "key": key, "kid": kid}))
            .send()
            .expect("mint");
        assert_eq!(r.status(), 200);
        r.text().expect("a JWT")
    }
}

impl Provider {
    /// How often the keys (JWKS) were fetched.
    fn jwks_fetches(&self) -> u64 {
        Client::new()
            .get(format!("{}/test/jwks-fetches", self.issuer()))
            .send()
            .expect("count")
            .text()
            .expect("text")
            .parse()
            .expect("a number")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// radport with access enforced and single sign-on at a provider started after it (radport
/// discovers the provider when first needed), on `localhost` so that the redirect URI is known.
fn start() -> (Provider, Server) {
    // The provider's port is picked before radport starts (its issuer URL names it) and taken
    // after: another test may take it meanwhile — then again with another port.
    for attempt in 1.. {
        match try_start() {
            Ok(started) => return started,
            Err(log) if log.contains("EADDRINUSE") && attempt < 5 => continue,
            Err(log) => panic!("the OpenID provider did not start:\n{log}"),
        }
    }
    unreachable!("the loop returns or panics")
}

fn try_start() -> Result<(Provider, Server), String> {
    let provider_port = free_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let server = Server::start_with_env(
        &[
            "--access",
            "enforced",
            "--public-host",
            "localhost",
            "--oidc-issuer",
            &issuer,
            "--oidc-client-id",
            "radport",
            "--oidc-display-name",
            "Test IdP",
        ],
        &[
            ("RADPORT_ADMIN_TOKEN", ADMIN_TOKEN),
            ("RADPORT_OIDC_CLIENT_SECRET", CLIENT_SECRET),
        ],
    );
    let redirect = format!("http://localhost:{}/api/oidc/callback", server.http_port);
    let provider = Provider::try_start(provider_port, &redirect)?;
    Ok((provider, server))
}

/// A browser: its own cookie jar, redirects followed by the test.
struct Browser {
    client: Client,
    jar: Arc<reqwest::cookie::Jar>,
    base: String,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Browser {
            client: Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            jar,
            base: format!("http://localhost:{}", server.http_port),
        }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = reqwest::Url::parse(&self.base).ok()?;
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    fn get(&self, url: &str) -> Response {
        self.client.get(url).send().expect("GET")
    }

    fn session(&self) -> Value {
        let r = self.get(&format!("{}/api/session", self.base));
        assert_eq!(r.status(), 200);
        r.json().expect("JSON")
    }

    /// Starts a sign-in and goes through the provider's forms as `login`; returns the
    /// callback URL the provider sends the browser to (not yet visited).
    fn to_callback(&self, login: &str, return_to: &str) -> String {
        let start = self.get(&format!(
            "{}/api/oidc/login?return_to={}",
            self.base,
            url_encode(return_to)
        ));
        assert_eq!(start.status(), 302, "{:?}", start.text());
        let mut location = location(&start);
        for _ in 0..20 {
            if location.starts_with(&self.base) {
                return location;
            }
            let r = self.get(&location);
            let here = r.url().clone();
            if r.status().is_redirection() {
                location = here.join(&location_of(&r)).expect("URL").to_string();
                continue;
            }
            assert_eq!(r.status(), 200, "{location}");
            let page = r.text().expect("page");
            let action = between(&page, "action=\"", "\"").expect("a form");
            let prompt = between(&page, "name=\"prompt\" value=\"", "\"").expect("a prompt");
            let form: Vec<(&str, &str)> = match prompt {
                "login" => vec![("prompt", "login"), ("login", login), ("password", "any")],
                _ => vec![("prompt", prompt)],
            };
            let posted = self
                .client
                .post(here.join(action).expect("URL"))
                .form(&form)
                .send()
                .expect("POST");
            assert!(posted.status().is_redirection(), "{}", posted.status());
            location = here.join(&location_of(&posted)).expect("URL").to_string();
        }
        panic!("the sign-in did not come back to radport");
    }

    /// The whole sign-in; returns radport's answer to the callback.
    fn sign_in(&self, login: &str, return_to: &str) -> Response {
        let callback = self.to_callback(login, return_to);
        self.get(&callback)
    }
}

fn location(r: &Response) -> String {
    location_of(r)
}

fn location_of(r: &Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{} without a Location", r.status()))
        .to_string()
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

fn url_encode(s: &str) -> String {
    url_bytes(s, |b| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b))
}

fn url_bytes(s: &str, keep: impl Fn(u8) -> bool) -> String {
    s.bytes()
        .map(|b| {
            if keep(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

fn admin() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().expect("header"),
    );
    Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The audit trail's sign-ins, newest first.
fn sign_ins(server: &Server) -> Vec<Value> {
    let r = admin()
        .get(server.url("/api/audit?action=sign-in&limit=100"))
        .send()
        .expect("audit");
    assert_eq!(r.status(), 200);
    let page: Value = r.json().expect("JSON");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Project `lung` with one series in it.
fn lung_with_a_series(server: &Server) -> String {
    let made = admin()
        .post(server.url("/api/projects"))
        .json(&json!({"name": "lung"}))
        .send()
        .expect("POST");
    assert_eq!(made.status(), 201);
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = SeriesSpec {
        count: 1,
        rows: 16,
        columns: 16,
        uid_seed: "4711".into(),
        ..Default::default()
    };
    write_series(tmp.path(), &spec).expect("series");
    let sent = server.dcmsend("kp-ds", "kp-lung", tmp.path());
    assert!(sent.status.success(), "{}", output_text(&sent));
    series_uid(&spec)
}

#[test]
fn the_code_flow_signs_in_with_the_roles_of_the_groups() {
    let (provider, server) = start();
    let lung_uid = lung_with_a_series(&server);

    // Anonymous: the UI learns that single sign-on is offered, and its name.
    let anonymous = Browser::new(&server);
    let before = anonymous.session();
    assert_eq!(before["signed_in"], false);
    assert_eq!(
        before["single_sign_on"],
        json!({"display_name": "Test IdP", "login": "/api/oidc/login"})
    );

    // A viewer of lung: the sign-in ends where it started, with a session.
    let viewer = Browser::new(&server);
    let done = viewer.sign_in("lungviewer", "/#/gallery?project=lung");
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), "/#/gallery?project=lung");
    let cookies = set_cookies(&done);
    assert!(
        cookies.iter().any(|c| c.starts_with("radport_session=rpt_")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Strict")),
        "{cookies:?}"
    );
    assert!(cookies.iter().any(|c| c.starts_with("radport_oidc=;")));
    let me = viewer.session();
    assert_eq!(me["signed_in"], true, "{me}");
    assert_eq!(me["user"], "lungviewer");
    assert_eq!(me["admin"], false);
    assert_eq!(
        me["projects"],
        json!([{"project": "lung", "role": "viewer"}])
    );

    // It sees lung's series, and may not make projects.
    let series = viewer.get(&format!("{}/api/projects/lung/series", viewer.base));
    assert_eq!(series.status(), 200);
    let series: Value = series.json().expect("JSON");
    assert!(
        series["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|s| s["series_instance_uid"] == lung_uid.as_str()),
        "{series}"
    );
    let csrf = viewer.cookie("radport_csrf").expect("the CSRF cookie");
    let refused = viewer
        .client
        .post(format!("{}/api/projects", viewer.base))
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "mine"}))
        .send()
        .expect("POST");
    assert_eq!(refused.status(), 403);

    // The account exists, without a password: no local sign-in under its name.
    let by_password = Client::new()
        .post(server.url("/api/session"))
        .json(&json!({"name": "lungviewer", "password": "any password at all"}))
        .send()
        .expect("POST");
    assert_eq!(by_password.status(), 401);

    // The provider is the source of roles: a role given in radport lasts until the next
    // sign-in.
    let promoted = admin()
        .put(server.url("/api/projects/lung/members/lungviewer"))
        .json(&json!({"role": "manager"}))
        .send()
        .expect("PUT");
    assert_eq!(promoted.status(), 204);
    let again = Browser::new(&server);
    assert_eq!(again.sign_in("lungviewer", "/").status(), 303);
    assert_eq!(
        again.session()["projects"],
        json!([{"project": "lung", "role": "viewer"}])
    );

    // The administrators' group: a global administrator.
    let root = Browser::new(&server);
    assert_eq!(root.sign_in("oidcadmin", "/").status(), 303);
    let me = root.session();
    assert_eq!(
        (me["user"].clone(), me["admin"].clone()),
        (json!("oidcadmin"), json!(true))
    );
    let users = root.get(&format!("{}/api/users", root.base));
    assert_eq!(users.status(), 200);

    // No groups: signed in, no project.
    let nobody = Browser::new(&server);
    let done = nobody.sign_in("nogroups", "//evil.example/");
    assert_eq!(location(&done), "/", "only a local path is returned to");
    let me = nobody.session();
    assert_eq!(
        (me["signed_in"].clone(), me["projects"].clone()),
        (json!(true), json!([]))
    );
    assert_eq!(
        nobody
            .get(&format!("{}/api/projects/lung/series", nobody.base))
            .status(),
        403
    );

    // Each sign-in is in the audit trail, with its method.
    let rows = sign_ins(&server);
    for user in ["lungviewer", "oidcadmin", "nogroups"] {
        assert!(
            rows.iter().any(|r| r["actor"] == user
                && r["outcome"] == "success"
                && r["detail"] == "method oidc"),
            "{user}: {rows:#?}"
        );
    }
    drop(provider);
}

#[test]
fn a_sign_in_with_a_forged_state_or_without_its_cookie_is_refused() {
    let (provider, server) = start();
    let browser = Browser::new(&server);
    let callback = browser.to_callback("lungviewer", "/#/gallery");
    assert!(
        callback.contains("code=") && callback.contains("state="),
        "{callback}"
    );
    let pending = browser.cookie("radport_oidc");
    assert!(pending.is_none(), "path-scoped: not sent to /");

    // The right URL in a browser that did not start the sign-in (no cookie): refused.
    let stranger = Browser::new(&server);
    let refused = stranger.get(&callback);
    assert_eq!(refused.status(), 303);
    assert!(location(&refused).starts_with("/#/login?sso_error="));
    assert_eq!(stranger.session()["signed_in"], false);

    // Another sign-in whose state is changed: refused before its code is used.
    let other = Browser::new(&server);
    let other_callback = other.to_callback("lungviewer", "/#/gallery");
    let state = between(&format!("{other_callback}&"), "state=", "&")
        .expect("state")
        .to_string();
    let forged = other_callback.replace(
        &format!("state={state}"),
        "state=AAAAforgedAAAAforgedAAAAforgedAAAAforged",
    );
    let refused = other.get(&forged);
    assert_eq!(refused.status(), 303);
    let to = location(&refused);
    assert!(to.starts_with("/#/login?sso_error="), "{to}");
    assert!(to.contains("next=%23%2Fgallery"), "{to}");
    assert!(
        !set_cookies(&refused)
            .iter()
            .any(|c| c.starts_with("radport_session=rpt_")),
        "no session"
    );
    assert_eq!(other.session()["signed_in"], false);
    // The refusal ended that sign-in: its real answer is refused too.
    let refused = other.get(&other_callback);
    assert!(location(&refused).starts_with("/#/login?sso_error="));
    assert_eq!(other.session()["signed_in"], false);

    // The browser that started the first sign-in still completes it: the stranger's refusal
    // was for the missing cookie, and used nothing up.
    let done = browser.get(&callback);
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), "/#/gallery");
    assert_eq!(browser.session()["user"], "lungviewer");

    // A refusal at the provider (the user cancels): refused, and audited.
    let cancelled = Browser::new(&server);
    let start = cancelled.get(&format!("{}/api/oidc/login", cancelled.base));
    let mut at = location(&start);
    let mut interaction = None;
    for _ in 0..5 {
        let r = cancelled.get(&at);
        if r.status().is_redirection() {
            at = r.url().join(&location_of(&r)).expect("URL").to_string();
            if at.contains("/interaction/") {
                interaction = Some(at.clone());
                break;
            }
        }
    }
    let interaction = interaction.expect("the provider's sign-in page");
    let mut at = format!("{interaction}/abort");
    let mut answer = None;
    for _ in 0..5 {
        if at.starts_with(&cancelled.base) {
            answer = Some(cancelled.get(&at));
            break;
        }
        let r = cancelled.get(&at);
        at = r.url().join(&location_of(&r)).expect("URL").to_string();
    }
    let answer = answer.expect("back at radport");
    assert_eq!(answer.status(), 303);
    assert!(
        location(&answer).contains("access_denied"),
        "{}",
        location(&answer)
    );
    assert_eq!(cancelled.session()["signed_in"], false);
    let rows = sign_ins(&server);
    assert!(
        rows.iter().any(|r| r["outcome"] == "refused"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("access_denied"))),
        "{rows:#?}"
    );
    assert_eq!(
        rows.iter().filter(|r| r["outcome"] == "refused").count(),
        4,
        "{rows:#?}"
    );

    drop(provider);
}

#[test]
fn a_local_account_of_the_same_name_is_not_taken_over() {
    let (provider, server) = start();
    let made = admin()
        .post(server.url("/api/users"))
        .json(&json!({"name": "takeover", "password": "a local password"}))
        .send()
        .expect("POST");
    assert_eq!(made.status(), 201);
    let browser = Browser::new(&server);
    let refused = browser.sign_in("takeover", "/");
    assert_eq!(refused.status(), 303);
    let to = location(&refused);
    assert!(
        to.starts_with("/#/login?sso_error=") && to.contains("not%20taken%20over"),
        "{to}"
    );
    assert!(!set_cookies(&refused)
        .iter()
        .any(|c| c.starts_with("radport_session=rpt_")));
    assert_eq!(browser.session()["signed_in"], false);
    // The local account is as it was: not an administrator (the provider's group says so),
    // and its password still signs in.
    let users: Value = admin()
        .get(server.url("/api/users"))
        .send()
        .expect("GET")
        .json()
        .expect("JSON");
    let local = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|u| u["name"] == "takeover")
        .expect("the local account")
        .clone();
    assert_eq!(local["admin"], false, "{local}");
    let by_password = Client::new()
        .post(server.url("/api/session"))
        .json(&json!({"name": "takeover", "password": "a local password"}))
        .send()
        .expect("POST");
    assert_eq!(by_password.status(), 201);
    assert!(sign_ins(&server).iter().any(|r| r["actor"] == "takeover"
        && r["outcome"] == "refused"
        && r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not taken over"))));
    drop(provider);
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn bearer_jwts_of_the_provider_act_with_the_roles_of_their_groups() {
    let (provider, server) = start();
    let lung_uid = lung_with_a_series(&server);
    let call = |token: &str, path: &str| -> (u16, Value) {
        let r = Client::new()
            .get(server.url(path))
            .bearer_auth(token)
            .send()
            .expect("GET");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };

    // A real access token of the provider (client credentials, a JWT for audience radport).
    let robot = provider.client_credentials("lung-robot");
    let (status, me) = call(&robot, "/api/session");
    assert_eq!(status, 200);
    assert_eq!(me["user"], "lungrobot", "{me}");
    assert_eq!(me["admin"], false);
    assert_eq!(
        me["projects"],
        json!([{"project": "lung", "role": "viewer"}])
    );
    let (status, series) = call(&robot, "/api/projects/lung/series");
    assert_eq!(status, 200);
    assert_eq!(series["items"][0]["series_instance_uid"], lung_uid.as_str());
    let made = Client::new()
        .post(server.url("/api/projects"))
        .bearer_auth(&robot)
        .json(&json!({"name": "robots"}))
        .send()
        .expect("POST");
    assert_eq!(made.status(), 403);
    // The audit trail names the caller by its user name claim.
    let audit: Value = admin()
        .get(server.url("/api/audit?actor=lungrobot"))
        .send()
        .expect("audit")
        .json()
        .expect("JSON");
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|r| r["action"] == "POST /api/projects" && r["outcome"] == "refused"),
        "{audit:#}"
    );
    let root = provider.client_credentials("admin-robot");
    assert_eq!(call(&root, "/api/users").0, 200);
    assert_eq!(call(&robot, "/api/users").0, 403);

    // Tokens that differ from a valid one in one respect. The valid one first: the minting
    // itself is not what fails.
    let claims = |exp: u64, aud: &str, user: &str| {
        json!({
            "iss": provider.issuer(), "sub": format!("sub-{user}"), "aud": aud,
            "iat": now() - 60, "exp": exp,
            "preferred_username": user, "groups": ["radport:lung:viewer"]
        })
    };
    let valid = provider.mint(
        claims(now() + 600, "radport", "minted"),
        "provider",
        "provider-key",
    );
    let (status, me) = call(&valid, "/api/session");
    assert_eq!((status, me["user"].clone()), (200, json!("minted")));

    let refusals = [
        (
            "expired",
            provider.mint(
                claims(now() - 600, "radport", "minted"),
                "provider",
                "provider-key",
            ),
            "expired",
        ),
        (
            "another key, the provider's key id",
            provider.mint(
                claims(now() + 600, "radport", "minted"),
                "other",
                "provider-key",
            ),
            "signature",
        ),
        (
            "another key, its own key id",
            provider.mint(
                claims(now() + 600, "radport", "minted"),
                "other",
                "throwaway",
            ),
            "key",
        ),
        (
            "another audience",
            provider.mint(
                claims(now() + 600, "someone-else", "minted"),
                "provider",
                "provider-key",
            ),
            "audience",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims(now() + 600, "radport", "minted"))
            ),
            "not valid",
        ),
        (
            "HS256 (a key the client could know)",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS256", "typ": "JWT", "kid": "provider-key"})),
                b64(&claims(now() + 600, "radport", "minted")),
                "c2lnbmF0dXJl"
            ),
            "not valid",
        ),
        (
            "an ID token (it has a nonce)",
            provider.mint(
                {
                    let mut c = claims(now() + 600, "radport", "minted");
                    c["nonce"] = json!("a-sign-in-nonce");
                    c
                },
                "provider",
                "provider-key",
            ),
            "ID token",
        ),
        (
            "a name of a local account (the first administrator)",
            provider.mint(
                json!({
                    "iss": provider.issuer(), "sub": "sub-admin", "aud": "radport",
                    "exp": now() + 600, "preferred_username": "admin", "groups": []
                }),
                "provider",
                "provider-key",
            ),
            "not this single sign-on",
        ),
    ];
    for (what, token, says) in refusals {
        let (status, body) = call(&token, "/api/projects/lung/series");
        assert_eq!(status, 401, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{what}: {body}");
    }

    // The keys were fetched once: a token naming an unknown key fetches them again only if
    // the last fetch is older than 10 s (forged tokens cannot make radport hammer the provider).
    assert_eq!(provider.jwks_fetches(), 1);
    std::thread::sleep(Duration::from_secs(11));
    let unknown = provider.mint(claims(now() + 600, "radport", "minted"), "other", "rotated");
    for _ in 0..5 {
        assert_eq!(call(&unknown, "/api/session").0, 401);
    }
    assert_eq!(
        provider.jwks_fetches(),
        2,
        "one refetch for five unknown-key tokens"
    );
    assert_eq!(call(&valid, "/api/session").0, 200);

    // radport's own tokens still work beside the provider's.
    assert_eq!(call(ADMIN_TOKEN, "/api/users").0, 200);
    // Nothing was written for the JWTs: no account was made.
    let users: Value = admin()
        .get(server.url("/api/users"))
        .send()
        .expect("GET")
        .json()
        .expect("JSON");
    let names: Vec<&str> = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["admin"]);
    drop(provider);
}

/// The same sign-in in a real Chromium (`tests/browser/sso.mjs`): the sign-in page's button,
/// the provider's forms, a cancelled sign-in, and the session's cookies at work in the page
/// (set at the end of a redirect chain that started at the provider's site).
#[test]
fn single_sign_on_works_in_a_real_browser() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/install-deps.sh"
    );
    let (provider, server) = start();
    lung_with_a_series(&server);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    let out = Command::new("node")
        .arg(browser_dir.join("sso.mjs"))
        .arg(format!("http://localhost:{}", server.http_port))
        .arg(&shots)
        .current_dir(&browser_dir)
        .output()
        .expect("node runs");
    let text = output_text(&out);
    println!("{text}");
    assert!(
        out.status.success() && text.contains("sso: all checks passed"),
        "the single sign-on browser test failed:\n{text}\nserver log:\n{}\nprovider log:\n{}",
        server.log(),
        provider.log()
    );
}
