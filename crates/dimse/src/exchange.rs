//! Talking to the requester while one of its requests is being answered: sending responses
//! (command, and an identifier if any) and reading the commands it sends meanwhile — the
//! C-STORE-RSPs of C-GET sub-operations and C-CANCEL-RQ. Every read goes through the
//! [`PduGuard`](crate::guard::PduGuard) under the idle timeout, like the rest of the
//! association.

use std::collections::VecDeque;
use std::time::Duration;

use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;

use crate::command::{field, Command, Response};
use crate::guard::PduTracker;
use crate::pdata::{Fragment, Received};
use crate::tls::Transport;
use crate::{receive, ReceiveError, ServerAssociation};

/// The requester's side of the association while a request is answered.
pub(crate) struct Requester<'a, S: Transport> {
    pub association: &'a mut ServerAssociation<S>,
    pub tracker: &'a mut PduTracker,
    pub idle_timeout: Duration,
    /// PDVs received but not yet looked at, and a command set being gathered.
    queue: VecDeque<Fragment>,
    command: Vec<u8>,
}

/// What the requester sent while a request was answered.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A C-CANCEL-RQ for this message ID.
    Cancel(u16),
    /// A C-STORE-RSP: the ID of the request it answers, its status.
    StoreResponse(u16, u16),
}

/// Why the association cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Gone {
    /// The peer aborted, released or broke the connection, or timed out.
    #[error("{0}")]
    Peer(String),
    /// The peer broke the protocol.
    #[error("{0}")]
    Protocol(String),
}

impl<'a, S: Transport> Requester<'a, S> {
    pub fn new(
        association: &'a mut ServerAssociation<S>,
        tracker: &'a mut PduTracker,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            association,
            tracker,
            idle_timeout,
            queue: VecDeque::new(),
            command: Vec::new(),
        }
    }

    /// The requester's maximum PDU length (0: unlimited).
    pub fn max_pdu(&self) -> u32 {
        self.association.requestor_max_pdu_length()
    }

    /// Sends a response, followed by its identifier if it has one.
    pub async fn respond(
        &mut self,
        context_id: u8,
        mut response: Response,
        identifier: Option<Vec<u8>>,
    ) -> Result<(), Gone> {
        response.has_data_set = identifier.is_some();
        let mut pdvs = vec![PDataValue {
            presentation_context_id: context_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: response.encode(),
        }];
        if let Some(data) = identifier {
            pdvs.push(PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Data,
                is_last: true,
                data,
            });
        }
        let max = match self.max_pdu() {
            0 => usize::MAX,
            n => n as usize,
        };
        let total: usize = pdvs.iter().map(|p| p.data.len() + 6).sum();
        if total <= max {
            return self
                .association
                .send(&Pdu::PData { data: pdvs })
                .await
                .map_err(|e| Gone::Peer(format!("cannot send a response: {e}")));
        }
        // Too long for one PDU: one PDV per PDU, each fragmented to the limit.
        for pdv in pdvs {
            let room = max.saturating_sub(6).max(1);
            let mut chunks = pdv.data.chunks(room).peekable();
            while let Some(chunk) = chunks.next() {
                let last = chunks.peek().is_none();
                self.association
                    .send(&Pdu::PData {
                        data: vec![PDataValue {
                            presentation_context_id: pdv.presentation_context_id,
                            value_type: pdv.value_type.clone(),
                            is_last: last,
                            data: chunk.to_vec(),
                        }],
                    })
                    .await
                    .map_err(|e| Gone::Peer(format!("cannot send a response: {e}")))?;
            }
        }
        Ok(())
    }

    /// Waits for the next command the requester sends.
    pub async fn next(&mut self) -> Result<Arrival, Gone> {
        loop {
            while let Some(pdv) = self.queue.pop_front() {
                if pdv.value_type == PDataValueType::Data {
                    return Err(Gone::Protocol(
                        "a data set arrived while a request was answered".into(),
                    ));
                }
                self.command.extend_from_slice(&pdv.data);
                if self.command.len() > 64 * 1024 {
                    return Err(Gone::Protocol("command set larger than 64 KiB".into()));
                }
                if !pdv.is_last {
                    continue;
                }
                let bytes = std::mem::take(&mut self.command);
                let command = Command::decode(&bytes).map_err(|e| Gone::Protocol(e.to_string()))?;
                match command.field {
                    field::C_CANCEL_RQ => {
                        return Ok(Arrival::Cancel(
                            command.message_id_being_responded_to.unwrap_or_default(),
                        ))
                    }
                    field::C_STORE_RSP => {
                        return Ok(Arrival::StoreResponse(
                            command.message_id_being_responded_to.unwrap_or_default(),
                            command.status.unwrap_or(0xFFFF),
                        ))
                    }
                    other => {
                        return Err(Gone::Protocol(format!(
                            "command 0x{other:04X} while a request was answered (one \
                             operation at a time)"
                        )))
                    }
                }
            }
            // As in the session's loop: a requester with Nagle on (DCMTK) would otherwise
            // wait ~40 ms for our delayed ACK before the rest of each C-STORE-RSP.
            crate::quickack(self.association.inner_stream().tcp());
            match receive(self.association, self.tracker, self.idle_timeout, None).await {
                Ok(Received::PData(fragments)) => self.queue.extend(fragments),
                Ok(Received::Other(Pdu::AbortRQ { .. })) => {
                    return Err(Gone::Peer("aborted by peer".into()))
                }
                Ok(Received::Other(Pdu::ReleaseRQ)) => {
                    return Err(Gone::Protocol(
                        "release requested while a request was answered".into(),
                    ))
                }
                Ok(_) => return Err(Gone::Protocol("unexpected PDU".into())),
                Err(ReceiveError::Idle) => return Err(Gone::Peer("idle timeout".into())),
                Err(e) => return Err(Gone::Peer(e.to_string())),
            }
        }
    }

    /// Whether a C-CANCEL-RQ for `message_id` has arrived, without waiting for one (what is
    /// read stays buffered: receiving is cancel-safe).
    pub async fn cancelled(&mut self, message_id: u16) -> Result<bool, Gone> {
        match tokio::time::timeout(Duration::ZERO, self.next()).await {
            Err(_) => Ok(false),
            Ok(Ok(Arrival::Cancel(id))) => Ok(id == message_id),
            Ok(Ok(Arrival::StoreResponse(..))) => Err(Gone::Protocol(
                "a C-STORE-RSP no sub-operation waits for".into(),
            )),
            Ok(Err(e)) => Err(e),
        }
    }
}
