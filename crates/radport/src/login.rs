//! `radport login` / `radport logout`, and the token every client command sends: `--token` or
//! `RADPORT_TOKEN`, else the one `radport login` stored for the server's URL in the
//! credentials file (`$RADPORT_CREDENTIALS`, default `~/.config/radport/credentials.json`,
//! readable by its owner only).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{Api, ClientArgs};

/// A stored token.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Stored {
    /// The secret.
    token: String,
    /// Its id (to revoke it at logout).
    id: String,
    /// The account.
    user: String,
}

fn credentials_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RADPORT_CREDENTIALS") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")
        .context("no HOME to keep credentials in (set RADPORT_CREDENTIALS)")?;
    Ok(PathBuf::from(home).join(".config/radport/credentials.json"))
}

fn read_all() -> Result<BTreeMap<String, Stored>> {
    let path = credentials_path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a credentials file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_all(all: &BTreeMap<String, Stored>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = credentials_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(all)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The token a client command sends to `url`: the given one, else the stored one.
pub(crate) fn token_for(url: &str, given: Option<&str>) -> Option<String> {
    if let Some(t) = given.filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    read_all().ok()?.get(url).map(|s| s.token.clone())
}

/// `radport login`: signs in with `user` and the password on the first line of standard
/// input, makes a token for this machine (90 days) and stores it for the server's URL. An
/// account whose password must be changed first (a new one, or reset by an administrator)
/// takes the new password from the second line.
pub async fn login(args: &ClientArgs, user: &str) -> Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut password = String::new();
    stdin
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let api = Api::anonymous(args);
    let signed_in = api
        .http
        .post(format!("{}/api/session", api.base))
        .json(&json!({"name": user, "password": password}))
        .send()
        .await
        .with_context(|| format!("cannot reach radport at {}", api.base))?;
    let signed_in = api.check(signed_in).await?;
    let cookies: Vec<String> = signed_in
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect();
    let session: Value = signed_in.json().await?;
    let csrf = cookies
        .iter()
        .find_map(|c| c.strip_prefix("radport_csrf="))
        .unwrap_or_default()
        .to_string();
    let cookie = cookies.join("; ");
    if session["must_change_password"] == true {
        let mut new_password = String::new();
        stdin
            .read_line(&mut new_password)
            .context("reading the new password from standard input")?;
        let new_password = new_password.trim_end_matches(['\r', '\n']);
        if new_password.is_empty() {
            bail!(
                "{user} must choose a new password first: give it on a second line of standard \
                 input (printf '%s\\n%s\\n' \"$CURRENT\" \"$NEW\" | radport login --user {user})"
            );
        }
        let changed = api
            .http
            .post(format!("{}/api/session/password", api.base))
            .header(reqwest::header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .json(&json!({"current": password, "new": new_password}))
            .send()
            .await?;
        api.check(changed).await?;
        eprintln!("the password of {user} is changed");
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let made = api
        .http
        .post(format!("{}/api/tokens", api.base))
        .header(reqwest::header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "name": format!("radport login on {}", host.trim()),
            "expires_in_days": 90,
        }))
        .send()
        .await?;
    let made: Value = api.check(made).await?.json().await?;
    // The session was only the way to the token.
    let _ = api
        .http
        .delete(format!("{}/api/session", api.base))
        .header(reqwest::header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await;
    let mut all = read_all()?;
    all.insert(
        api.base.clone(),
        Stored {
            token: made["token"]
                .as_str()
                .context("no token in the answer")?
                .to_string(),
            id: made["info"]["id"].as_str().unwrap_or_default().to_string(),
            user: user.to_string(),
        },
    );
    write_all(&all)?;
    println!(
        "signed in to {} as {user}; the token is kept in {} (90 days)",
        api.base,
        credentials_path()?.display()
    );
    Ok(())
}

/// `radport logout`: revokes the stored token of the server's URL and forgets it.
pub async fn logout(args: &ClientArgs) -> Result<()> {
    let mut all = read_all()?;
    let base = args.url.trim_end_matches('/').to_string();
    let Some(stored) = all.remove(&base) else {
        println!("not signed in to {base}");
        return Ok(());
    };
    let api = Api::new(args);
    let revoked = api
        .http
        .delete(format!("{}/api/tokens/{}", api.base, stored.id))
        .send()
        .await;
    write_all(&all)?;
    match revoked {
        Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {
            println!("signed out of {base} ({})", stored.user);
        }
        Ok(r) => println!(
            "forgot the token of {base}; revoking it answered {}",
            r.status()
        ),
        Err(e) => println!("forgot the token of {base}; revoking it failed: {e}"),
    }
    Ok(())
}
