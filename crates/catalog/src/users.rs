//! Accounts, their roles in projects, and API tokens, as stored.
//!
//! The catalog keeps what the access rules are made of; what a role allows, how passwords are
//! hashed and how a request proves who sends it is `radport-access`'s business. Secrets are
//! never stored: a password as its argon2id hash (PHC string), a token as its hash. User names
//! follow project names (1 to 64 of `A-Z a-z 0-9 . _ -`) and are unique in any case.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{name_key, now, Catalog, CatalogError};

/// A user's role in a project. Each role allows what the one before it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Sees the project's series, thumbnails, reports and downloads.
    Viewer,
    /// Also uploads, imports into the project and sends to it.
    Contributor,
    /// Also manages the project's members and DICOM rules, deletes and moves its series.
    Manager,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Contributor, Role::Manager];

    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Contributor => "contributor",
            Role::Manager => "manager",
        }
    }

    /// Parses a stored or user-given role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which DICOM peers may store into a project. An empty list allows anyone for its part, so a
/// project without rules takes instances from any sender (the seed's behaviour).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DicomRules {
    /// Calling AE titles allowed (compared after trimming spaces).
    pub calling_ae_titles: Vec<String>,
    /// Networks allowed, in CIDR form (`10.1.0.0/16`, `2001:db8::/32`, or one address).
    pub networks: Vec<String>,
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Name as created (canonical spelling).
    pub name: String,
    /// argon2id hash of the password (PHC string); `None`: no password (single sign-on only).
    pub password_hash: Option<String>,
    /// Global administrator: every project, `admin` included, and the accounts.
    pub is_admin: bool,
    /// Refused at sign-in and for every token it made.
    pub disabled: bool,
    /// The password was set by someone else (the initial one, a reset): the user must
    /// choose a new one before anything else.
    pub must_change_password: bool,
    /// Created at, RFC 3339 UTC.
    pub created_at: String,
    /// Last change, RFC 3339 UTC.
    pub updated_at: String,
    /// Made by single sign-on: its OpenID provider (issuer URL) and subject there; `None`: a
    /// local account.
    pub oidc: Option<OidcAccount>,
}

/// Where an account made by single sign-on comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcAccount {
    /// The provider's issuer URL.
    pub issuer: String,
    /// The user's subject (`sub`) at the provider.
    pub subject: String,
}

/// A membership: a user's role in a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Canonical project name.
    pub project: String,
    /// Canonical user name.
    pub user: String,
    /// The role.
    pub role: Role,
}

/// A token to record: the hash of its secret and what it may do.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// Identifier (shown, never secret).
    pub id: String,
    /// The user it acts for.
    pub user: String,
    /// What the user calls it.
    pub name: String,
    /// Hash of the token's secret.
    pub token_hash: String,
    /// Highest role it acts with in any project; `None`: the user's own.
    pub role: Option<Role>,
    /// Projects it may act in (canonical names); `None`: every project of the user.
    pub projects: Option<Vec<String>>,
    /// Not accepted after this time (RFC 3339 UTC); `None`: no expiry.
    pub expires_at: Option<String>,
}

/// A token as stored (without its secret, which is never stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Identifier.
    pub id: String,
    /// The user it acts for (canonical name).
    pub user: String,
    /// What the user calls it.
    pub name: String,
    /// Highest role it acts with; `None`: the user's own.
    pub role: Option<Role>,
    /// Projects it may act in; `None`: every project of the user.
    pub projects: Option<Vec<String>>,
    /// Not accepted after this time.
    pub expires_at: Option<String>,
    /// Created at.
    pub created_at: String,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Last time it was accepted.
    pub last_used_at: Option<String>,
}

/// A value bound by `update_user`.
enum UserValue<'a> {
    Text(&'a str),
    Flag(bool),
}

const USER_COLUMNS: &str = "name, password_hash, is_admin, disabled, must_change_password, \
     created_at, updated_at, oidc_issuer, oidc_subject";

const TOKEN_COLUMNS: &str =
    "t.id, u.name AS user_name, t.name, t.role, t.projects, t.expires_at, t.created_at, \
     t.revoked_at, t.last_used_at";

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        oidc: match (
            row.try_get::<Option<String>, _>("oidc_issuer")?,
            row.try_get::<Option<String>, _>("oidc_subject")?,
        ) {
            (Some(issuer), Some(subject)) => Some(OidcAccount { issuer, subject }),
            _ => None,
        },
    })
}

fn stored_role(text: &str) -> Result<Role, CatalogError> {
    Role::parse(text).ok_or_else(|| CatalogError::Invalid(format!("unknown role {text:?}")))
}

fn token_from_row(row: &AnyRow) -> Result<Token, CatalogError> {
    let role: Option<String> = row.try_get("role")?;
    let projects: Option<String> = row.try_get("projects")?;
    Ok(Token {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        name: row.try_get("name")?,
        role: role.as_deref().map(stored_role).transpose()?,
        projects: projects.map(|p| p.lines().map(str::to_string).collect()),
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Catalog {
    /// Creates an account. `Conflict` if the name is taken (in any case).
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        is_admin: bool,
        must_change_password: bool,
    ) -> Result<User, CatalogError> {
        let key = name_key("user", name)?;
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (user_key, name, password_hash, is_admin, disabled, \
               must_change_password, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $6) ON CONFLICT (user_key) DO NOTHING",
        )
        .bind(&key)
        .bind(name)
        .bind(password_hash)
        .bind(i64::from(is_admin))
        .bind(i64::from(must_change_password))
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if inserted == 0 {
            return Err(CatalogError::Conflict(format!(
                "user {name:?} already exists"
            )));
        }
        tracing::info!(user = name, admin = is_admin, "user created");
        Ok(User {
            name: name.to_string(),
            password_hash: password_hash.map(str::to_string),
            is_admin,
            disabled: false,
            must_change_password,
            created_at: now.clone(),
            updated_at: now,
            oidc: None,
        })
    }

    /// The account of a single sign-on, as the provider describes it at this sign-in: created
    /// (without a password) if there is none of that name, and given `is_admin` and exactly
    /// `memberships` (projects that do not exist are left out), in one transaction. `Conflict`
    /// if the name belongs to a local account or to another provider's or subject's account:
    /// an account is never taken over by a sign-on.
    pub async fn sign_in_oidc_user(
        &self,
        name: &str,
        account: &OidcAccount,
        is_admin: bool,
        memberships: &[(String, Role)],
    ) -> Result<User, CatalogError> {
        let key = name_key("user", name)?;
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE user_key = $1"
        )))
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()?;
        match &existing {
            Some(user) if user.oidc.as_ref() != Some(account) => {
                return Err(CatalogError::Conflict(format!(
                    "the name {name:?} belongs to an account that was not made by this single \
                     sign-on; it is not taken over (an administrator can rename or remove one \
                     of them)"
                )));
            }
            Some(_) => {
                sqlx::query("UPDATE users SET is_admin = $1, updated_at = $2 WHERE user_key = $3")
                    .bind(i64::from(is_admin))
                    .bind(&now)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                let other = sqlx::query_scalar::<_, String>(
                    "SELECT name FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2",
                )
                .bind(&account.issuer)
                .bind(&account.subject)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(other) = other {
                    return Err(CatalogError::Conflict(format!(
                        "this single sign-on user already has the account {other:?}, under \
                         another name"
                    )));
                }
                sqlx::query(
                    "INSERT INTO users (user_key, name, password_hash, is_admin, disabled, \
                       must_change_password, created_at, updated_at, oidc_issuer, oidc_subject) \
                     VALUES ($1, $2, NULL, $3, 0, 0, $4, $4, $5, $6)",
                )
                .bind(&key)
                .bind(name)
                .bind(i64::from(is_admin))
                .bind(&now)
                .bind(&account.issuer)
                .bind(&account.subject)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("DELETE FROM project_members WHERE user_key = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        for (project, role) in memberships {
            let Ok(project_key) = name_key("project", project) else {
                continue;
            };
            // Only projects that exist: a group for a project not made yet grants nothing.
            sqlx::query(
                "INSERT INTO project_members (project_key, user_key, role) \
                 SELECT name_key, $2, $3 FROM projects WHERE name_key = $1 \
                 ON CONFLICT (project_key, user_key) DO UPDATE SET role = excluded.role",
            )
            .bind(project_key)
            .bind(&key)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let user = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE user_key = $1"
        )))
        .bind(&key)
        .fetch_one(&mut *tx)
        .await
        .map_err(CatalogError::from)
        .and_then(|row| Ok(user_from_row(&row)?))?;
        tx.commit().await?;
        if existing.is_none() {
            tracing::info!(user = name, "single sign-on account created");
        }
        Ok(user)
    }

    /// The account of that name (any case).
    pub async fn get_user(&self, name: &str) -> Result<Option<User>, CatalogError> {
        let Ok(key) = name_key("user", name) else {
            return Ok(None);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE user_key = $1"
        )))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Every account, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY user_key"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    /// Number of accounts (none: a fresh catalog, which gets its first administrator).
    pub async fn count_users(&self) -> Result<i64, CatalogError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Replaces a user's password hash, and whether they must change it at their next sign-in.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        must_change_password: bool,
    ) -> Result<(), CatalogError> {
        self.update_user(
            name,
            "password_hash = $1, must_change_password = $2",
            &[
                UserValue::Text(password_hash),
                UserValue::Flag(must_change_password),
            ],
        )
        .await
    }

    /// Disables or enables an account.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<(), CatalogError> {
        self.update_user(name, "disabled = $1", &[UserValue::Flag(disabled)])
            .await
    }

    /// Grants or withdraws global administration.
    pub async fn set_user_admin(&self, name: &str, is_admin: bool) -> Result<(), CatalogError> {
        self.update_user(name, "is_admin = $1", &[UserValue::Flag(is_admin)])
            .await
    }

    /// `UPDATE users SET <set>, updated_at = … WHERE user_key = …`, `set` using `$1..` for
    /// `values`.
    async fn update_user(
        &self,
        name: &str,
        set: &str,
        values: &[UserValue<'_>],
    ) -> Result<(), CatalogError> {
        let key = name_key("user", name)?;
        let sql = format!(
            "UPDATE users SET {set}, updated_at = ${} WHERE user_key = ${}",
            values.len() + 1,
            values.len() + 2
        );
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for v in values {
            query = match v {
                UserValue::Text(t) => query.bind(t.to_string()),
                UserValue::Flag(f) => query.bind(i64::from(*f)),
            };
        }
        let done = query.bind(now()).bind(key).execute(&mut *tx).await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound(format!("user {name:?}")));
        }
        Ok(())
    }

    /// Gives `user` the role `role` in `project` (replacing the one they had).
    pub async fn set_member(
        &self,
        project: &str,
        user: &str,
        role: Role,
    ) -> Result<(), CatalogError> {
        let project_key = name_key("project", project)?;
        let user_key = name_key("user", user)?;
        if self.find_project(project).await?.is_none() {
            return Err(CatalogError::NotFound(format!("project {project:?}")));
        }
        if self.get_user(user).await?.is_none() {
            return Err(CatalogError::NotFound(format!("user {user:?}")));
        }
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "INSERT INTO project_members (project_key, user_key, role) VALUES ($1, $2, $3) \
             ON CONFLICT (project_key, user_key) DO UPDATE SET role = excluded.role",
        )
        .bind(project_key)
        .bind(user_key)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `user` from `project`; `false` if they were not a member.
    pub async fn remove_member(&self, project: &str, user: &str) -> Result<bool, CatalogError> {
        let project_key = name_key("project", project)?;
        let user_key = name_key("user", user)?;
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let done =
            sqlx::query("DELETE FROM project_members WHERE project_key = $1 AND user_key = $2")
                .bind(project_key)
                .bind(user_key)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The memberships of a project (`Some(project)`) or of a user (`None`, `Some(user)`), or
    /// all, sorted by project then user.
    pub async fn list_members(
        &self,
        project: Option<&str>,
        user: Option<&str>,
    ) -> Result<Vec<Membership>, CatalogError> {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        if let Some(p) = project {
            args.push(name_key("project", p)?);
            conditions.push(format!("m.project_key = ${}", args.len()));
        }
        if let Some(u) = user {
            args.push(name_key("user", u)?);
            conditions.push(format!("m.user_key = ${}", args.len()));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT p.name AS project, u.name AS user_name, m.role FROM project_members m \
             JOIN projects p ON p.name_key = m.project_key \
             JOIN users u ON u.user_key = m.user_key{filter} \
             ORDER BY m.project_key, m.user_key"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            query = query.bind(a);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(Membership {
                    project: row.try_get("project")?,
                    user: row.try_get("user_name")?,
                    role: stored_role(&role)?,
                })
            })
            .collect()
    }

    /// The canonical names of the projects a series is mapped to, sorted (empty: no such
    /// series).
    pub async fn projects_of_series(&self, series_uid: &str) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query(
            "SELECT p.name FROM series_projects sp JOIN projects p ON p.name_key = sp.project_key \
             WHERE sp.series_uid = $1 ORDER BY p.name_key",
        )
        .bind(series_uid)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<Result<_, _>>()?)
    }

    /// The DICOM rules of a project.
    pub async fn dicom_rules(&self, project: &str) -> Result<DicomRules, CatalogError> {
        let key = name_key("project", project)?;
        let rows = sqlx::query(
            "SELECT kind, value FROM dicom_rules WHERE project_key = $1 ORDER BY kind, value",
        )
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        let mut rules = DicomRules::default();
        for row in rows {
            let kind: String = row.try_get("kind")?;
            let value: String = row.try_get("value")?;
            match kind.as_str() {
                "calling_ae" => rules.calling_ae_titles.push(value),
                "network" => rules.networks.push(value),
                other => {
                    return Err(CatalogError::Invalid(format!(
                        "unknown DICOM rule kind {other:?}"
                    )))
                }
            }
        }
        Ok(rules)
    }

    /// Replaces the DICOM rules of a project (checked by the caller: the catalog stores them).
    pub async fn set_dicom_rules(
        &self,
        project: &str,
        rules: &DicomRules,
    ) -> Result<(), CatalogError> {
        let key = name_key("project", project)?;
        if self.find_project(project).await?.is_none() {
            return Err(CatalogError::NotFound(format!("project {project:?}")));
        }
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query("DELETE FROM dicom_rules WHERE project_key = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        let entries = rules
            .calling_ae_titles
            .iter()
            .map(|v| ("calling_ae", v))
            .chain(rules.networks.iter().map(|v| ("network", v)));
        for (kind, value) in entries {
            sqlx::query(
                "INSERT INTO dicom_rules (project_key, kind, value) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&key)
            .bind(kind)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a token (its hash; the secret is shown to its user once and never stored).
    pub async fn create_token(&self, token: &NewToken) -> Result<Token, CatalogError> {
        let user_key = name_key("user", &token.user)?;
        if self.get_user(&token.user).await?.is_none() {
            return Err(CatalogError::NotFound(format!("user {:?}", token.user)));
        }
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, user_key, name, token_hash, role, projects, expires_at, \
               created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token.id)
        .bind(user_key)
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(token.role.map(Role::as_str))
        .bind(token.projects.as_ref().map(|p| p.join("\n")))
        .bind(token.expires_at.as_deref())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_token(&token.id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("token {}", token.id)))
    }

    /// A token by id.
    pub async fn get_token(&self, id: &str) -> Result<Option<Token>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.user_key = t.user_key \
             WHERE t.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The token whose secret has this hash, revoked or not (the caller judges).
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<Token>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN users u ON u.user_key = t.user_key \
             WHERE t.token_hash = $1"
        )))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The tokens of a user (`Some`) or of everyone, newest first.
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<Token>, CatalogError> {
        let rows = match user {
            Some(u) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens t \
                     JOIN users u ON u.user_key = t.user_key WHERE t.user_key = $1 \
                     ORDER BY t.created_at DESC, t.id"
                )))
                .bind(name_key("user", u)?)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens t \
                     JOIN users u ON u.user_key = t.user_key ORDER BY t.created_at DESC, t.id"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token; `false` if there is no such token or it was revoked already.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes that a token was just accepted.
    pub async fn touch_token(&self, id: &str) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
