//! The API's query strings and request bodies: this crate's own types, turned into the
//! catalog's filters. The OpenAPI document's parameters and request schemas are derived from
//! them.

use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use crate::responses::{JobKind, State};

/// `POST /api/projects`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProject {
    /// Name of the new project: letters, digits, `-`, `_` and `.`; at most 13 characters
    /// for DICOM senders to reach it (`kp-<name>` in an AE title).
    #[schema(example = "brain-mri")]
    pub name: String,
}

/// Order of a list of series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeriesOrder {
    /// Newest series first: by when their first instance arrived (the default).
    Arrival,
    /// Newest study date first.
    StudyDate,
}

impl SeriesOrder {
    fn as_str(self) -> &'static str {
        match self {
            SeriesOrder::Arrival => "arrival",
            SeriesOrder::StudyDate => "study_date",
        }
    }
}

/// Filter and page of `GET /api/projects/{project}/series` (and of the facets, which ignore
/// `sort`, `limit` and `offset`). Empty values count as absent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// Only series in this dataset (case-insensitive).
    dataset: Option<String>,
    /// Only series of this Modality (case-insensitive).
    modality: Option<String>,
    /// Only series whose study has exactly this Patient ID.
    patient_id: Option<String>,
    /// Only studies on or after this date (`YYYYMMDD` or `YYYY-MM-DD`).
    study_date_from: Option<String>,
    /// Only studies on or before this date (`YYYYMMDD` or `YYYY-MM-DD`).
    study_date_to: Option<String>,
    /// Case-insensitive text in Patient ID or Name, study or series description, or
    /// Accession Number.
    q: Option<String>,
    /// Only series with this Body Part Examined (case-insensitive).
    body_part: Option<String>,
    /// Order of the list.
    #[serde(default, deserialize_with = "empty_as_none")]
    sort: Option<SeriesOrder>,
    /// Only series validated (`true`) or not yet (`false`).
    validated: Option<bool>,
    /// Only validated series with (`true`) or without (`false`) errors.
    has_errors: Option<bool>,
    /// Only validated series with (`true`) or without (`false`) warnings.
    has_warnings: Option<bool>,
    /// Page size: 50 unless given, at most 1000; 0 answers the total only.
    limit: Option<i64>,
    /// Series to skip.
    offset: Option<i64>,
    /// The `next` cursor of the previous page: this page starts after its last series (a
    /// deep page costs what the first costs, unlike `offset`).
    after: Option<String>,
}

impl From<SeriesQuery> for radport_catalog::SeriesFilter {
    fn from(q: SeriesQuery) -> Self {
        radport_catalog::SeriesFilter {
            dataset: q.dataset,
            modality: q.modality,
            patient_id: q.patient_id,
            study_date_from: q.study_date_from,
            study_date_to: q.study_date_to,
            q: q.q,
            body_part: q.body_part,
            sort: q.sort.map(|s| s.as_str().to_string()),
            validated: q.validated,
            has_errors: q.has_errors,
            has_warnings: q.has_warnings,
            limit: q.limit,
            offset: q.offset,
            after: q.after,
        }
    }
}

/// Filter and page of `GET /api/jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    #[serde(default, deserialize_with = "empty_as_none")]
    state: Option<State>,
    /// Only jobs of this kind.
    #[serde(default, deserialize_with = "empty_as_none")]
    kind: Option<JobKind>,
    /// Only jobs about this series.
    series: Option<String>,
    /// Page size: 100 unless given, at most 1000.
    limit: Option<i64>,
    /// Jobs to skip.
    offset: Option<i64>,
}

impl From<JobQuery> for radport_catalog::JobFilter {
    fn from(q: JobQuery) -> Self {
        radport_catalog::JobFilter {
            state: q.state.map(Into::into),
            kind: q.kind.map(Into::into),
            series: q.series,
            limit: q.limit,
            offset: q.offset,
            projects: None,
        }
    }
}

/// Page of `GET /api/workflow-runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Runs to list, newest first: 100 unless given, 1 to 1000.
    pub limit: Option<i64>,
}

/// `POST /api/session`: sign in.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignIn {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// `POST /api/session/password`: change one's own password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    /// The current password.
    pub current: String,
    /// The new one (at least 10 characters).
    pub new: String,
}

/// `POST /api/tokens`: make a token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTokenRequest {
    /// What to call it.
    pub name: String,
    /// Highest role it acts with (never more than the user's); absent: the user's own.
    pub role: Option<crate::responses::RoleName>,
    /// Projects it may act in; absent: every project of the user.
    pub projects: Option<Vec<String>>,
    /// Days until it expires (1 to 3650); absent: it does not expire.
    pub expires_in_days: Option<u32>,
}

/// `POST /api/users`: create an account.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUserRequest {
    /// User name (1 to 64 of `A-Z a-z 0-9 . _ -`).
    pub name: String,
    /// A global administrator.
    #[serde(default)]
    pub admin: bool,
    /// Its password; absent: one is drawn, shown once, to be changed at the first sign-in.
    pub password: Option<String>,
}

/// `PATCH /api/users/{name}`: change an account.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserChange {
    /// Grant or withdraw global administration.
    pub admin: Option<bool>,
    /// Disable or enable it.
    pub disabled: Option<bool>,
    /// Draw a new password (shown once, to be changed at the next sign-in).
    #[serde(default)]
    pub reset_password: bool,
}

/// `PUT /api/projects/{project}/members/{user}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MemberRole {
    /// The role to give.
    pub role: crate::responses::RoleName,
}

/// `PUT /api/projects/{project}/dicom-destinations/{ae_title}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DicomDestinationBody {
    /// Host name or IP address the destination listens on.
    pub host: String,
    /// Its TCP port (1 to 65535).
    pub port: u16,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// Filter and page of `GET /api/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events of this actor (a user name, `anonymous`, `open access`).
    actor: Option<String>,
    /// Only events whose action contains this text (e.g. `series`, `sign-in`, `DELETE`).
    action: Option<String>,
    /// Only events about this target (e.g. a Series Instance UID).
    target: Option<String>,
    /// Only events with this outcome.
    #[serde(default, deserialize_with = "empty_as_none")]
    outcome: Option<crate::responses::AuditOutcome>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
    /// Page size: 100 unless given, at most 1000.
    limit: Option<i64>,
    /// Events to skip.
    offset: Option<i64>,
}

impl From<AuditQuery> for radport_catalog::AuditFilter {
    fn from(q: AuditQuery) -> Self {
        radport_catalog::AuditFilter {
            actor: q.actor,
            action: q.action,
            target: q.target,
            outcome: q.outcome.map(Into::into),
            since: q.since,
            limit: q.limit,
            offset: q.offset,
        }
    }
}

/// An optional value where an empty query value (`?sort=`) counts as absent.
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<String>::deserialize(deserializer)? {
        Some(s) if !s.is_empty() => T::deserialize(s.into_deserializer()).map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_query(qs: &str) -> Result<SeriesQuery, String> {
        let uri: axum::http::Uri = format!("/x?{qs}").parse().map_err(|e| format!("{e}"))?;
        axum::extract::Query::<SeriesQuery>::try_from_uri(&uri)
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }

    #[test]
    fn queries_become_catalog_filters() {
        let f: radport_catalog::SeriesFilter =
            series_query("sort=study_date&validated=false&limit=3")
                .unwrap()
                .into();
        assert_eq!(f.sort.as_deref(), Some("study_date"));
        assert_eq!((f.validated, f.limit), (Some(false), Some(3)));
        let f: radport_catalog::SeriesFilter = series_query("sort=&q=").unwrap().into();
        assert_eq!(f.sort, None);
        let e = series_query("sort=size").unwrap_err();
        assert!(e.contains("arrival") && e.contains("study_date"), "{e}");
        let uri: axum::http::Uri = "/x?state=failed&kind=thumbnail".parse().unwrap();
        let q = axum::extract::Query::<JobQuery>::try_from_uri(&uri)
            .unwrap()
            .0;
        let f: radport_catalog::JobFilter = q.into();
        assert_eq!(f.state, Some(radport_catalog::JobState::Failed));
        assert_eq!(f.kind, Some(radport_catalog::JobKind::Thumbnail));
        let uri: axum::http::Uri = "/x?kind=thumbnails".parse().unwrap();
        assert!(axum::extract::Query::<JobQuery>::try_from_uri(&uri).is_err());
    }
}

/// `POST /api/series/{series_uid}/copy` and `…/move`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceSeries {
    /// The project the series is in now.
    #[schema(example = "lung")]
    pub from: String,
    /// The project it goes to (not `admin`, which holds every series).
    #[schema(example = "lung-study-2")]
    pub to: String,
    /// The dataset in `to` (created if missing); absent: the datasets it has in `from`, or
    /// `placed` if it has none there.
    #[serde(default)]
    pub dataset: Option<String>,
}

/// Query of `DELETE /api/projects/{project}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteProjectQuery {
    /// Also erase the project's series that no other project holds (`admin` aside): their
    /// instances, thumbnails and reports leave the archive. Default: false (they stay in
    /// `admin`).
    #[serde(default)]
    pub erase_unshared_series: bool,
}
