//! Accounts: the first administrator of a fresh data directory, unattended setup, and
//! `radport user` on the catalog of a running server.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;

/// `radport ARGS` with `env` and `stdin` as standard input: whether it succeeded, and what it
/// printed.
fn radport(args: &[&str], env: &[(&str, &std::ffi::OsStr)], stdin: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_radport"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RADPORT_TOKEN")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radport runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("radport ends");
    (out.status.success(), output_text(&out))
}

/// `radport user …` on the server's data directory.
fn user(server: &Server, args: &[&str], stdin: &str) -> (bool, String) {
    let dir = server.data_dir.to_str().expect("UTF-8 path");
    let args: Vec<&str> = ["user"]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--data-dir", dir])
        .collect();
    radport(&args, &[], stdin)
}

/// The password in the first administrator's banner.
fn banner_password(log: &str) -> Option<String> {
    let rest = log
        .split("the first administrator is `admin`, password: ")
        .nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

#[test]
fn a_fresh_data_directory_gets_an_administrator_once() {
    let mut server = Server::start(&[]);
    let log = server.log();
    let password = banner_password(&log).unwrap_or_else(|| panic!("no banner:\n{log}"));
    assert_eq!(password.len(), 20, "{password}");
    // Shown once, never in a log line.
    assert_eq!(log.matches(password.as_str()).count(), 1, "{log}");
    assert!(log.contains("first administrator created"));
    let (ok, list) = user(&server, &["list"], "");
    assert!(ok, "{list}");
    assert!(
        list.lines().any(|l| l.starts_with("admin")
            && l.contains("yes")
            && l.contains("must change password")),
        "{list}"
    );
    // A restart does not make another one.
    server.restart();
    assert!(banner_password(&server.log()).is_some_and(|p| p == password));
    assert_eq!(
        server.log().matches("first administrator created").count(),
        1
    );

    // Accounts from the command line, beside the running server.
    let (ok, out) = user(
        &server,
        &["create", "alice", "--password-stdin"],
        "alice's password 1\n",
    );
    assert!(ok, "{out}");
    assert!(!out.contains("alice's password"), "{out}");
    let (ok, out) = user(&server, &["create", "ALICE"], "");
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = user(&server, &["create", "bob", "--admin"], "");
    assert!(ok && out.contains("shown once"), "{out}");
    let (ok, out) = user(&server, &["passwd", "alice", "--password-stdin"], "short\n");
    assert!(!ok && out.contains("at least 10 characters"), "{out}");
    let (ok, out) = user(&server, &["disable", "alice"], "");
    assert!(ok, "{out}");
    let (ok, out) = user(&server, &["disable", "carol"], "");
    assert!(!ok && out.contains("carol"), "{out}");
    let (_, list) = user(&server, &["list"], "");
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name}:\n{list}"))
            .to_string()
    };
    assert!(row("alice").contains("disabled"), "{list}");
    assert!(row("bob").contains("yes"), "{list}");
    let (ok, _) = user(&server, &["enable", "alice"], "");
    assert!(ok);
    let (_, list) = user(&server, &["list"], "");
    assert!(
        list.contains("alice") && !list.contains("disabled"),
        "{list}"
    );
}

#[test]
fn unattended_setup_takes_the_password_and_token_from_the_environment() {
    let token = "rpt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB";
    let mut server = Server::start_with_env(
        &[],
        &[
            ("RADPORT_ADMIN_PASSWORD", "the deployment's password"),
            ("RADPORT_ADMIN_TOKEN", token),
        ],
    );
    let log = server.log();
    assert!(banner_password(&log).is_none(), "{log}");
    assert!(!log.contains("the deployment's password"), "{log}");
    assert!(!log.contains(token), "{log}");
    assert_eq!(
        log.matches("the configured admin token is recorded")
            .count(),
        1
    );
    let (_, list) = user(&server, &["list"], "");
    // A configured password need not be changed.
    assert!(
        list.lines()
            .any(|l| l.starts_with("admin") && l.contains("active")),
        "{list}"
    );
    server.restart();
    assert_eq!(
        server
            .log()
            .matches("the configured admin token is recorded")
            .count(),
        1,
        "recorded once"
    );
}

#[test]
fn a_malformed_admin_token_stops_the_server_with_the_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_radport"))
        .args(["serve", "--data-dir", "/nonexistent/never-created"])
        .env("RADPORT_ADMIN_TOKEN", "secret123")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("radport runs");
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains("admin_token must be an API token"), "{text}");
    assert!(!text.contains("secret123"), "{text}");
}

/// A client command against the server, keeping its credentials in `dir`.
fn cli_with(server: &Server, dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let url = server.url("");
    let args: Vec<&str> = args.iter().copied().chain(["--url", &url]).collect();
    let credentials = dir.join("credentials.json");
    radport(
        &args,
        &[("RADPORT_CREDENTIALS", credentials.as_os_str())],
        stdin,
    )
}

#[test]
fn login_keeps_a_token_for_the_cli_and_logout_revokes_it() {
    let server = Server::start_with_env(
        &["--access", "enforced"],
        &[("RADPORT_ADMIN_PASSWORD", "the admin's password")],
    );
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = cli_with(&server, dir.path(), &["project", "list"], "");
    assert!(!ok && out.contains("401"), "{out}");
    let (ok, out) = cli_with(
        &server,
        dir.path(),
        &["login", "--user", "admin"],
        "wrong password\n",
    );
    assert!(!ok && out.contains("wrong user name or password"), "{out}");
    let (ok, out) = cli_with(
        &server,
        dir.path(),
        &["login", "--user", "admin"],
        "the admin's password\n",
    );
    assert!(ok, "{out}");
    let file = dir.path().join("credentials.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "only its owner may read it: {mode:o}");
    let (ok, out) = cli_with(&server, dir.path(), &["project", "create", "by-cli"], "");
    assert!(ok, "{out}");
    let (ok, out) = cli_with(&server, dir.path(), &["project", "list"], "");
    assert!(ok && out.contains("by-cli"), "{out}");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let token = stored[server.url("")]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out) = cli_with(&server, dir.path(), &["logout"], "");
    assert!(ok && out.contains("signed out"), "{out}");
    let (ok, out) = cli_with(&server, dir.path(), &["project", "list"], "");
    assert!(!ok && out.contains("401"), "{out}");
    // Revoked on the server, not only forgotten here.
    let answer = reqwest::blocking::Client::new()
        .get(server.url("/api/projects"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 401);
}

/// A newcomer's first start, as the README tells it: access is enforced by default, the banner
/// gives the password and where to sign in, and `radport login` takes the initial password and
/// a new one.
#[test]
fn the_default_is_enforced_and_the_cli_signs_in_with_the_printed_password() {
    // Not the harness's open default: the server's own.
    let server = Server::start_with_env(&[], &[("RADPORT_ACCESS", "")]);
    let log = server.log();
    let initial = banner_password(&log).unwrap_or_else(|| panic!("no banner:\n{log}"));
    assert!(log.contains("sign in at http://"), "{log}");
    assert_eq!(server.get_status("/api/projects").0, 401, "enforced");
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = cli_with(
        &server,
        dir.path(),
        &["login", "--user", "admin"],
        &format!("{initial}\n"),
    );
    assert!(!ok && out.contains("second line"), "{out}");
    let (ok, out) = cli_with(
        &server,
        dir.path(),
        &["login", "--user", "admin"],
        &format!("{initial}\nmy own admin password\n"),
    );
    assert!(ok && out.contains("password of admin is changed"), "{out}");
    let (ok, out) = cli_with(&server, dir.path(), &["project", "list"], "");
    assert!(ok && out.contains("admin"), "{out}");
    // The new password is the one now.
    let (status, _) = server.post_json(
        "/api/session",
        serde_json::json!({"name": "admin", "password": "my own admin password"}),
    );
    assert_eq!(status, 201);
}

/// HTTPS with `--tls-cert`/`--tls-key`: curl trusting the test CA gets answers, plain HTTP
/// gets none, and session cookies are `Secure`.
#[test]
fn https_serves_the_api_and_makes_cookies_secure() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", output_text(&made));
    let server = Server::start_with_env(
        &[
            "--access",
            "enforced",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[("RADPORT_ADMIN_PASSWORD", "the admin's password")],
    );
    let base = format!("https://127.0.0.1:{}", server.http_port);
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                cert.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .expect("curl runs");
        (out.status.success(), output_text(&out))
    };
    let (ok, out) = curl(&["-w", "%{http_code}", &format!("{base}/api/health")]);
    assert!(
        ok && out.contains("\"status\":\"ok\"") && out.contains("200"),
        "{out}"
    );
    let (ok, out) = curl(&[
        "-i",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name": "admin", "password": "the admin's password"}"#,
        &format!("{base}/api/session"),
    ]);
    assert!(ok, "{out}");
    let cookies: Vec<&str> = out
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .collect();
    assert_eq!(cookies.len(), 2, "{out}");
    assert!(
        cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
    // Not without TLS, and not with an untrusted certificate.
    let plain = reqwest::blocking::get(server.url("/api/health"));
    assert!(plain.map_or(true, |r| !r.status().is_success()));
    let untrusted = Command::new("curl")
        .args(["-sS", "--max-time", "10", &format!("{base}/api/health")])
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
}
