//! The audit trail: one row per sign-in, access to patient data, change and refusal — who,
//! when, from where, what, on what, with which outcome. Rows are only ever added; nothing in
//! radport changes or deletes them.

use std::sync::{Arc, OnceLock};

use sqlx::Row;

use crate::{now, Catalog, CatalogError};

/// How an audited request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused: no credentials, or roles that do not allow it.
    Refused,
    /// Allowed, but it failed (bad input, not found, a server error).
    Failure,
}

impl Outcome {
    /// The outcome's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Failure => "failure",
        }
    }

    /// Parses a stored or user-given outcome name.
    pub fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::Refused, Outcome::Failure]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// An event to record.
#[derive(Clone, Debug)]
pub struct NewAuditEvent {
    /// Who: a user name, `anonymous`, or `dicom:<calling AE title>`.
    pub actor: String,
    /// From where: the client's IP address.
    pub address: String,
    /// What, e.g. `sign-in`, `read series`, `POST /api/projects`.
    pub action: String,
    /// On what, e.g. a Series Instance UID or a project (never a patient's name).
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// More, e.g. the HTTP status.
    pub detail: String,
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Identifier.
    pub id: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who.
    pub actor: String,
    /// From where.
    pub address: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// More.
    pub detail: String,
}

/// Told of every event this process records, after it is committed (e.g. to export it as a
/// DICOM audit message). Called on the recording task: it must not block.
pub trait AuditSink: Send + Sync {
    /// An event was recorded.
    fn recorded(&self, event: &AuditEvent);
}

/// The catalog's sink, if one is set ([`Catalog::set_audit_sink`]).
#[derive(Clone, Default)]
pub(crate) struct SinkSlot(Arc<OnceLock<Arc<dyn AuditSink>>>);

impl std::fmt::Debug for SinkSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "SinkSlot(set)"
        } else {
            "SinkSlot(none)"
        })
    }
}

/// Filter and page of [`Catalog::list_audit`].
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only events of this actor.
    pub actor: Option<String>,
    /// Only events whose action contains this text.
    pub action: Option<String>,
    /// Only events about this target.
    pub target: Option<String>,
    /// Only events with this outcome.
    pub outcome: Option<Outcome>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<i64>,
    /// Events to skip.
    pub offset: Option<i64>,
}

/// A page of events, newest first.
#[derive(Clone, Debug)]
pub struct AuditPage {
    /// Events matching the filter, on all pages.
    pub total: i64,
    /// This page.
    pub items: Vec<AuditEvent>,
}

/// An id that sorts as the events were recorded (nanoseconds since 1970, then a per-process
/// counter, then random bits for other nodes): the list's order among events of one instant.
fn event_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().as_u128() as u32;
    format!("{nanos:016x}{count:08x}{random:08x}")
}

impl Catalog {
    /// Sets the sink told of every event this process records from now on (once; a second
    /// sink is refused with `false`). Clones of this catalog share it.
    pub fn set_audit_sink(&self, sink: Arc<dyn AuditSink>) -> bool {
        self.audit_sink.0.set(sink).is_ok()
    }

    /// Appends an event to the audit trail.
    pub async fn record_audit(&self, event: &NewAuditEvent) -> Result<(), CatalogError> {
        let (id, at) = (event_id(), now());
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "INSERT INTO audit_events (id, at, actor, address, action, target, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&at)
        .bind(&event.actor)
        .bind(&event.address)
        .bind(&event.action)
        .bind(&event.target)
        .bind(event.outcome.as_str())
        .bind(&event.detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        drop(writer);
        if let Some(sink) = self.audit_sink.0.get() {
            sink.recorded(&AuditEvent {
                id,
                at,
                actor: event.actor.clone(),
                address: event.address.clone(),
                action: event.action.clone(),
                target: event.target.clone(),
                outcome: event.outcome,
                detail: event.detail.clone(),
            });
        }
        Ok(())
    }

    /// Events matching `filter`, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<AuditPage, CatalogError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut push = |condition: &str, value: String| {
            args.push(value);
            conditions.push(condition.replace('?', &format!("${}", args.len())));
        };
        if let Some(a) = filter.actor.as_deref().filter(|s| !s.is_empty()) {
            push("actor = ?", a.to_string());
        }
        if let Some(a) = filter.action.as_deref().filter(|s| !s.is_empty()) {
            push("action LIKE ?", format!("%{}%", a.replace(['%', '_'], "")));
        }
        if let Some(t) = filter.target.as_deref().filter(|s| !s.is_empty()) {
            push("target = ?", t.to_string());
        }
        if let Some(o) = filter.outcome {
            push("outcome = ?", o.as_str().to_string());
        }
        if let Some(s) = filter.since.as_deref().filter(|s| !s.is_empty()) {
            push("at >= ?", s.to_string());
        }
        let limit = filter.limit.unwrap_or(100);
        let offset = filter.offset.unwrap_or(0);
        if !(0..=1000).contains(&limit) || offset < 0 {
            return Err(CatalogError::Invalid(
                "limit is 0 to 1000 and offset not negative".into(),
            ));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM audit_events{filter_sql}"
        )));
        for a in &args {
            count = count.bind(a.clone());
        }
        let total = count.fetch_one(&self.pool).await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, at, actor, address, action, target, outcome, detail FROM audit_events\
             {filter_sql} ORDER BY at DESC, id DESC LIMIT {limit} OFFSET {offset}"
        )));
        for a in &args {
            query = query.bind(a.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|r| {
                let outcome: String = r.try_get("outcome")?;
                Ok(AuditEvent {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    address: r.try_get("address")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: Outcome::parse(&outcome).ok_or_else(|| {
                        CatalogError::Invalid(format!("unknown audit outcome {outcome:?}"))
                    })?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, CatalogError>>()?;
        Ok(AuditPage { total, items })
    }
}
