//! C-FIND SCP (Patient Root and Study Root, every level): the identifier becomes a catalog
//! search scoped to the called AE title's project, and every match goes back as a pending
//! response with its identifier, a page of [`PAGE`] matches at a time (memory does not grow
//! with the number of matches). A C-CANCEL-RQ is looked for between pages and ends the answer
//! with status Cancel (0xFE00).

use radport_catalog::search::{Scope, Search};
use radport_catalog::{Catalog, CatalogError};

use crate::command::{field, status, Response};
use crate::exchange::{Gone, Requester};
use crate::identifier::Query;
use crate::tls::Transport;

/// Matches read from the catalog per search.
pub const PAGE: u32 = 500;

/// A C-FIND-RQ with its identifier.
pub(crate) struct FindRequest<'a> {
    pub context_id: u8,
    pub message_id: u16,
    pub sop_class_uid: &'a str,
    pub transfer_syntax_uid: &'a str,
    pub query: Query,
    pub scope: Scope,
    /// Returned as Retrieve AE Title: the called AE title (where to C-GET/C-MOVE from).
    pub retrieve_ae_title: &'a str,
}

/// How a C-FIND ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FindOutcome {
    /// Every match was sent.
    Complete(u64),
    /// Cancelled after this many matches.
    Cancelled(u64),
    /// Refused (invalid identifier or catalog failure).
    Failed,
}

fn final_response(request: &FindRequest<'_>, status: u16, comment: Option<String>) -> Response {
    Response {
        request_field: field::C_FIND_RQ,
        message_id: request.message_id,
        sop_class_uid: Some(request.sop_class_uid.to_string()),
        sop_instance_uid: None,
        status,
        error_comment: comment,
        has_data_set: false,
        counts: None,
    }
}

/// Answers a C-FIND.
pub(crate) async fn find<S: Transport>(
    requester: &mut Requester<'_, S>,
    catalog: &Catalog,
    request: FindRequest<'_>,
) -> Result<FindOutcome, Gone> {
    let mut offset = 0u64;
    let mut sent = 0u64;
    loop {
        let search = Search {
            level: request.query.level,
            conditions: request.query.conditions.clone(),
            scope: request.scope.clone(),
            limit: PAGE,
            offset,
        };
        let page = match catalog.search(&search).await {
            Ok(page) => page,
            Err(e) => {
                let (code, comment) = match e {
                    CatalogError::Invalid(why) => (status::IDENTIFIER_DOES_NOT_MATCH, why),
                    other => {
                        tracing::error!(error = %other, "C-FIND: catalog search failed");
                        (
                            status::UNABLE_TO_PROCESS,
                            "catalog search failed".to_string(),
                        )
                    }
                };
                requester
                    .respond(
                        request.context_id,
                        final_response(&request, code, Some(comment)),
                        None,
                    )
                    .await?;
                return Ok(FindOutcome::Failed);
            }
        };
        let last_page = (page.len() as u64) < u64::from(PAGE);
        for found in &page {
            let identifier = match request.query.answer(
                found,
                request.retrieve_ae_title,
                request.transfer_syntax_uid,
            ) {
                Ok(identifier) => identifier,
                Err(e) => {
                    requester
                        .respond(
                            request.context_id,
                            final_response(
                                &request,
                                status::UNABLE_TO_PROCESS,
                                Some(e.to_string()),
                            ),
                            None,
                        )
                        .await?;
                    return Ok(FindOutcome::Failed);
                }
            };
            requester
                .respond(
                    request.context_id,
                    final_response(&request, status::PENDING, None),
                    Some(identifier),
                )
                .await?;
            sent += 1;
        }
        if last_page {
            break;
        }
        offset += u64::from(PAGE);
        if requester.cancelled(request.message_id).await? {
            requester
                .respond(
                    request.context_id,
                    final_response(&request, status::CANCEL, None),
                    None,
                )
                .await?;
            return Ok(FindOutcome::Cancelled(sent));
        }
    }
    requester
        .respond(
            request.context_id,
            final_response(&request, status::SUCCESS, None),
            None,
        )
        .await?;
    Ok(FindOutcome::Complete(sent))
}
