//! The DICOM receiver: a DIMSE storage SCP (C-ECHO, C-STORE) on top of dicom-ul.
//!
//! One task per association. The called AE title names the project (it must exist, else the
//! association is rejected with reason 7), the calling AE title names the dataset; a leading
//! `kp-` is stripped from both. Each C-STORE's data-set bytes are streamed, P-DATA fragment by
//! P-DATA fragment, into [`radport_ingest`], and the C-STORE-RSP is sent only once the ingest
//! finished — success therefore means stored durably and catalogued.
//!
//! Two socket settings matter for speed: `TCP_NODELAY` for our small responses and
//! `TCP_QUICKACK` re-armed before every read, so that a sender with Nagle on (DCMTK's
//! defaults) is not held up ~40 ms per instance by delayed ACKs.

pub mod command;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, PresentationContextResultReason,
    UserIdentity,
};
use dicom_ul::{Pdu, ServerAssociationOptions};
use radport_catalog::Route;
use radport_ingest::{Announced, IncomingInstance, IngestError, Ingestor};
use tokio::net::{TcpListener, TcpStream};

use command::{field, status, Command, Response};

/// Settings of the receiver.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Our own AE title (informational: any called AE title that names a project is accepted).
    pub ae_title: String,
    /// Largest PDU we accept (what we tell senders).
    pub max_pdu_length: u32,
    /// How long a silent association is kept before it is aborted.
    pub idle_timeout: Duration,
    /// At most this many associations at once; more are refused (transient).
    pub max_associations: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            ae_title: "RADPORT".into(),
            max_pdu_length: 262_144,
            idle_timeout: Duration::from_secs(120),
            max_associations: 64,
        }
    }
}

/// Errors that stop the receiver as a whole (not one association).
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The listening socket failed.
    #[error("DICOM listener failed: {0}")]
    Listen(#[from] std::io::Error),
}

/// Dataset used when the calling AE title is empty after stripping `kp-`.
pub const DEFAULT_DATASET: &str = "dicomupload";

/// Strips padding and a leading `kp-` (any case) from an AE title.
pub fn strip_ae_title(ae: &str) -> &str {
    let t = ae.trim_matches(|c: char| c == ' ' || c == '\0');
    if t.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("kp-")) {
        &t[3..]
    } else {
        t
    }
}

/// The dataset named by a calling AE title: `kp-` and padding stripped, and every character
/// a dataset name cannot hold (AE titles may contain spaces and most punctuation) replaced
/// by `_`. Empty → [`DEFAULT_DATASET`].
pub fn dataset_name(calling_ae_title: &str) -> String {
    let stripped = strip_ae_title(calling_ae_title);
    if stripped.is_empty() {
        return DEFAULT_DATASET.to_string();
    }
    let name: String = stripped
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.as_str() {
        "." | ".." => name.replace('.', "_"),
        _ => name,
    }
}

/// Access control by project: the called AE title must name an existing project.
struct ProjectAccess {
    ingestor: Ingestor,
    peer: SocketAddr,
}

impl AccessControl for ProjectAccess {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        let project = strip_ae_title(called_ae_title).to_string();
        let ingestor = self.ingestor.clone();
        // dicom-ul asks synchronously; the catalog answers asynchronously. We are on a
        // multi-threaded runtime's worker, so blocking it for one indexed lookup is fine.
        let found = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async move { ingestor.resolve_project(&project).await })
        });
        match found {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                tracing::warn!(
                    peer = %self.peer,
                    calling_ae = calling_ae_title.trim(),
                    called_ae = called_ae_title.trim(),
                    project = strip_ae_title(called_ae_title),
                    "association refused: called AE title names no project (reason 7)"
                );
                Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "association refused: project lookup failed");
                Err(AssociationRJServiceUserReason::NoReasonGiven)
            }
        }
    }
}

/// Accepts associations on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    ingestor: Ingestor,
    config: ReceiverConfig,
) -> Result<(), ReceiverError> {
    let config = Arc::new(config);
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(error = %e, "accepting a DICOM connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let ingestor = ingestor.clone();
        let config = config.clone();
        let active = active.clone();
        tokio::spawn(async move {
            let n = active.fetch_add(1, Ordering::SeqCst) + 1;
            if n > config.max_associations {
                refuse_busy(socket, peer).await;
            } else {
                handle_association(socket, peer, ingestor, &config).await;
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Answers an association request with a transient rejection (local limit exceeded).
async fn refuse_busy(mut socket: TcpStream, peer: SocketAddr) {
    use dicom_ul::pdu::{AssociationRJ, AssociationRJResult, AssociationRJSource};
    use tokio::io::AsyncWriteExt;
    let mut buf = bytes::BytesMut::with_capacity(4096);
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        dicom_ul::association::read_pdu_from_wire_async(&mut socket, &mut buf, 65_536, false),
    )
    .await;
    let pdu = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            dicom_ul::pdu::AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &pdu).is_ok() {
        let _ = socket.write_all(&out).await;
    }
    tracing::warn!(%peer, "association refused: too many associations at once (transient)");
}

fn quickack(socket: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        let _ = socket2::SockRef::from(socket).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// What the association loop is in the middle of.
enum State {
    /// Waiting for (more of) a command set.
    Idle,
    /// Receiving a C-STORE data set.
    Storing(Box<Store>),
}

/// A C-STORE whose data set is arriving.
struct Store {
    context_id: u8,
    message_id: u16,
    sop_class_uid: String,
    sop_instance_uid: String,
    /// None once a failure was decided; the rest of the data set is then drained.
    incoming: Option<IncomingInstance>,
    failure: Option<(u16, String)>,
}

/// An accepted presentation context.
struct Context {
    id: u8,
    abstract_syntax: String,
    transfer_syntax: String,
}

#[derive(Default)]
struct Counters {
    stored: u64,
    failed: u64,
    bytes: u64,
}

/// The state of one established association: where its instances go and what it is doing.
struct Session {
    ingestor: Ingestor,
    route: Route,
    /// `dimse:<calling AE>`, recorded with each instance.
    source: String,
    calling_ae: String,
    contexts: Vec<Context>,
    command_bytes: Vec<u8>,
    state: State,
    counters: Counters,
}

type ServerAssociation = dicom_ul::association::AsyncServerAssociation<TcpStream>;

async fn handle_association(
    socket: TcpStream,
    peer: SocketAddr,
    ingestor: Ingestor,
    config: &ReceiverConfig,
) {
    quickack(&socket);
    let options = ServerAssociationOptions::new()
        .ae_access_control(ProjectAccess {
            ingestor: ingestor.clone(),
            peer,
        })
        .ae_title(config.ae_title.as_str())
        .promiscuous(true)
        .strict(false)
        .max_pdu_length(config.max_pdu_length)
        .read_timeout(config.idle_timeout);
    let association = match options.establish_async(socket).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "association not established");
            return;
        }
    };
    let called = association.called_ae_title().to_string();
    let calling = {
        use dicom_ul::association::Association;
        association.peer_ae_title().trim().to_string()
    };
    let project = match ingestor.resolve_project(strip_ae_title(&called)).await {
        Ok(Some(p)) => p,
        _ => {
            let _ = association.abort().await;
            return;
        }
    };
    let contexts: Vec<Context> = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| Context {
            id: pc.id,
            abstract_syntax: pc.abstract_syntax.trim_end_matches('\0').to_string(),
            transfer_syntax: pc.transfer_syntax.trim_end_matches('\0').to_string(),
        })
        .collect();
    let dataset = dataset_name(&calling);
    tracing::info!(%peer, calling_ae = %calling, called_ae = %called.trim(), %project, %dataset,
        contexts = contexts.len(), "association accepted");
    let mut session = Session {
        ingestor,
        route: Route { project, dataset },
        source: format!("dimse:{calling}"),
        calling_ae: calling,
        contexts,
        command_bytes: Vec::new(),
        state: State::Idle,
        counters: Counters::default(),
    };
    let started = Instant::now();
    let outcome = session.run(association, peer).await;
    session.abort_incoming().await;
    tracing::info!(%peer, outcome, stored = session.counters.stored,
        failed = session.counters.failed, bytes = session.counters.bytes,
        seconds = started.elapsed().as_secs_f64(), "association ended");
}

fn pdu_kind(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::Unknown { .. } => "unknown",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
    }
}

fn failure_status(e: &IngestError) -> u16 {
    match e {
        IngestError::OutOfSpace(_) => status::OUT_OF_RESOURCES,
        IngestError::Malformed(_) => status::CANNOT_UNDERSTAND,
        IngestError::UnknownProject(_) | IngestError::Storage(_) | IngestError::Catalog(_) => {
            status::PROCESSING_FAILURE
        }
    }
}

async fn send_response(
    association: &mut ServerAssociation,
    context_id: u8,
    response: Response,
) -> Result<(), String> {
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: response.encode(),
        }],
    };
    association
        .send(&pdu)
        .await
        .map_err(|e| format!("cannot send response: {e}"))
}

impl Session {
    /// Serves the association until it is released, aborted or broken; says which.
    async fn run(&mut self, mut association: ServerAssociation, peer: SocketAddr) -> &'static str {
        loop {
            quickack(association.inner_stream());
            let pdu = match association.receive().await {
                Ok(pdu) => pdu,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "association broken");
                    return "broken";
                }
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Err(reason) = self.on_pdv(pdv, &mut association).await {
                            tracing::warn!(%peer, %reason, "aborting association");
                            let _ = association.abort().await;
                            return "aborted";
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    let _ = association.send(&Pdu::ReleaseRP).await;
                    return "released";
                }
                Pdu::AbortRQ { .. } => return "aborted by peer",
                other => {
                    tracing::warn!(%peer, pdu = pdu_kind(&other), "unexpected PDU");
                    let _ = association.abort().await;
                    return "aborted";
                }
            }
        }
    }

    /// Drops an instance still being received: nothing of it becomes visible.
    async fn abort_incoming(&mut self) {
        if let State::Storing(store) = std::mem::replace(&mut self.state, State::Idle) {
            if let Some(incoming) = store.incoming {
                incoming.abort().await;
            }
        }
    }

    /// Handles one PDV. An `Err` aborts the association (protocol violation or dead peer).
    async fn on_pdv(
        &mut self,
        pdv: PDataValue,
        association: &mut ServerAssociation,
    ) -> Result<(), String> {
        match pdv.value_type {
            PDataValueType::Command => self.on_command_fragment(pdv, association).await,
            PDataValueType::Data => self.on_data_fragment(pdv, association).await,
        }
    }

    async fn on_command_fragment(
        &mut self,
        pdv: PDataValue,
        association: &mut ServerAssociation,
    ) -> Result<(), String> {
        if matches!(self.state, State::Storing(_)) {
            return Err("command fragment in the middle of a data set".into());
        }
        self.command_bytes.extend_from_slice(&pdv.data);
        if self.command_bytes.len() > 1024 * 1024 {
            return Err("command set larger than 1 MiB".into());
        }
        if !pdv.is_last {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.command_bytes);
        let command = Command::decode(&bytes).map_err(|e| e.to_string())?;
        let context = self
            .contexts
            .iter()
            .find(|c| c.id == pdv.presentation_context_id)
            .ok_or_else(|| {
                format!(
                    "presentation context {} was not accepted",
                    pdv.presentation_context_id
                )
            })?;
        let (context_id, abstract_syntax, transfer_syntax) = (
            context.id,
            context.abstract_syntax.clone(),
            context.transfer_syntax.clone(),
        );
        match command.field {
            field::C_ECHO_RQ => {
                let response = Response {
                    request_field: field::C_ECHO_RQ,
                    message_id: command.message_id,
                    sop_class_uid: command.affected_sop_class_uid.or(Some(abstract_syntax)),
                    sop_instance_uid: None,
                    status: status::SUCCESS,
                    error_comment: None,
                };
                send_response(association, context_id, response).await
            }
            field::C_STORE_RQ => {
                if !command.has_data_set {
                    return Err("C-STORE-RQ without a data set".into());
                }
                let sop_class_uid = command.affected_sop_class_uid.unwrap_or(abstract_syntax);
                let sop_instance_uid = command.affected_sop_instance_uid.unwrap_or_default();
                let announced = Announced {
                    sop_class_uid: sop_class_uid.clone(),
                    sop_instance_uid: sop_instance_uid.clone(),
                    transfer_syntax_uid: transfer_syntax,
                    source_ae_title: Some(self.calling_ae.clone()),
                };
                let (incoming, failure) = match self
                    .ingestor
                    .begin(self.route.clone(), self.source.clone(), announced)
                    .await
                {
                    Ok(i) => (Some(i), None),
                    Err(e) => (None, Some((failure_status(&e), e.to_string()))),
                };
                self.state = State::Storing(Box::new(Store {
                    context_id,
                    message_id: command.message_id,
                    sop_class_uid,
                    sop_instance_uid,
                    incoming,
                    failure,
                }));
                Ok(())
            }
            field::C_CANCEL_RQ => Ok(()),
            other => {
                tracing::info!(
                    command_field = other,
                    "unsupported DIMSE operation answered with 0x0211"
                );
                if command.has_data_set {
                    return Err(format!(
                        "unsupported operation 0x{other:04X} with a data set"
                    ));
                }
                let response = Response {
                    request_field: other & !field::RESPONSE,
                    message_id: command.message_id,
                    sop_class_uid: command.affected_sop_class_uid,
                    sop_instance_uid: None,
                    status: status::UNRECOGNIZED_OPERATION,
                    error_comment: Some("radport only supports C-ECHO and C-STORE".into()),
                };
                send_response(association, context_id, response).await
            }
        }
    }

    async fn on_data_fragment(
        &mut self,
        pdv: PDataValue,
        association: &mut ServerAssociation,
    ) -> Result<(), String> {
        let State::Storing(store) = &mut self.state else {
            return Err("data fragment without a C-STORE command".into());
        };
        if pdv.presentation_context_id != store.context_id {
            return Err("data fragment on another presentation context".into());
        }
        self.counters.bytes += pdv.data.len() as u64;
        if let Some(incoming) = store.incoming.as_mut() {
            // The fragment's buffer is handed on, not copied.
            if let Err(e) = incoming.write(pdv.data).await {
                store.failure = Some((failure_status(&e), e.to_string()));
                if let Some(i) = store.incoming.take() {
                    i.abort().await;
                }
            }
        }
        if !pdv.is_last {
            return Ok(());
        }
        let State::Storing(store) = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(());
        };
        let store = *store;
        let result = match (store.incoming, store.failure) {
            (_, Some(failure)) => Err(failure),
            (Some(incoming), None) => self
                .ingestor
                .finish(incoming)
                .await
                .map_err(|e| (failure_status(&e), e.to_string())),
            (None, None) => Err((status::PROCESSING_FAILURE, "no writer".to_string())),
        };
        let (status_code, comment) = match result {
            Ok(outcome) => {
                self.counters.stored += 1;
                tracing::debug!(
                    sop = %outcome.sop_instance_uid,
                    disposition = ?outcome.disposition,
                    store_us = outcome.store_time.as_micros() as u64,
                    catalog_us = outcome.catalog_time.as_micros() as u64,
                    "instance stored"
                );
                (status::SUCCESS, None)
            }
            Err((code, message)) => {
                self.counters.failed += 1;
                tracing::warn!(sop = %store.sop_instance_uid, status = format!("0x{code:04X}"), error = %message, "instance not stored");
                (code, Some(message))
            }
        };
        let response = Response {
            request_field: field::C_STORE_RQ,
            message_id: store.message_id,
            sop_class_uid: Some(store.sop_class_uid),
            sop_instance_uid: Some(store.sop_instance_uid),
            status: status_code,
            error_comment: comment,
        };
        send_response(association, store.context_id, response).await
    }
}

#[cfg(test)]
mod tests {
    use super::strip_ae_title;

    #[test]
    fn dataset_names_from_any_ae_title() {
        use super::dataset_name;
        assert_eq!(dataset_name("kp-brain-mri "), "brain-mri");
        assert_eq!(dataset_name("MR 3T@ward/7"), "MR_3T_ward_7");
        assert_eq!(dataset_name("kp-"), "dicomupload");
        assert_eq!(dataset_name(".."), "__");
    }

    #[test]
    fn ae_titles_lose_padding_and_kp_prefix() {
        assert_eq!(strip_ae_title("kp-admin  "), "admin");
        assert_eq!(strip_ae_title(" KP-Brain\0"), "Brain");
        assert_eq!(strip_ae_title("STORESCU"), "STORESCU");
        assert_eq!(strip_ae_title("kp-"), "");
    }
}
