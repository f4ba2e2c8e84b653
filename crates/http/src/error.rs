//! Errors of the API: every failure is answered as JSON `{"error": "..."}` (the
//! [`ErrorBody`](crate::responses::ErrorBody) of the OpenAPI document) with a status code that
//! says what kind of problem it is. Errors of the catalog, the archive and the workflows keep
//! their kind: not found is 404, a conflict 409, bad input 400, a busy catalog 503; failures of
//! the server's own storage are logged under an id and answered with that id only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use radport_archive::ArchiveError;
use radport_catalog::CatalogError;

use crate::responses::ErrorBody;

/// What a handler answers: its response, or an [`ApiError`].
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// An error answered as JSON with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %without_file_names(&self.message),
                "request failed");
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl ApiError {
    /// A failure whose detail (database or storage error text, which may name tables, values
    /// or paths) is logged under a fresh id and not sent: the client gets the id to quote.
    pub(crate) fn internal(status: StatusCode, what: &str, detail: &dyn std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        tracing::error!(error_id = id, error = %without_file_names(&detail.to_string()), "{what}");
        ApiError::new(
            status,
            format!("{what}; the server log has the details under error id {id}"),
        )
    }
}

impl From<radport_collector::EraseError> for ApiError {
    fn from(e: radport_collector::EraseError) -> Self {
        match e {
            radport_collector::EraseError::Catalog(e) => e.into(),
            e @ radport_collector::EraseError::Journal(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let status = match &e {
            CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
            CatalogError::Conflict(_) => StatusCode::CONFLICT,
            CatalogError::Invalid(_) => StatusCode::BAD_REQUEST,
            CatalogError::Database(_) if e.is_transient() => {
                return ApiError::internal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the catalog is busy; try again",
                    &e,
                )
            }
            CatalogError::Database(_) => {
                return ApiError::internal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the catalog failed",
                    &e,
                )
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        match &e {
            ArchiveError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            ArchiveError::InvalidKey(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            ArchiveError::NotYet(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            ArchiveError::OutOfSpace(_) => ApiError::internal(
                StatusCode::INSUFFICIENT_STORAGE,
                "the archive is out of space",
                &e,
            ),
            ArchiveError::Storage(_) => {
                ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "the archive failed", &e)
            }
        }
    }
}

/// `text` with the names of uploaded files (archive keys and paths under `uploads/`, which
/// carry patient names as often as not) replaced by `uploads/[file]`, for logs at info level
/// and above.
pub fn without_file_names(text: &str) -> String {
    const MARK: &str = "uploads/";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(MARK) {
        let (before, after) = rest.split_at(i + MARK.len());
        out.push_str(before);
        // A name may hold spaces: it ends at a quote, bracket, comma, line end or ": ".
        let end = after
            .char_indices()
            .find(|&(k, c)| {
                matches!(c, '"' | '\'' | '`' | ')' | ']' | '}' | ',' | '\n' | '\r')
                    || (c == ':' && after[k..].starts_with(": "))
            })
            .map_or(after.len(), |(k, _)| k);
        // `upload-parts/<id>/…` names no file: keep it.
        if before.ends_with("upload-parts/") || end == 0 {
            out.push_str(&after[..end]);
        } else {
            out.push_str("[file]");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A 400 for a JSON body that could not be read, or the rejection's own status where it says
/// more (413 past the body limit, 415 without a JSON content type).
pub(crate) fn json_rejection(
    e: axum::extract::rejection::JsonRejection,
    expected: &str,
) -> ApiError {
    let status = match e.status() {
        s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "the request body is larger than this endpoint accepts",
        );
    }
    ApiError::new(status, format!("expected {expected}: {e}"))
}

impl From<radport_workflows::WorkflowError> for ApiError {
    fn from(e: radport_workflows::WorkflowError) -> Self {
        use radport_workflows::WorkflowError as W;
        match e {
            W::UnknownWorkflow(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            W::BadParameters(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            W::Catalog(c) => c.into(),
            W::Archive(a) => a.into(),
            W::Fatal(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_kept_out_of_logs() {
        assert_eq!(
            without_file_names("Unable to open /data/archive/uploads/Doe^John/ct.zip: EIO"),
            "Unable to open /data/archive/uploads/[file]: EIO"
        );
        assert_eq!(
            without_file_names("object not found: \"uploads/a b.zip\" and uploads/x"),
            "object not found: \"uploads/[file]\" and uploads/[file]"
        );
        assert_eq!(without_file_names("no file here"), "no file here");
    }

    #[test]
    fn database_errors_are_not_sent() {
        let e: ApiError = CatalogError::Database(sqlx_error()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret_table"), "{}", e.message);
        assert!(e.message.contains("error id"), "{}", e.message);
        let e: ApiError = ArchiveError::Storage("/data/archive/x: EIO".into()).into();
        assert!(!e.message.contains("/data"), "{}", e.message);
        let e: ApiError = CatalogError::NotFound("project x".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }

    fn sqlx_error() -> sqlx::Error {
        sqlx::Error::Protocol("relation secret_table does not exist".into())
    }
}
