//! A C-FIND, C-GET or C-MOVE request on an association: its identifier gathered from the data
//! PDVs that follow the command, decoded ([`crate::identifier`]) and answered by [`crate::find`]
//! or [`crate::retrieve`] in the called AE title's project, then logged and recorded in the
//! audit trail.

use std::time::Instant;

use crate::command::{field, status, Response};
use crate::exchange;
use crate::guard::PduTracker;
use crate::identifier::{self, Query, Service};
use crate::tls::Transport;
use crate::{find, outgoing, record_event, retrieve, ServerAssociation, Session, State};

/// A C-FIND/C-GET/C-MOVE request whose identifier is arriving.
pub(crate) struct PendingRequest {
    pub context_id: u8,
    pub command_field: u16,
    pub message_id: u16,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
    pub sop_class_uid: String,
    pub move_destination: Option<String>,
    pub identifier: Vec<u8>,
}

impl Session {
    /// Gathers a request's identifier; once complete, answers the request.
    pub(crate) async fn on_identifier_fragment<S: Transport>(
        &mut self,
        pdv: crate::pdata::Fragment,
        association: &mut ServerAssociation<S>,
        tracker: &mut PduTracker,
    ) -> Result<(), String> {
        let State::Request(request) = &mut self.state else {
            return Err("data fragment without a request".into());
        };
        if pdv.context_id != request.context_id {
            return Err("data fragment on another presentation context".into());
        }
        request.identifier.extend_from_slice(&pdv.data);
        if request.identifier.len() > identifier::MAX_IDENTIFIER_LENGTH {
            return Err("identifier larger than 1 MiB".into());
        }
        if !pdv.is_last {
            return Ok(());
        }
        let State::Request(request) = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(());
        };
        self.answer(*request, association, tracker)
            .await
            .map_err(|e| e.to_string())
    }

    /// Answers a C-FIND, C-GET or C-MOVE whose identifier has arrived.
    async fn answer<S: Transport>(
        &mut self,
        request: PendingRequest,
        association: &mut ServerAssociation<S>,
        tracker: &mut PduTracker,
    ) -> Result<(), exchange::Gone> {
        let mut requester = exchange::Requester::new(association, tracker, self.idle_timeout);
        let wanted = match request.command_field {
            field::C_FIND_RQ => Service::Find,
            field::C_GET_RQ => Service::Get,
            _ => Service::Move,
        };
        let refuse = |code: u16, comment: String| Response {
            request_field: request.command_field,
            message_id: request.message_id,
            sop_class_uid: Some(request.sop_class_uid.clone()),
            sop_instance_uid: None,
            status: code,
            error_comment: Some(comment),
            has_data_set: false,
            counts: None,
        };
        let model = match identifier::sop_class(&request.abstract_syntax) {
            Some((model, service)) if service == wanted => model,
            _ => {
                let response = refuse(
                    status::SOP_CLASS_NOT_SUPPORTED,
                    format!(
                        "{} is not a query/retrieve SOP class of this operation",
                        request.abstract_syntax
                    ),
                );
                return requester.respond(request.context_id, response, None).await;
            }
        };
        let query = match Query::decode(&request.identifier, &request.transfer_syntax, model) {
            Ok(query) => query,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "query/retrieve identifier refused");
                let response = refuse(status::IDENTIFIER_DOES_NOT_MATCH, e.to_string());
                return requester.respond(request.context_id, response, None).await;
            }
        };
        let scope = radport_catalog::search::Scope::project(&self.route.project);
        let level = query.level;
        let catalog = self.ingestor.catalog().clone();
        let started = Instant::now();
        let (action, outcome, detail) = match wanted {
            Service::Find => {
                self.counters.queries += 1;
                let outcome = find::find(
                    &mut requester,
                    &catalog,
                    find::FindRequest {
                        context_id: request.context_id,
                        message_id: request.message_id,
                        sop_class_uid: &request.sop_class_uid,
                        transfer_syntax_uid: &request.transfer_syntax,
                        query,
                        scope,
                        retrieve_ae_title: &self.called_ae,
                    },
                )
                .await?;
                tracing::info!(peer = %self.peer, project = %self.route.project, ?level, ?outcome,
                    ms = started.elapsed().as_millis() as u64, "C-FIND answered");
                let success = !matches!(outcome, find::FindOutcome::Failed);
                ("C-FIND", success, format!("{level:?} level: {outcome:?}"))
            }
            Service::Get | Service::Move => {
                self.counters.retrieves += 1;
                let archive = self.ingestor.archive().clone();
                let offers: Vec<outgoing::Offer> = self
                    .contexts
                    .iter()
                    .map(|c| outgoing::Offer {
                        id: c.id,
                        abstract_syntax: c.abstract_syntax.clone(),
                        transfer_syntax: c.transfer_syntax.clone(),
                    })
                    .collect();
                let destination = request.move_destination.clone();
                let tally = retrieve::retrieve(
                    &mut requester,
                    &catalog,
                    &archive,
                    &self.retrieval,
                    retrieve::RetrieveRequest {
                        service: wanted,
                        context_id: request.context_id,
                        message_id: request.message_id,
                        sop_class_uid: &request.sop_class_uid,
                        query,
                        scope,
                        move_destination: request.move_destination,
                        project: &self.route.project,
                        calling_ae_title: &self.calling_ae,
                        our_ae_title: &self.our_ae,
                        offers: &offers,
                        idle_timeout: self.idle_timeout,
                    },
                    &request.transfer_syntax,
                )
                .await?;
                self.counters.sent += u64::from(tally.completed + tally.warning);
                let action = if wanted == Service::Get {
                    "C-GET"
                } else {
                    "C-MOVE"
                };
                let to = destination.map(|d| format!(" to {d}")).unwrap_or_default();
                tracing::info!(peer = %self.peer, project = %self.route.project, ?level,
                    destination = %to.trim_start_matches(" to "),
                    status = format!("0x{:04X}", tally.status), completed = tally.completed,
                    failed = tally.failed, warning = tally.warning, cancelled = tally.cancelled,
                    ms = started.elapsed().as_millis() as u64, "{action} answered");
                let success = matches!(
                    tally.status,
                    status::SUCCESS | status::CANCEL | status::SUB_OPERATIONS_WARNING
                );
                (
                    action,
                    success,
                    format!(
                        "{level:?} level{to}: status 0x{:04X}, {} completed, {} failed, {} \
                         warning{}",
                        tally.status,
                        tally.completed,
                        tally.failed,
                        tally.warning,
                        if tally.cancelled { ", cancelled" } else { "" }
                    ),
                )
            }
        };
        record_event(
            &self.ingestor,
            action,
            &self.calling_ae,
            self.peer,
            &self.route.project,
            if outcome {
                radport_catalog::Outcome::Success
            } else {
                radport_catalog::Outcome::Failure
            },
            detail,
        );
        Ok(())
    }
}
