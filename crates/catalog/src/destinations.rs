//! C-MOVE destinations: per project, the AE titles a C-MOVE may name and where each listens
//! (host, port). A C-MOVE through a project's called AE title can only send to that project's
//! destinations; an AE title not listed is answered "move destination unknown" (0xA801).

use sqlx::Row;

use crate::{name_key, now, Catalog, CatalogError};

/// Longest AE title (PS3.5 6.2, VR AE).
pub const MAX_AE_TITLE_LENGTH: usize = 16;

/// Where C-MOVE sends instances for one AE title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveDestination {
    /// The AE title a C-MOVE names (stored without padding, as given).
    pub ae_title: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port (1..=65535).
    pub port: u16,
    /// Free text for people.
    pub description: String,
}

/// An AE title without padding, checked: 1..=16 characters, printable ASCII, no backslash.
pub fn clean_ae_title(ae_title: &str) -> Result<String, CatalogError> {
    let t = ae_title.trim_matches(|c: char| c == ' ' || c == '\0');
    if t.is_empty()
        || t.len() > MAX_AE_TITLE_LENGTH
        || !t.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        return Err(CatalogError::Invalid(format!(
            "AE title {ae_title:?} must be 1 to {MAX_AE_TITLE_LENGTH} printable ASCII \
             characters without a backslash"
        )));
    }
    Ok(t.to_string())
}

impl MoveDestination {
    /// Checks the destination: a valid AE title, a non-empty host without spaces or control
    /// characters (at most 253 bytes, a DNS name's limit), a port other than 0.
    pub fn checked(self) -> Result<MoveDestination, CatalogError> {
        let ae_title = clean_ae_title(&self.ae_title)?;
        let host = self.host.trim().to_string();
        if host.is_empty()
            || host.len() > 253
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(CatalogError::Invalid(format!(
                "host {:?} must be a host name or IP address",
                self.host
            )));
        }
        if self.port == 0 {
            return Err(CatalogError::Invalid("port must be 1 to 65535".into()));
        }
        if self.description.len() > 1024 {
            return Err(CatalogError::Invalid(
                "description is longer than 1024 bytes".into(),
            ));
        }
        Ok(MoveDestination {
            ae_title,
            host,
            port: self.port,
            description: self.description,
        })
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<MoveDestination, CatalogError> {
    let port: i64 = row.try_get("port")?;
    Ok(MoveDestination {
        ae_title: row.try_get("ae_title")?,
        host: row.try_get("host")?,
        port: u16::try_from(port)
            .map_err(|_| CatalogError::Invalid(format!("stored port {port} is out of range")))?,
        description: row.try_get("description")?,
    })
}

impl Catalog {
    /// The C-MOVE destinations of a project, by AE title. `NotFound` if the project is not.
    pub async fn move_destinations(
        &self,
        project: &str,
    ) -> Result<Vec<MoveDestination>, CatalogError> {
        let key = self.existing_project_key(project).await?;
        let rows = sqlx::query(
            "SELECT ae_title, host, port, description FROM move_destinations \
             WHERE project_key = $1 ORDER BY ae_title",
        )
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The destination a C-MOVE through `project` names by `ae_title` (padding ignored,
    /// case-sensitive as AE titles are), if the project has it.
    pub async fn move_destination(
        &self,
        project: &str,
        ae_title: &str,
    ) -> Result<Option<MoveDestination>, CatalogError> {
        let key = name_key("project", project)?;
        let Ok(ae_title) = clean_ae_title(ae_title) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT ae_title, host, port, description FROM move_destinations \
             WHERE project_key = $1 AND ae_title = $2",
        )
        .bind(key)
        .bind(ae_title)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Adds or replaces a project's destination (checked with [`MoveDestination::checked`]).
    /// Returns what was stored. `NotFound` if the project is not.
    pub async fn put_move_destination(
        &self,
        project: &str,
        destination: MoveDestination,
    ) -> Result<MoveDestination, CatalogError> {
        let destination = destination.checked()?;
        let key = self.existing_project_key(project).await?;
        sqlx::query(
            "INSERT INTO move_destinations (project_key, ae_title, host, port, description, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_key, ae_title) \
             DO UPDATE SET host = excluded.host, port = excluded.port, \
             description = excluded.description",
        )
        .bind(key)
        .bind(destination.ae_title.clone())
        .bind(destination.host.clone())
        .bind(i64::from(destination.port))
        .bind(destination.description.clone())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(destination)
    }

    /// Removes a project's destination. `NotFound` if the project or the destination is not.
    pub async fn delete_move_destination(
        &self,
        project: &str,
        ae_title: &str,
    ) -> Result<(), CatalogError> {
        let key = self.existing_project_key(project).await?;
        let ae = clean_ae_title(ae_title)?;
        let done =
            sqlx::query("DELETE FROM move_destinations WHERE project_key = $1 AND ae_title = $2")
                .bind(key)
                .bind(ae.clone())
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound(format!("destination {ae:?}")));
        }
        Ok(())
    }

    async fn existing_project_key(&self, project: &str) -> Result<String, CatalogError> {
        let key = name_key("project", project)?;
        match self.find_project(project).await? {
            Some(_) => Ok(key),
            None => Err(CatalogError::NotFound(format!("project {project:?}"))),
        }
    }
}
