//! C-GET and C-MOVE SCP: the identifier's instances (a catalog search at instance level in the
//! called AE title's project, at most [`MAX_SUB_OPERATIONS`]) are sent one C-STORE
//! sub-operation at a time — on the requester's own association for C-GET, on ours to the
//! destination for C-MOVE ([`crate::scu`]) — each streamed from the archive
//! ([`crate::outgoing`]).
//!
//! After every sub-operation a pending response carries the counts (remaining, completed,
//! failed, warning). A C-CANCEL-RQ stops the retrieve after the current sub-operation with
//! status Cancel (0xFE00) and the counts; otherwise the final status is Success, or 0xB000
//! when a sub-operation failed or warned (the failed SOP Instance UIDs in the identifier).
//! Retrieves running at once are limited ([`crate::ReceiverConfig::max_retrieves`]); beyond the
//! limit a request is refused with 0xA702, as is a C-MOVE whose destination cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::server::Negotiation;
use dicom_ul::pdu::RequestorRoles;
use radport_archive::Archive;
use radport_catalog::search::{Attribute, Level, Scope, Search, MAX_SEARCH_RESULTS};
use radport_catalog::{Catalog, CatalogError};
use tokio::sync::Semaphore;

use crate::command::{field, status, Response, StoreRequest, SubOperations};
use crate::exchange::{Arrival, Gone, Requester};
use crate::identifier::{Query, Service};
use crate::outgoing::{self, Item, Offer, Plan, SendError, TranscodeLimits, Transcoder};
use crate::scu;
use crate::tls::Transport;

/// Most instances one C-GET or C-MOVE sends: the counts of its responses are 16-bit.
pub const MAX_SUB_OPERATIONS: usize = u16::MAX as usize;

/// Most failed SOP Instance UIDs listed in a final response.
const MAX_FAILED_LISTED: usize = 1000;

/// Accepts the SCU/SCP roles a requester proposes (PS3.7 D.3.3.4): a C-GET requester must
/// be the SCP of the storage SOP classes it wants to receive. dicom-ul's default echoes no
/// role selection, which getscu and pynetdicom take as a refusal.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptProposedRoles;

impl Negotiation for AcceptProposedRoles {
    fn negotiate_roles(
        &self,
        _sop_class_uid: &str,
        scu_role: bool,
        scp_role: bool,
    ) -> Option<RequestorRoles> {
        Some(RequestorRoles {
            scu: scu_role,
            scp: scp_role,
        })
    }
}

/// What retrieves share across associations: the limit on retrieves at once and on
/// conversions at once, and how to convert.
#[derive(Debug, Clone)]
pub(crate) struct Retrieval {
    pub slots: Arc<Semaphore>,
    pub conversions: Arc<Semaphore>,
    pub transcoder: Option<Arc<dyn Transcoder>>,
    pub limits: TranscodeLimits,
}

/// What one retrieve needs to know of its association.
pub(crate) struct RetrieveRequest<'a> {
    pub service: Service,
    pub context_id: u8,
    pub message_id: u16,
    pub sop_class_uid: &'a str,
    pub query: Query,
    pub scope: Scope,
    /// C-MOVE: the destination's AE title.
    pub move_destination: Option<String>,
    /// The project of the called AE title (destinations are looked up in it).
    pub project: &'a str,
    /// The requester's AE title (Move Originator).
    pub calling_ae_title: &'a str,
    /// Our AE title (calling AE title towards a C-MOVE destination).
    pub our_ae_title: &'a str,
    /// Accepted presentation contexts of the requester's association (C-GET).
    pub offers: &'a [Offer],
    pub idle_timeout: Duration,
}

/// Counts of a retrieve so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub total: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
    pub cancelled: bool,
    /// The final status sent.
    pub status: u16,
    failed_uids: Vec<String>,
}

impl Tally {
    fn remaining(&self) -> u16 {
        self.total
            .saturating_sub(self.completed + self.failed + self.warning)
    }

    fn counts(&self, with_remaining: bool) -> SubOperations {
        SubOperations {
            remaining: with_remaining.then(|| self.remaining()),
            completed: self.completed,
            failed: self.failed,
            warning: self.warning,
        }
    }

    fn fail(&mut self, uid: &str) {
        self.failed += 1;
        if self.failed_uids.len() < MAX_FAILED_LISTED {
            self.failed_uids.push(uid.to_string());
        }
    }
}

fn request_field(service: Service) -> u16 {
    match service {
        Service::Get => field::C_GET_RQ,
        _ => field::C_MOVE_RQ,
    }
}

fn response(
    request: &RetrieveRequest<'_>,
    status: u16,
    counts: Option<SubOperations>,
    comment: Option<String>,
) -> Response {
    Response {
        request_field: request_field(request.service),
        message_id: request.message_id,
        sop_class_uid: Some(request.sop_class_uid.to_string()),
        sop_instance_uid: None,
        status,
        error_comment: comment,
        has_data_set: false,
        counts,
    }
}

/// Whether the identifier names what to retrieve by the unique key of its level (a retrieve
/// of "everything" is refused).
fn has_unique_key(query: &Query) -> bool {
    let unique = match query.level {
        Level::Patient => Attribute::PatientId,
        Level::Study => Attribute::StudyInstanceUid,
        Level::Series => Attribute::SeriesInstanceUid,
        Level::Instance => Attribute::SopInstanceUid,
    };
    query
        .conditions
        .iter()
        .any(|c| c.attribute == unique && !c.value.is_empty() && c.value != "*")
}

/// The instances a retrieve sends, in the project's scope.
async fn instances(
    catalog: &Catalog,
    query: &Query,
    scope: &Scope,
) -> Result<Vec<Item>, (u16, String)> {
    let mut items = Vec::new();
    let mut offset = 0u64;
    loop {
        let search = Search {
            level: Level::Instance,
            conditions: query.conditions.clone(),
            scope: scope.clone(),
            limit: MAX_SEARCH_RESULTS,
            offset,
        };
        let page = catalog.search(&search).await.map_err(|e| match e {
            CatalogError::Invalid(why) => (status::IDENTIFIER_DOES_NOT_MATCH, why),
            other => {
                tracing::error!(error = %other, "retrieve: catalog search failed");
                (
                    status::UNABLE_TO_PROCESS,
                    "catalog search failed".to_string(),
                )
            }
        })?;
        let n = page.len();
        for found in page {
            let Some(i) = found.instance else { continue };
            let pixels = match (i.rows, i.columns) {
                (Some(r), Some(c)) => {
                    u64::try_from(r)
                        .ok()
                        .zip(u64::try_from(c).ok())
                        .map(|(r, c)| {
                            r.saturating_mul(c)
                                .saturating_mul(i.number_of_frames.unwrap_or(1).max(1) as u64)
                        })
                }
                _ => None,
            };
            items.push(Item {
                sop_class_uid: i.sop_class_uid,
                sop_instance_uid: i.sop_instance_uid,
                transfer_syntax_uid: i.transfer_syntax_uid,
                object_key: i.object_key,
                size: u64::try_from(i.size).unwrap_or(0),
                pixels,
            });
        }
        if items.len() > MAX_SUB_OPERATIONS {
            return Err((
                status::OUT_OF_RESOURCES_MATCHES,
                format!("more than {MAX_SUB_OPERATIONS} instances: retrieve fewer at a time"),
            ));
        }
        if n < MAX_SEARCH_RESULTS as usize {
            return Ok(items);
        }
        offset += u64::from(MAX_SEARCH_RESULTS);
    }
}

/// The identifier of a final response: the failed SOP Instance UIDs.
fn failed_list(uids: &[String], transfer_syntax_uid: &str) -> Option<Vec<u8>> {
    if uids.is_empty() {
        return None;
    }
    let ts = TransferSyntaxRegistry.get(transfer_syntax_uid.trim_end_matches('\0'))?;
    let mut value = uids.join("\\");
    if value.len() % 2 == 1 {
        value.push('\0');
    }
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::FAILED_SOP_INSTANCE_UID_LIST,
        VR::UI,
        PrimitiveValue::from(value),
    ));
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts).ok()?;
    Some(out)
}

/// Where sub-operations go.
enum Target {
    /// C-GET: the requester's association.
    Requester,
    /// C-MOVE: our association to the destination.
    Destination(Box<scu::Destination>),
}

/// Answers a C-GET or C-MOVE: sub-operations, pending responses, the final response.
/// `Err`: the requester's association cannot go on.
pub(crate) async fn retrieve<S: Transport>(
    requester: &mut Requester<'_, S>,
    catalog: &Catalog,
    archive: &Archive,
    retrieval: &Retrieval,
    request: RetrieveRequest<'_>,
    context_transfer_syntax: &str,
) -> Result<Tally, Gone> {
    let mut tally = Tally::default();
    let refuse = |code: u16, comment: String| response(&request, code, None, Some(comment));
    let Ok(_slot) = retrieval.slots.clone().try_acquire_owned() else {
        tally.status = status::OUT_OF_RESOURCES_SUB_OPERATIONS;
        requester
            .respond(
                request.context_id,
                refuse(tally.status, "too many retrieves at once".into()),
                None,
            )
            .await?;
        return Ok(tally);
    };
    if !has_unique_key(&request.query) {
        tally.status = status::IDENTIFIER_DOES_NOT_MATCH;
        requester
            .respond(
                request.context_id,
                refuse(tally.status, "the level's unique key is missing".into()),
                None,
            )
            .await?;
        return Ok(tally);
    }
    // C-MOVE: the destination must be one of the project's.
    let destination = match (&request.service, &request.move_destination) {
        (Service::Move, Some(ae)) => match catalog.move_destination(request.project, ae).await {
            Ok(Some(d)) => Some(d),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "C-MOVE: destination lookup failed");
                None
            }
        },
        _ => None,
    };
    if request.service == Service::Move && destination.is_none() {
        tally.status = status::MOVE_DESTINATION_UNKNOWN;
        tracing::warn!(
            project = request.project,
            destination = request.move_destination.as_deref().unwrap_or(""),
            "C-MOVE refused: destination unknown in the project"
        );
        requester
            .respond(
                request.context_id,
                refuse(tally.status, "move destination unknown".into()),
                None,
            )
            .await?;
        return Ok(tally);
    }
    let items = match instances(catalog, &request.query, &request.scope).await {
        Ok(items) => items,
        Err((code, comment)) => {
            tally.status = code;
            requester
                .respond(request.context_id, refuse(code, comment), None)
                .await?;
            return Ok(tally);
        }
    };
    // At most MAX_SUB_OPERATIONS, checked above.
    tally.total = items.len() as u16;
    let mut target = match destination {
        None => Target::Requester,
        Some(d) if items.is_empty() => {
            let _ = d;
            Target::Requester
        }
        Some(d) => match scu::connect(&d, request.our_ae_title, &items, request.idle_timeout).await
        {
            Ok(dest) => Target::Destination(Box::new(dest)),
            Err(why) => {
                tracing::warn!(destination = %d.ae_title, error = %why, "C-MOVE: destination unreachable");
                tally.failed = tally.total;
                tally.status = status::OUT_OF_RESOURCES_SUB_OPERATIONS;
                requester
                    .respond(
                        request.context_id,
                        response(&request, tally.status, Some(tally.counts(false)), Some(why)),
                        None,
                    )
                    .await?;
                return Ok(tally);
            }
        },
    };
    let mut message_id: u16 = 0;
    for item in &items {
        message_id = message_id.wrapping_add(1).max(1);
        let offers: &[Offer] = match &target {
            Target::Requester => request.offers,
            Target::Destination(d) => &d.offers,
        };
        let plan = outgoing::plan(
            item,
            offers,
            retrieval.transcoder.as_ref(),
            retrieval.limits,
        );
        let (context_id, convert_to) = match plan {
            Plan::AsStored(id) => (id, None),
            Plan::Converted(id, ts) => (id, Some(ts)),
            Plan::Impossible(why) => {
                tracing::debug!(sop = %item.sop_instance_uid, %why, "retrieve sub-operation impossible");
                tally.fail(&item.sop_instance_uid);
                (0, None)
            }
        };
        if context_id != 0 {
            let store = StoreRequest {
                message_id,
                sop_class_uid: &item.sop_class_uid,
                sop_instance_uid: &item.sop_instance_uid,
                move_originator: (request.service == Service::Move)
                    .then_some((request.calling_ae_title, request.message_id)),
            };
            let _conversion = match convert_to {
                Some(_) => retrieval.conversions.clone().acquire_owned().await.ok(),
                None => None,
            };
            let outcome = match &mut target {
                Target::Requester => {
                    let max_pdu = requester.max_pdu();
                    let sent = outgoing::send_instance(
                        requester.association,
                        archive,
                        item,
                        context_id,
                        convert_to.as_deref(),
                        retrieval.transcoder.as_ref(),
                        &store,
                        max_pdu,
                    )
                    .await;
                    match sent {
                        Ok(()) => loop {
                            match requester.next().await? {
                                Arrival::StoreResponse(id, code) if id == message_id => {
                                    break Ok(code)
                                }
                                Arrival::StoreResponse(..) => {
                                    return Err(Gone::Protocol(
                                        "C-STORE-RSP to another message".into(),
                                    ))
                                }
                                Arrival::Cancel(id) => {
                                    if id == request.message_id {
                                        tally.cancelled = true;
                                    }
                                }
                            }
                        },
                        Err(SendError::NotSent(why)) => Err(why),
                        Err(SendError::Broken(why)) => return Err(Gone::Peer(why)),
                    }
                }
                Target::Destination(dest) => {
                    let max_pdu = dest.max_pdu();
                    let sent = outgoing::send_instance(
                        &mut dest.association,
                        archive,
                        item,
                        context_id,
                        convert_to.as_deref(),
                        retrieval.transcoder.as_ref(),
                        &store,
                        max_pdu,
                    )
                    .await;
                    match sent {
                        Ok(()) => dest.store_response(message_id).await.map_err(|e| {
                            // The destination's association is unusable from here on.
                            format!("destination: {e}")
                        }),
                        Err(SendError::NotSent(why)) => Err(why),
                        Err(SendError::Broken(why)) => Err(format!("destination: {why}")),
                    }
                }
            };
            match outcome {
                Ok(code) if code == status::SUCCESS => tally.completed += 1,
                Ok(code) if status::is_store_warning(code) => tally.warning += 1,
                Ok(code) => {
                    tracing::debug!(sop = %item.sop_instance_uid, status = format!("0x{code:04X}"),
                        "retrieve sub-operation failed at the receiver");
                    tally.fail(&item.sop_instance_uid);
                }
                Err(why) => {
                    tracing::warn!(error = %why, "retrieve sub-operation failed");
                    tally.fail(&item.sop_instance_uid);
                    if why.starts_with("destination: ") {
                        // Nothing more can go to it: the rest fail too.
                        for rest in items
                            .iter()
                            .skip(usize::from(tally.completed + tally.failed + tally.warning))
                        {
                            tally.fail(&rest.sop_instance_uid);
                        }
                        break;
                    }
                }
            }
        }
        if !tally.cancelled && tally.remaining() > 0 {
            tally.cancelled = requester.cancelled(request.message_id).await?;
        }
        if tally.cancelled {
            break;
        }
        if tally.remaining() > 0 {
            requester
                .respond(
                    request.context_id,
                    response(&request, status::PENDING, Some(tally.counts(true)), None),
                    None,
                )
                .await?;
        }
    }
    if let Target::Destination(dest) = target {
        dest.release().await;
    }
    tally.status = if tally.cancelled && tally.remaining() > 0 {
        status::CANCEL
    } else if tally.failed == 0 && tally.warning == 0 {
        status::SUCCESS
    } else {
        status::SUB_OPERATIONS_WARNING
    };
    let identifier = if tally.status == status::SUCCESS {
        None
    } else {
        failed_list(&tally.failed_uids, context_transfer_syntax)
    };
    let counts = tally.counts(tally.status == status::CANCEL);
    requester
        .respond(
            request.context_id,
            response(&request, tally.status, Some(counts), None),
            identifier,
        )
        .await?;
    Ok(tally)
}
