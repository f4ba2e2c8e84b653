//! Accounts from the command line: `radport user create|list|passwd|disable|enable` work on
//! the catalog directly (with the settings of `radport serve`, like `radport collect`), as
//! Grafana's and Orthanc's do: the way in when nobody can sign in yet. And the first
//! administrator that `radport serve` gives a catalog without accounts.

use std::io::BufRead;

use anyhow::{Context, Result};
use clap::Subcommand;
use radport_access::{password, token, Authenticator, FIRST_ADMIN};
use radport_catalog::{Catalog, NewToken};

use crate::config::{ServeArgs, Settings};

/// `radport user …`.
#[derive(Subcommand, Debug)]
pub enum UserAction {
    /// Create an account; its password is read from standard input (one line), or drawn at
    /// random and printed, and must be changed at the first sign-in.
    Create {
        /// User name (1 to 64 of A-Z a-z 0-9 . _ -).
        name: String,
        /// A global administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input instead of drawing one.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Set a new password (read from standard input, or drawn and printed); the user must
    /// change it at the next sign-in unless it was read from standard input.
    Passwd {
        /// User name.
        name: String,
        /// Read the password from standard input instead of drawing one.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Disable an account: it cannot sign in, and its tokens stop working.
    Disable {
        /// User name.
        name: String,
        #[command(flatten)]
        settings: ServeArgs,
    },
    /// Enable a disabled account again.
    Enable {
        /// User name.
        name: String,
        #[command(flatten)]
        settings: ServeArgs,
    },
}

/// Runs a `radport user` command.
pub async fn user(action: UserAction) -> Result<()> {
    match action {
        UserAction::Create {
            name,
            admin,
            password_stdin,
            settings,
        } => {
            let catalog = open(settings).await?;
            let (secret, chosen) = new_password(password_stdin)?;
            let hash = password::hash(&secret)?;
            catalog
                .create_user(&name, Some(&hash), admin, !chosen)
                .await?;
            println!(
                "created {}{name}",
                if admin { "administrator " } else { "" }
            );
            if !chosen {
                println!("password (shown once; to be changed at the first sign-in): {secret}");
            }
        }
        UserAction::List { settings } => {
            let catalog = open(settings).await?;
            let members = catalog.list_members(None, None).await?;
            let mut rows = Vec::new();
            for u in catalog.list_users().await? {
                let projects: Vec<String> = members
                    .iter()
                    .filter(|m| m.user == u.name)
                    .map(|m| format!("{}:{}", m.project, m.role))
                    .collect();
                let state = if u.disabled {
                    "disabled"
                } else if u.must_change_password {
                    "must change password"
                } else {
                    "active"
                };
                rows.push(serde_json::json!({
                    "name": u.name,
                    "admin": if u.is_admin { "yes" } else { "" },
                    "state": state,
                    "projects": projects.join(" "),
                }));
            }
            crate::client::print_table(&rows, &["name", "admin", "state", "projects"]);
        }
        UserAction::Passwd {
            name,
            password_stdin,
            settings,
        } => {
            let catalog = open(settings).await?;
            let (secret, chosen) = new_password(password_stdin)?;
            catalog
                .set_password(&name, &password::hash(&secret)?, !chosen)
                .await?;
            println!("password of {name} changed");
            if !chosen {
                println!("new password (shown once; to be changed at the next sign-in): {secret}");
            }
        }
        UserAction::Disable { name, settings } => {
            open(settings).await?.set_user_disabled(&name, true).await?;
            println!("{name} is disabled");
        }
        UserAction::Enable { name, settings } => {
            open(settings)
                .await?
                .set_user_disabled(&name, false)
                .await?;
            println!("{name} is enabled");
        }
    }
    Ok(())
}

async fn open(args: ServeArgs) -> Result<Catalog> {
    let settings = args.resolve()?;
    Catalog::connect(&settings.catalog_url)
        .await
        .context("cannot open the catalog (give the --data-dir or --catalog-url of radport serve)")
}

/// A password from standard input (`true`: chosen by the caller) or drawn at random.
fn new_password(from_stdin: bool) -> Result<(String, bool)> {
    if !from_stdin {
        return Ok((password::random(), false));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let secret = line.trim_end_matches(['\r', '\n']).to_string();
    password::hash(&secret)?; // the length rules, with their message
    Ok((secret, true))
}

/// `radport serve`'s start: the first administrator of a catalog without accounts (its random
/// password printed once, on standard error, never logged), and the configured admin token.
pub async fn bootstrap(settings: &Settings, catalog: &Catalog) -> Result<()> {
    let auth = Authenticator::new(catalog.clone());
    let configured = settings.admin_password.as_ref().map(|s| s.0.as_str());
    if let Some(first) = auth.ensure_first_admin(configured).await? {
        tracing::info!(user = FIRST_ADMIN, "first administrator created");
        if let Some(secret) = first.password {
            eprintln!(
                "\n  radport: the first administrator is `{FIRST_ADMIN}`, password: {secret}\n  \
                 (shown this once; it must be changed at the first sign-in, or reset with \
                 `radport user passwd {FIRST_ADMIN}`)\n"
            );
        }
    }
    if let Some(secret) = &settings.admin_token {
        let hash = token::hash(&secret.0);
        if catalog.token_by_hash(&hash).await?.is_none() {
            let id = token::issue().id;
            catalog
                .create_token(&NewToken {
                    id,
                    user: FIRST_ADMIN.into(),
                    name: "admin_token setting".into(),
                    token_hash: hash,
                    role: None,
                    projects: None,
                    expires_at: None,
                })
                .await
                .context("recording the admin_token setting")?;
            tracing::info!(user = FIRST_ADMIN, "the configured admin token is recorded");
        }
    }
    Ok(())
}
