//! The DICOM port: a DIMSE storage SCP (C-ECHO, C-STORE) and query/retrieve SCP (C-FIND,
//! C-GET, C-MOVE with its C-STORE SCU) on top of dicom-ul.
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
//!
//! No peer can make the receiver buffer more than a PDU's limit or hold the port: every PDU's
//! length is checked from its header before its body is read ([`guard`]: A-ASSOCIATE-RQ
//! 128 KiB, P-DATA-TF the announced maximum, the rest 64 bytes); the whole handshake is bounded
//! by the ARTIM timeout and every PDU of an association by the idle timeout; connections that
//! have not yet sent their request are limited in number apart from associations, which are
//! limited overall and per IP address (see [`serve`]).
//!
//! Query/retrieve is scoped like C-STORE: through the called AE title `kp-PROJECT` a peer
//! finds and retrieves exactly that project's series (`admin`: all), after the same
//! [`ProjectAccess`] check. The modules: `request` (a request's identifier gathered, the
//! request dispatched and audited), [`identifier`] (request identifiers ↔ catalog searches),
//! `find` (C-FIND), `retrieve` (C-GET, C-MOVE), [`outgoing`] (one instance streamed as a
//! C-STORE-RQ), `scu` (our association to a C-MOVE destination), `exchange` (responses and
//! the requester's commands while a request is answered).

#![warn(missing_docs)]

pub mod command;
mod exchange;
mod find;
pub mod guard;
pub mod identifier;
pub mod outgoing;
pub mod pdata;
pub mod proxy;
mod request;
mod retrieve;
mod scu;
pub mod tls;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationRJServiceUserReason, PDataValue,
    PDataValueType, PresentationContextResultReason, UserIdentity,
};
use dicom_ul::{Pdu, ServerAssociationOptions};
use radport_catalog::Route;
use radport_ingest::{Announced, Finished, IncomingInstance, IngestError, Ingestor, PendingRecord};
use radport_metrics::StoreOutcome;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use guard::{
    pdu_type, FirstPduError, PduGuard, PduLimits, PduTooLong, PduTracker, PDU_HEADER_LENGTH,
};

use command::{field, status, Command, Response};
pub use outgoing::{TranscodeLimits, Transcoder};
use request::PendingRequest;
pub use retrieve::MAX_SUB_OPERATIONS;
pub use tls::TlsListener;
use tls::Transport;

/// Settings of the receiver.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Our own AE title (informational: any called AE title that names a project is accepted).
    pub ae_title: String,
    /// Largest P-DATA-TF PDU we accept (what we tell senders); a PDU declaring more is
    /// answered with an A-ABORT from its header.
    pub max_pdu_length: u32,
    /// Largest A-ASSOCIATE-RQ accepted; a longer one is answered with an A-ABORT from its
    /// header.
    pub max_associate_rq_length: u32,
    /// How long an association may go without completing a PDU before it is aborted (also
    /// bounds each write to the peer).
    pub idle_timeout: Duration,
    /// ARTIM: how long a connection may take from accept to a complete A-ASSOCIATE-RQ
    /// (answered) before it is closed.
    pub artim_timeout: Duration,
    /// At most this many associations at once; more are refused (transient).
    pub max_associations: usize,
    /// At most this many associations at once from one IP address; more are refused
    /// (transient).
    pub max_associations_per_peer: usize,
    /// At most this many connections that have not yet become associations; beyond it, the
    /// oldest pending connection (of the same address if it has one) is closed.
    pub max_pending_connections: usize,
    /// At most this many C-GET/C-MOVE at once over all associations; more are refused with
    /// 0xA702 (each holds a catalog page of its instance list and one P-DATA fragment).
    pub max_retrieves: usize,
    /// Converts instances to a transfer syntax a retrieving peer accepted when it accepted
    /// none in the stored one; `None`: such sub-operations fail.
    pub transcoder: Option<Arc<dyn Transcoder>>,
    /// Which instances may be converted (size limits; two conversions run at once).
    pub transcode_limits: TranscodeLimits,
    /// Load balancers whose connections start with a PROXY protocol header naming the
    /// client's address ([`proxy`]); that address is then the peer's for every limit, rule,
    /// audit record and log line. Empty: none (every peer is taken as it connects).
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
}

/// Default of [`ReceiverConfig::max_retrieves`].
pub const DEFAULT_MAX_RETRIEVES: usize = 8;

/// Default of [`ReceiverConfig::max_associate_rq_length`]: 128 KiB, three times the largest
/// request a sender proposing all 128 presentation contexts with ten transfer syntaxes each
/// makes (~40 KiB), with room for user-identity tokens.
pub const DEFAULT_MAX_ASSOCIATE_RQ_LENGTH: u32 = 128 * 1024;

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            ae_title: "RADPORT".into(),
            max_pdu_length: 262_144,
            max_associate_rq_length: DEFAULT_MAX_ASSOCIATE_RQ_LENGTH,
            idle_timeout: Duration::from_secs(120),
            artim_timeout: Duration::from_secs(10),
            max_associations: 64,
            max_associations_per_peer: 32,
            max_pending_connections: 128,
            max_retrieves: DEFAULT_MAX_RETRIEVES,
            transcoder: None,
            transcode_limits: TranscodeLimits::default(),
            proxy_protocol_from: Vec::new(),
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

/// Access control by project: the called AE title must name an existing project, and the
/// project's DICOM rules (calling AE titles, networks) must let the peer in. Every refusal is
/// logged and recorded in the audit trail.
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
        // multi-threaded runtime's worker, so blocking it for two indexed lookups is fine.
        let found = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let Some(project) = ingestor.resolve_project(&project).await? else {
                    return Ok::<_, radport_ingest::IngestError>(None);
                };
                let rules = ingestor.catalog().dicom_rules(&project).await?;
                Ok(Some((project, rules)))
            })
        });
        let refuse = |why: &str, reason: AssociationRJServiceUserReason, target: &str| {
            tracing::warn!(
                peer = %self.peer,
                calling_ae = calling_ae_title.trim(),
                called_ae = called_ae_title.trim(),
                "association refused: {why}"
            );
            record_association(
                &self.ingestor,
                calling_ae_title,
                self.peer,
                target,
                radport_catalog::Outcome::Refused,
                why.to_string(),
            );
            Err(reason)
        };
        match found {
            Ok(Some((project, rules))) => {
                match radport_access::dicom::check(&rules, calling_ae_title, self.peer.ip()) {
                    Ok(()) => Ok(()),
                    Err(refusal @ radport_access::dicom::DicomRefusal::CallingAeTitle(_)) => {
                        refuse(
                            &format!("{refusal} (reason 3)"),
                            AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                            &project,
                        )
                    }
                    Err(refusal) => refuse(
                        &format!("{refusal} (reason 1)"),
                        AssociationRJServiceUserReason::NoReasonGiven,
                        &project,
                    ),
                }
            }
            Ok(None) => refuse(
                "called AE title names no project (reason 7)",
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
                strip_ae_title(called_ae_title),
            ),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "association refused: project lookup failed");
                Err(AssociationRJServiceUserReason::NoReasonGiven)
            }
        }
    }
}

/// Records an association (accepted and ended, or refused) in the audit trail, without
/// holding up the association (a failure to record is logged).
fn record_association(
    ingestor: &Ingestor,
    calling_ae_title: &str,
    peer: SocketAddr,
    project: &str,
    outcome: radport_catalog::Outcome,
    detail: String,
) {
    record_event(
        ingestor,
        "associate",
        calling_ae_title,
        peer,
        project,
        outcome,
        detail,
    );
}

/// Records a DIMSE event (`associate`, `C-FIND`, `C-GET`, `C-MOVE`) in the audit trail, in
/// the background.
fn record_event(
    ingestor: &Ingestor,
    action: &str,
    calling_ae_title: &str,
    peer: SocketAddr,
    project: &str,
    outcome: radport_catalog::Outcome,
    detail: String,
) {
    let catalog = ingestor.catalog().clone();
    let event = radport_catalog::NewAuditEvent {
        actor: format!("dicom:{}", calling_ae_title.trim()),
        address: peer.ip().to_string(),
        action: action.into(),
        target: project.to_string(),
        outcome,
        detail,
    };
    tokio::spawn(async move {
        if let Err(e) = catalog.record_audit(&event).await {
            tracing::warn!(error = %e, "recording an association in the audit trail failed");
        }
    });
}

/// Accepts associations on `listener` until the task is dropped.
///
/// Each connection goes through two phases, with separate limits:
/// 1. *pending* (accept → association established or refused): at most
///    [`ReceiverConfig::max_pending_connections`] at once; a newcomer beyond that evicts the
///    oldest pending connection of its own address, else the oldest of all, so sockets that
///    never speak cannot lock the port. The whole phase is bounded by the ARTIM timeout.
/// 2. *association*: a slot is claimed once a well-formed A-ASSOCIATE-RQ header has arrived,
///    within [`ReceiverConfig::max_associations`] overall and
///    [`ReceiverConfig::max_associations_per_peer`] per IP address; beyond either, the RQ is
///    read and answered with a transient A-ASSOCIATE-RJ (local limit exceeded).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsListener>,
    ingestor: Ingestor,
    config: ReceiverConfig,
) -> Result<(), ReceiverError> {
    let admission = Arc::new(Admission::new(config));
    // Both ports share the limits; dropping this task stops both loops.
    let secure = async {
        if let Some(tls) = tls {
            accept_loop(tls.listener, Some(tls.config), &ingestor, &admission).await;
        }
    };
    tokio::join!(accept_loop(listener, None, &ingestor, &admission), secure);
    Ok(())
}

/// Accepts connections on one port, for ever.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<tls::ServerConfig>>,
    ingestor: &Ingestor,
    admission: &Arc<Admission>,
) {
    loop {
        let (mut socket, connected_from) = match listener.accept().await {
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
        let admission = admission.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(peer) = client_address(&mut socket, connected_from, &admission.config).await
            else {
                return;
            };
            match tls {
                None => {
                    let established = handshake(socket, peer, &ingestor, &admission);
                    serve_connection(established, peer, &ingestor, &admission).await;
                }
                Some(config) => {
                    let established = tls::handshake(socket, peer, &ingestor, &admission, config);
                    serve_connection(established, peer, &ingestor, &admission).await;
                }
            }
        });
    }
}

/// The client's address: the one a trusted balancer's PROXY protocol header names (read within
/// the ARTIM timeout), else the connection's own. `None`: a trusted balancer's connection
/// without a valid header, closed.
async fn client_address(
    socket: &mut TcpStream,
    connected_from: SocketAddr,
    config: &ReceiverConfig,
) -> Option<SocketAddr> {
    if !proxy::is_trusted(&config.proxy_protocol_from, &connected_from) {
        return Some(connected_from);
    }
    match tokio::time::timeout(config.artim_timeout, proxy::read_header(socket)).await {
        Ok(Ok(Some(client))) => Some(client),
        // The balancer's own check (LOCAL, UNKNOWN): its address.
        Ok(Ok(None)) => Some(connected_from),
        // A health check that connects and closes.
        Ok(Err(proxy::ProxyHeaderError::Io(e))) => {
            tracing::debug!(balancer = %connected_from, error = %e, "closed before a PROXY header");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(balancer = %connected_from, error = %e,
                "connection from a trusted load balancer refused (is it set to send-proxy-v2?)");
            None
        }
        Err(_) => {
            tracing::warn!(balancer = %connected_from, timeout = ?config.artim_timeout,
                "no PROXY protocol header in time from a trusted load balancer");
            None
        }
    }
}

/// Counts of claimed association slots.
#[derive(Default)]
struct Slots {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// Connections that have not yet become associations, oldest first.
#[derive(Default)]
struct Pending {
    next_id: u64,
    waiting: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    /// Evictions not yet logged, and when the last log line was written: under a flood, one
    /// line per second rather than one per connection.
    evicted_unlogged: u64,
    last_eviction_log: Option<Instant>,
}

/// The limits on connections and associations, shared by every connection's task.
struct Admission {
    config: ReceiverConfig,
    slots: Mutex<Slots>,
    pending: Mutex<Pending>,
    retrieval: retrieve::Retrieval,
}

/// Why no association slot was given.
#[derive(Debug, Clone, Copy)]
enum NoSlot {
    Total,
    Peer,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The critical sections cannot panic half-way; a poisoned lock still holds valid counts.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Peers are counted by IP address (an IPv4-mapped IPv6 address as the IPv4 one).
fn peer_key(peer: &SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

impl Admission {
    fn new(config: ReceiverConfig) -> Self {
        let retrieval = retrieve::Retrieval {
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_retrieves)),
            conversions: Arc::new(tokio::sync::Semaphore::new(2)),
            transcoder: config.transcoder.clone(),
            limits: config.transcode_limits,
        };
        Self {
            config,
            slots: Mutex::default(),
            pending: Mutex::default(),
            retrieval,
        }
    }

    /// Registers a pending connection; evicts one if there are too many.
    fn enter_pending(self: &Arc<Self>, ip: IpAddr) -> PendingEntry {
        let notify = Arc::new(Notify::new());
        let mut pending = lock(&self.pending);
        if pending.waiting.len() >= self.config.max_pending_connections.max(1) {
            let victim = pending
                .waiting
                .iter()
                .find(|(_, (victim_ip, _))| *victim_ip == ip)
                .or_else(|| pending.waiting.iter().next())
                .map(|(id, _)| *id);
            if let Some((victim_ip, victim)) = victim.and_then(|id| pending.waiting.remove(&id)) {
                victim.notify_one();
                pending.evicted_unlogged += 1;
                let due = pending
                    .last_eviction_log
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    tracing::warn!(peer = %victim_ip, closed = pending.evicted_unlogged,
                        limit = self.config.max_pending_connections,
                        "DICOM connections closed before their association request: too many pending connections");
                    pending.evicted_unlogged = 0;
                    pending.last_eviction_log = Some(Instant::now());
                }
            }
        }
        let id = pending.next_id;
        pending.next_id = pending.next_id.wrapping_add(1);
        pending.waiting.insert(id, (ip, notify.clone()));
        PendingEntry {
            admission: self.clone(),
            id,
            evicted: notify,
        }
    }

    /// Claims an association slot for a peer.
    fn claim(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, NoSlot> {
        let mut slots = lock(&self.slots);
        if slots.total >= self.config.max_associations {
            return Err(NoSlot::Total);
        }
        let of_peer = slots.per_peer.entry(ip).or_insert(0);
        if *of_peer >= self.config.max_associations_per_peer {
            return Err(NoSlot::Peer);
        }
        *of_peer += 1;
        slots.total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
            _open: radport_metrics::global().association_opened(),
        })
    }
}

/// A pending connection's registration; removed on drop.
struct PendingEntry {
    admission: Arc<Admission>,
    id: u64,
    /// Notified when the connection is evicted.
    evicted: Arc<Notify>,
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        lock(&self.admission.pending).waiting.remove(&self.id);
    }
}

/// A claimed association slot; given back on drop (also when the task panics).
struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
    /// Counts it in `radport_associations_open` while held.
    _open: radport_metrics::OpenAssociation,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = lock(&self.admission.slots);
        slots.total = slots.total.saturating_sub(1);
        if let Some(n) = slots.per_peer.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                slots.per_peer.remove(&self.ip);
            }
        }
    }
}

/// One connection: the handshake (`established`) under the ARTIM timeout, then the
/// association.
async fn serve_connection<S: Transport>(
    established: impl std::future::Future<Output = Option<(ServerAssociation<S>, Slot)>>,
    peer: SocketAddr,
    ingestor: &Ingestor,
    admission: &Arc<Admission>,
) {
    let config = &admission.config;
    let pending = admission.enter_pending(peer_key(&peer));
    let evicted = pending.evicted.clone();
    let established = tokio::select! {
        outcome = tokio::time::timeout(config.artim_timeout, established) => match outcome {
            Ok(established) => established,
            Err(_) => {
                tracing::warn!(%peer, seconds = config.artim_timeout.as_secs_f64(),
                    "DICOM connection closed: no association within the ARTIM timeout");
                None
            }
        },
        _ = evicted.notified() => None,
    };
    drop(pending);
    if let Some((association, slot)) = established {
        run_association(
            association,
            slot,
            peer,
            ingestor.clone(),
            config,
            admission.retrieval.clone(),
        )
        .await;
    }
}

/// Waits for the first PDU's header without consuming it (dicom-ul reads the A-ASSOCIATE-RQ
/// from the `TcpStream` itself). `None`: the peer closed first.
async fn peek_header(socket: &TcpStream) -> std::io::Result<Option<[u8; PDU_HEADER_LENGTH]>> {
    let mut header = [0u8; PDU_HEADER_LENGTH];
    let mut pause = Duration::from_millis(5);
    loop {
        let n = socket.peek(&mut header).await?;
        if n == 0 {
            return Ok(None);
        }
        if n == PDU_HEADER_LENGTH {
            return Ok(Some(header));
        }
        // Part of a header: the socket stays readable, so wait rather than spin.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Reads the A-ASSOCIATE-RQ under the limits and establishes the association, or refuses it.
/// Runs under the ARTIM timeout.
async fn handshake(
    socket: TcpStream,
    peer: SocketAddr,
    ingestor: &Ingestor,
    admission: &Arc<Admission>,
) -> Option<(ServerAssociation<TcpStream>, Slot)> {
    let config = &admission.config;
    let header = match peek_header(&socket).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            tracing::debug!(%peer, "DICOM connection closed before any PDU");
            return None;
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "DICOM connection failed before any PDU");
            return None;
        }
    };
    let rq_length = match guard::check_associate_rq(&header, config.max_associate_rq_length) {
        Ok(length) => length,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "DICOM connection aborted before association");
            let reason = match e {
                FirstPduError::NotAnAssociateRq(pdu_type::ABORT) => None,
                FirstPduError::NotAnAssociateRq(1..=7) => {
                    Some(AbortRQServiceProviderReason::UnexpectedPdu)
                }
                FirstPduError::NotAnAssociateRq(_) => {
                    Some(AbortRQServiceProviderReason::UnrecognizedPdu)
                }
                FirstPduError::TooLong(_) => {
                    Some(AbortRQServiceProviderReason::InvalidPduParameter)
                }
            };
            let mut socket = socket;
            if let Some(reason) = reason {
                send_abort(&mut socket, reason).await;
            }
            linger_close(&mut socket).await;
            return None;
        }
    };
    let slot = match admission.claim(peer_key(&peer)) {
        Ok(slot) => slot,
        Err(why) => {
            refuse_busy(socket, peer, rq_length, why).await;
            return None;
        }
    };
    quickack(&socket);
    // The header was checked above and every later PDU goes through the `PduGuard`.
    let options = association_options(ingestor, peer, config).strict(false);
    // dicom-ul takes the socket and drops it on a request it cannot parse without answering;
    // a duplicate of the descriptor lets us answer that with an A-ABORT (PS3.8 9.3.1).
    let answer = duplicate_for_abort(&socket);
    match options.establish_async(socket).await {
        Ok(association) => Some((association, slot)),
        Err(dicom_ul::association::Error::ReceivePdu { source, .. }) => {
            tracing::warn!(%peer, error = %source, "malformed A-ASSOCIATE-RQ: aborted");
            if let Some(answer) = answer {
                abort_malformed_rq(answer);
            }
            None
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "association not established");
            None
        }
    }
}

/// What both ports negotiate with: the project's access rules, our AE title, any abstract
/// syntax, the PDU length we receive, and the idle timeout for every read and write.
fn association_options<'a>(
    ingestor: &Ingestor,
    peer: SocketAddr,
    config: &'a ReceiverConfig,
) -> ServerAssociationOptions<'a, ProjectAccess, retrieve::AcceptProposedRoles> {
    ServerAssociationOptions::new()
        .with_negotiation(retrieve::AcceptProposedRoles)
        .ae_access_control(ProjectAccess {
            ingestor: ingestor.clone(),
            peer,
        })
        .ae_title(config.ae_title.as_str())
        .promiscuous(true)
        .max_pdu_length(config.max_pdu_length)
        .read_timeout(config.idle_timeout)
        .write_timeout(config.idle_timeout)
}

/// A second descriptor of the connection (same socket), not registered with the runtime.
fn duplicate_for_abort(socket: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd;
    let fd = socket.as_fd().try_clone_to_owned().ok()?;
    Some(std::net::TcpStream::from(fd))
}

/// Answers a request dicom-ul could not parse with an A-ABORT (invalid PDU parameter) and
/// closes. The socket is non-blocking (shared with the runtime's descriptor): the 10 bytes go
/// into an empty send buffer or not at all; nothing here waits.
fn abort_malformed_rq(mut socket: std::net::TcpStream) {
    use std::io::Write;
    let pdu = Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(AbortRQServiceProviderReason::InvalidPduParameter),
    };
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &pdu).is_ok() {
        let _ = socket.write_all(&out);
    }
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// Reads the A-ASSOCIATE-RQ (its header is already known to be within limits) and answers it
/// with a transient rejection, local limit exceeded.
async fn refuse_busy(mut socket: TcpStream, peer: SocketAddr, rq_length: u32, why: NoSlot) {
    use dicom_ul::pdu::{AssociationRJ, AssociationRJResult, AssociationRJSource};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(total) = usize::try_from(rq_length)
        .ok()
        .and_then(|l| l.checked_add(PDU_HEADER_LENGTH))
    else {
        return;
    };
    // At most the A-ASSOCIATE-RQ limit: the header was checked against it.
    let mut rq = vec![0u8; total];
    if let Err(e) = socket.read_exact(&mut rq).await {
        tracing::debug!(%peer, error = %e, "refused connection closed before its request");
        return;
    }
    let pdu = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            dicom_ul::pdu::AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    // Logged before the answer: once the peer has it, the log says why.
    match why {
        NoSlot::Total => tracing::warn!(
            %peer,
            "association refused: too many associations at once (transient)"
        ),
        NoSlot::Peer => tracing::warn!(
            %peer,
            "association refused: too many associations from this address (transient)"
        ),
    }
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &pdu).is_ok() {
        let _ = socket.write_all(&out).await;
    }
    linger_close(&mut socket).await;
}

/// Sends an A-ABORT from the service provider.
async fn send_abort<S: Transport>(socket: &mut S, reason: AbortRQServiceProviderReason) {
    use tokio::io::AsyncWriteExt;
    let pdu = Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    };
    let mut out = Vec::new();
    if dicom_ul::write_pdu(&mut out, &pdu).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(&out)).await;
    }
}

/// Closes our side and discards what the peer still sends for a moment, so that our last PDU
/// is not lost to the reset a close with unread bytes would cause. Bounded in time and bytes;
/// nothing is kept.
async fn linger_close<S: Transport>(socket: &mut S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = socket.shutdown().await;
    let mut sink = [0u8; 8192];
    let mut left: usize = 1 << 20;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while left > 0 {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
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
    /// Receiving the identifier of a C-FIND, C-GET or C-MOVE.
    Request(Box<PendingRequest>),
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
    /// When its command arrived (for `radport_c_store_duration_seconds`).
    started: Instant,
}

/// The instance's data values go straight into its pack record while it takes them
/// ([`IncomingInstance::room`]); a failure decided, or another presentation context, and
/// they are read as fragments.
impl pdata::Placement for Store {
    fn room(&mut self, context_id: u8, len: usize) -> Option<&mut [u8]> {
        if context_id != self.context_id || self.failure.is_some() {
            return None;
        }
        self.incoming.as_mut()?.room(len)
    }

    fn placed(&mut self, n: usize) -> bool {
        self.incoming.as_mut().is_some_and(|i| i.grow(n).is_ok())
    }
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
    /// C-FIND, C-GET, C-MOVE requests answered.
    queries: u64,
    retrieves: u64,
    /// Instances sent by C-GET/C-MOVE sub-operations.
    sent: u64,
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
    /// The called AE title as sent (the Retrieve AE Title of C-FIND answers).
    called_ae: String,
    /// Our AE title (towards C-MOVE destinations).
    our_ae: String,
    peer: SocketAddr,
    idle_timeout: Duration,
    retrieval: retrieve::Retrieval,
    /// Instances answered success once durable whose catalog rows are still on their way,
    /// oldest first (at most [`MAX_RECORDING_BEHIND`]).
    recording: VecDeque<PendingRecord>,
}

/// At most this many instances of an association are answered ahead of their catalog rows;
/// beyond, the association waits for the oldest before it answers the next.
const MAX_RECORDING_BEHIND: usize = 64;

type ServerAssociation<S> = dicom_ul::association::AsyncServerAssociation<S>;

/// Serves an established association until it ends.
async fn run_association<S: Transport>(
    mut association: ServerAssociation<S>,
    slot: Slot,
    peer: SocketAddr,
    ingestor: Ingestor,
    config: &ReceiverConfig,
    retrieval: retrieve::Retrieval,
) {
    let mut tracker = PduTracker::new(PduLimits {
        p_data: config.max_pdu_length,
    });
    // Bytes that arrived behind the A-ASSOCIATE-RQ are already in dicom-ul's buffer: their
    // headers are checked before anything else is read.
    let early = {
        use dicom_ul::association::AsyncAssociation;
        let (_, buffer) = association.get_mut();
        tracker.observe(buffer)
    };
    if let Err(e) = early {
        tracing::warn!(%peer, error = %e, "aborting association: PDU over its limit");
        abort_association(
            association,
            AbortRQServiceProviderReason::InvalidPduParameter,
        )
        .await;
        return;
    }
    let called = association.called_ae_title().to_string();
    let calling = {
        use dicom_ul::association::Association;
        association.peer_ae_title().trim().to_string()
    };
    let project = match ingestor.resolve_project(strip_ae_title(&called)).await {
        Ok(Some(p)) => p,
        _ => {
            abort_association(
                association,
                AbortRQServiceProviderReason::ReasonNotSpecified,
            )
            .await;
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
        called_ae: called.trim().to_string(),
        our_ae: config.ae_title.clone(),
        peer,
        idle_timeout: config.idle_timeout,
        retrieval,
        recording: VecDeque::new(),
    };
    let started = Instant::now();
    let outcome = session
        .run(association, &mut tracker, peer, config.idle_timeout)
        .await;
    session.abort_incoming().await;
    // Aborted or broken: what was answered is recorded all the same; the association ends
    // once it is.
    session.wait_for_recording(0).await;
    // The slot is free before the end is logged: whoever reads the log may connect again.
    drop(slot);
    record_association(
        &session.ingestor,
        &session.calling_ae,
        peer,
        &session.route.project,
        radport_catalog::Outcome::Success,
        format!(
            "{outcome}: {} stored, {} failed, {} queries, {} retrieves ({} instances sent)",
            session.counters.stored,
            session.counters.failed,
            session.counters.queries,
            session.counters.retrieves,
            session.counters.sent
        ),
    );
    tracing::info!(%peer, outcome, stored = session.counters.stored,
        failed = session.counters.failed, bytes = session.counters.bytes,
        queries = session.counters.queries, retrieves = session.counters.retrieves,
        sent = session.counters.sent,
        seconds = started.elapsed().as_secs_f64(), "association ended");
}

/// Why no PDU was received.
#[derive(Debug, thiserror::Error)]
enum ReceiveError {
    #[error(transparent)]
    TooLong(PduTooLong),
    #[error("idle timeout")]
    Idle,
    #[error(transparent)]
    Read(pdata::ReadError),
}

/// Receives the next PDU through the [`PduGuard`] ([`pdata::read_pdu`]: P-DATA-TF without
/// copies, other PDUs by dicom-ul); the idle timeout bounds the whole PDU, so a peer that
/// stops half-way through one is cut off too.
async fn receive<S: Transport>(
    association: &mut ServerAssociation<S>,
    tracker: &mut PduTracker,
    idle_timeout: Duration,
    placement: Option<&mut (dyn pdata::Placement + Send)>,
) -> Result<pdata::Received, ReceiveError> {
    use dicom_ul::association::AsyncAssociation;
    let (socket, buffer) = association.get_mut();
    // Room for the largest P-DATA-TF allowed: it is read into one allocation.
    let read_ahead = usize::try_from(tracker.limits().p_data)
        .unwrap_or(usize::MAX)
        .saturating_add(guard::PDU_HEADER_LENGTH);
    let mut guarded = PduGuard::new(socket, tracker);
    let read = tokio::time::timeout(
        idle_timeout,
        pdata::read_pdu(&mut guarded, buffer, read_ahead, placement),
    )
    .await;
    match read {
        Err(_) => Err(ReceiveError::Idle),
        Ok(Ok(received)) => Ok(received),
        Ok(Err(e)) => match tracker.violation() {
            Some(v) => Err(ReceiveError::TooLong(v.clone())),
            None => Err(ReceiveError::Read(e)),
        },
    }
}

/// Whether a receive failed on the PDU's content rather than on the connection.
fn is_malformed(e: &pdata::ReadError) -> bool {
    use dicom_ul::association::Error;
    use dicom_ul::pdu::ReadError;
    match e {
        pdata::ReadError::Ul(e) => matches!(e, Error::ReceivePdu { source, .. }
            if !matches!(source, ReadError::ReadPdu { .. })),
        pdata::ReadError::MalformedPData(_) => true,
        pdata::ReadError::Lost(_) | pdata::ReadError::NotPlaced => false,
    }
}

/// Sends an A-ABORT (service provider, `reason`) and closes the connection.
async fn abort_association<S: Transport>(
    mut association: ServerAssociation<S>,
    reason: AbortRQServiceProviderReason,
) {
    send_abort(association.inner_stream(), reason).await;
    linger_close(association.inner_stream()).await;
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

async fn send_response<S: Transport>(
    association: &mut ServerAssociation<S>,
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
    async fn run<S: Transport>(
        &mut self,
        mut association: ServerAssociation<S>,
        tracker: &mut PduTracker,
        peer: SocketAddr,
        idle_timeout: Duration,
    ) -> &'static str {
        loop {
            quickack(association.inner_stream().tcp());
            let placement = match &mut self.state {
                State::Storing(store) if store.incoming.is_some() => {
                    Some(&mut **store as &mut (dyn pdata::Placement + Send))
                }
                _ => None,
            };
            let pdu = match receive(&mut association, tracker, idle_timeout, placement).await {
                Ok(received) => received,
                Err(ReceiveError::TooLong(e)) => {
                    tracing::warn!(%peer, error = %e, "aborting association: PDU over its limit");
                    abort_association(
                        association,
                        AbortRQServiceProviderReason::InvalidPduParameter,
                    )
                    .await;
                    return "aborted";
                }
                Err(ReceiveError::Idle) => {
                    tracing::warn!(%peer, seconds = idle_timeout.as_secs_f64(),
                        "aborting association: idle timeout");
                    abort_association(
                        association,
                        AbortRQServiceProviderReason::ReasonNotSpecified,
                    )
                    .await;
                    return "idle";
                }
                Err(ReceiveError::Read(e)) if is_malformed(&e) => {
                    tracing::warn!(%peer, error = %e, "aborting association: malformed PDU");
                    abort_association(
                        association,
                        AbortRQServiceProviderReason::InvalidPduParameter,
                    )
                    .await;
                    return "aborted";
                }
                Err(ReceiveError::Read(e)) => {
                    tracing::warn!(%peer, error = %e, "association broken");
                    return "broken";
                }
            };
            let pdu = match pdu {
                pdata::Received::PData(fragments) => {
                    for pdv in fragments {
                        if let Err(reason) = self.on_pdv(pdv, &mut association, tracker).await {
                            tracing::warn!(%peer, %reason, "aborting association");
                            abort_association(
                                association,
                                AbortRQServiceProviderReason::ReasonNotSpecified,
                            )
                            .await;
                            return "aborted";
                        }
                    }
                    continue;
                }
                pdata::Received::Other(pdu) => pdu,
            };
            match pdu {
                Pdu::ReleaseRQ => {
                    // Whoever sent the association's instances finds them all once released.
                    self.wait_for_recording(0).await;
                    let _ = association.send(&Pdu::ReleaseRP).await;
                    return "released";
                }
                Pdu::AbortRQ { .. } => return "aborted by peer",
                other => {
                    tracing::warn!(%peer, pdu = pdu_kind(&other), "aborting association: unexpected PDU");
                    let reason = match other {
                        Pdu::Unknown { .. } => AbortRQServiceProviderReason::UnrecognizedPdu,
                        _ => AbortRQServiceProviderReason::UnexpectedPdu,
                    };
                    abort_association(association, reason).await;
                    return "aborted";
                }
            }
        }
    }

    /// Takes in what was recorded of the instances answered ahead of their rows; waits for
    /// the oldest until no more than `at_most` are left.
    async fn wait_for_recording(&mut self, at_most: usize) {
        while let Some(pending) = self.recording.front_mut() {
            let recorded = match pending.try_recorded() {
                Some(recorded) => {
                    self.recording.pop_front();
                    recorded
                }
                None if self.recording.len() > at_most => match self.recording.pop_front() {
                    Some(pending) => pending.recorded().await,
                    None => break,
                },
                None => break,
            };
            match recorded {
                Ok(disposition) => tracing::debug!(?disposition, "instance recorded"),
                Err(e) => tracing::warn!(peer = %self.peer, error = %e,
                    "an acknowledged instance is not recorded yet (it is retried)"),
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
    async fn on_pdv<S: Transport>(
        &mut self,
        pdv: pdata::Fragment,
        association: &mut ServerAssociation<S>,
        tracker: &mut PduTracker,
    ) -> Result<(), String> {
        match pdv.value_type {
            PDataValueType::Command => self.on_command_fragment(pdv, association).await,
            PDataValueType::Data if matches!(self.state, State::Request(_)) => {
                self.on_identifier_fragment(pdv, association, tracker).await
            }
            PDataValueType::Data => self.on_data_fragment(pdv, association).await,
        }
    }

    async fn on_command_fragment<S: Transport>(
        &mut self,
        pdv: pdata::Fragment,
        association: &mut ServerAssociation<S>,
    ) -> Result<(), String> {
        if !matches!(self.state, State::Idle) {
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
            .find(|c| c.id == pdv.context_id)
            .ok_or_else(|| format!("presentation context {} was not accepted", pdv.context_id))?;
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
                    has_data_set: false,
                    counts: None,
                };
                send_response(association, context_id, response).await
            }
            field::C_FIND_RQ | field::C_GET_RQ | field::C_MOVE_RQ => {
                // What this association stored is found and retrieved too.
                self.wait_for_recording(0).await;
                if !command.has_data_set {
                    return Err(format!(
                        "request 0x{:04X} without an identifier",
                        command.field
                    ));
                }
                self.state = State::Request(Box::new(PendingRequest {
                    context_id,
                    command_field: command.field,
                    message_id: command.message_id,
                    sop_class_uid: command
                        .affected_sop_class_uid
                        .unwrap_or_else(|| abstract_syntax.clone()),
                    abstract_syntax,
                    transfer_syntax,
                    move_destination: command.move_destination,
                    identifier: Vec::new(),
                }));
                Ok(())
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
                    started: Instant::now(),
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
                    error_comment: Some(
                        "radport supports C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE".into(),
                    ),
                    has_data_set: false,
                    counts: None,
                };
                send_response(association, context_id, response).await
            }
        }
    }

    async fn on_data_fragment<S: Transport>(
        &mut self,
        pdv: pdata::Fragment,
        association: &mut ServerAssociation<S>,
    ) -> Result<(), String> {
        let State::Storing(store) = &mut self.state else {
            return Err("data fragment without a C-STORE command".into());
        };
        if pdv.context_id != store.context_id {
            return Err("data fragment on another presentation context".into());
        }
        self.counters.bytes += (pdv.data.len() + pdv.placed) as u64;
        if let (Some(incoming), 0) = (store.incoming.as_mut(), pdv.placed) {
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
                .finish_durable(incoming)
                .await
                .map_err(|e| (failure_status(&e), e.to_string())),
            (None, None) => Err((status::PROCESSING_FAILURE, "no writer".to_string())),
        };
        let (status_code, comment) = match result {
            Ok(Finished::Recorded(outcome)) => {
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
            Ok(Finished::Durable(durable)) => {
                self.counters.stored += 1;
                tracing::debug!(
                    sop = %durable.sop_instance_uid,
                    store_us = durable.store_time.as_micros() as u64,
                    "instance stored, its rows recorded behind"
                );
                self.recording.push_back(durable.pending);
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
            has_data_set: false,
            counts: None,
        };
        let sent = send_response(association, store.context_id, response).await;
        let outcome = if status_code == status::SUCCESS {
            StoreOutcome::Success
        } else if status::is_store_warning(status_code) {
            StoreOutcome::Warning
        } else {
            StoreOutcome::Failure
        };
        radport_metrics::global().c_store_answered(outcome, store.started.elapsed());
        self.wait_for_recording(MAX_RECORDING_BEHIND).await;
        sent
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
