//! Settings of `radport serve`: flags, then `RADPORT_*` environment variables, then an optional
//! TOML file, then built-in defaults — in that order of precedence.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use radport_catalog::DuplicatePolicy;
use serde::{Deserialize, Serialize};

use crate::logging::LogFormat;

/// Disk space of the ingest journal unless set.
const DEFAULT_JOURNAL_SIZE: u64 = 1 << 30;
/// Default `pack_write_ahead`: a pack's worth (packs are up to 1 GiB).
const DEFAULT_PACK_WRITE_AHEAD: u64 = 1 << 30;
/// The smallest journal taken: four segments that each hold an instance of the largest size
/// journaled ([`radport_ingest::JOURNALED_MAX_BYTES`]) with room to spare.
const MIN_JOURNAL_SIZE: u64 = 16 << 20;
/// Segments of the ingest journal.
const JOURNAL_SEGMENTS: usize = 4;

/// How received instances are made durable (`--ingest-durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestDurability {
    /// A file each, synced with its directory and its catalog row.
    Direct,
    /// A file each behind the ingest journal.
    Journal,
    /// Each kept in the pack it is appended to.
    Packs,
}

impl IngestDurability {
    /// The name the setting takes.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestDurability::Direct => "direct",
            IngestDurability::Journal => "journal",
            IngestDurability::Packs => "packs",
        }
    }
}

impl std::str::FromStr for IngestDurability {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text.trim() {
            "direct" => Ok(IngestDurability::Direct),
            "journal" => Ok(IngestDurability::Journal),
            "packs" => Ok(IngestDurability::Packs),
            _ => Err(()),
        }
    }
}

/// Flags of `radport serve` (each also readable from its `RADPORT_*` variable).
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "RADPORT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded catalog and archive [default: ./radport-data].
    #[arg(long, env = "RADPORT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// DIMSE port of the DICOM receiver [default: 11112].
    #[arg(long, env = "RADPORT_DICOM_PORT")]
    pub dicom_port: Option<u16>,
    /// Port of the HTTP API [default: 8080].
    #[arg(long, env = "RADPORT_HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Address both listeners bind to [default: 0.0.0.0].
    #[arg(long, env = "RADPORT_BIND")]
    pub bind: Option<String>,
    /// Catalog database URL [default: sqlite://DATA_DIR/catalog.db].
    #[arg(long, env = "RADPORT_CATALOG_URL", hide_env_values = true)]
    pub catalog_url: Option<String>,
    /// Archive (object store) URL: s3://BUCKET[/PREFIX][?endpoint=…&region=…&allow_http=true]
    /// (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the URL's parameters) or
    /// file:///PATH [default: the directory DATA_DIR/archive].
    #[arg(long, env = "RADPORT_ARCHIVE_URL", hide_env_values = true)]
    pub archive_url: Option<String>,
    /// What to do when a SOP Instance UID arrives again: keep-first, overwrite,
    /// overwrite-if-different [default: keep-first].
    #[arg(long, env = "RADPORT_DUPLICATE_POLICY")]
    pub duplicate_policy: Option<String>,
    /// AE title of the receiver, as shown to users [default: RADPORT].
    #[arg(long, env = "RADPORT_AE_TITLE")]
    pub ae_title: Option<String>,
    /// How the log is written: text (lines for people) or json (one object per line, for a
    /// log collector) [default: text]. What is logged: RADPORT_LOG.
    #[arg(long, env = "RADPORT_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Maximum number of simultaneous DICOM associations [default: 64].
    #[arg(long, env = "RADPORT_MAX_ASSOCIATIONS")]
    pub max_associations: Option<usize>,
    /// Largest PDU the receiver accepts, in bytes, 4096 to 16777216 [default: 262144].
    #[arg(long, env = "RADPORT_MAX_PDU")]
    pub max_pdu: Option<u32>,
    /// Largest A-ASSOCIATE-RQ accepted, in bytes, 1024 to 1048576; a longer one is aborted
    /// from its header [default: 131072].
    #[arg(long, env = "RADPORT_MAX_ASSOCIATE_RQ")]
    pub max_associate_rq: Option<u32>,
    /// Maximum number of simultaneous DICOM associations from one IP address [default: 32].
    #[arg(long, env = "RADPORT_MAX_ASSOCIATIONS_PER_PEER")]
    pub max_associations_per_peer: Option<usize>,
    /// Maximum number of DICOM connections that have not yet sent their association request;
    /// beyond it the oldest is closed [default: 128].
    #[arg(long, env = "RADPORT_MAX_PENDING_CONNECTIONS")]
    pub max_pending_connections: Option<usize>,
    /// Load balancers in front of the DICOM port (addresses or networks, comma-separated)
    /// whose connections start with a PROXY protocol header (v1 or v2, HAProxy's
    /// `send-proxy-v2`) naming the client: limits per peer, network rules and the audit trail
    /// then see the client, not the balancer [default: none].
    #[arg(long, env = "RADPORT_PROXY_PROTOCOL_FROM")]
    pub proxy_protocol_from: Option<String>,
    /// Maximum number of C-GET/C-MOVE retrieves at once over all associations; more are
    /// refused with status 0xA702 [default: 8].
    #[arg(long, env = "RADPORT_MAX_RETRIEVES")]
    pub max_retrieves: Option<usize>,
    /// Seconds a DICOM connection may take to send its association request (ARTIM)
    /// [default: 10].
    #[arg(long, env = "RADPORT_ARTIM_TIMEOUT")]
    pub artim_timeout: Option<f64>,
    /// Seconds a DICOM association may wait for a PDU to complete before it is aborted
    /// [default: 120].
    #[arg(long, env = "RADPORT_DICOM_IDLE_TIMEOUT")]
    pub dicom_idle_timeout: Option<f64>,
    /// Export the audit trail as DICOM audit messages (PS3.15 A.5, IHE ATNA) to a syslog
    /// collector: udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT [default: none].
    #[arg(long, env = "RADPORT_AUDIT_SYSLOG")]
    pub audit_syslog: Option<String>,
    /// The CA (PEM) that issued the audit collector's certificate (tls:// only).
    #[arg(long, env = "RADPORT_AUDIT_SYSLOG_CA")]
    pub audit_syslog_ca: Option<PathBuf>,
    /// The AuditSourceID of exported audit messages [default: radport@<public host>].
    #[arg(long, env = "RADPORT_AUDIT_SOURCE_ID")]
    pub audit_source_id: Option<String>,
    /// DICOM TLS: the port of the TLS receiver (2762 by convention), with the certificate of
    /// --tls-cert/--tls-key [default: none].
    #[arg(long, env = "RADPORT_DICOM_TLS_PORT")]
    pub dicom_tls_port: Option<u16>,
    /// DICOM TLS: peers must present a certificate issued by this CA (PEM) [default: any peer
    /// may connect].
    #[arg(long, env = "RADPORT_DICOM_TLS_CLIENT_CA")]
    pub dicom_tls_client_ca: Option<PathBuf>,
    /// Host name to show in the dcmsend command of the upload wizard [default: this host's name].
    #[arg(long, env = "RADPORT_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// Seconds without new instances after which a series is stable and its pipeline jobs
    /// run [default: 10].
    #[arg(long, env = "RADPORT_STABLE_AFTER")]
    pub stable_after: Option<f64>,
    /// Pipeline workers in this process; 0 runs none here [default: 2].
    #[arg(long, env = "RADPORT_WORKERS")]
    pub workers: Option<usize>,
    /// Attempts of a pipeline job before it is marked failed [default: 5].
    #[arg(long, env = "RADPORT_JOB_ATTEMPTS")]
    pub job_attempts: Option<i64>,
    /// Run the risky jobs (workflow imports, thumbnails: decoding untrusted files) each in a
    /// child process of its own, so that a crash or memory exhaustion ends only that job
    /// [default: true; always false with an in-memory catalog].
    #[arg(long, env = "RADPORT_ISOLATE_JOBS")]
    pub isolate_jobs: Option<bool>,
    /// Address-space limit of such a child process: bytes, or with K, M, G (KiB, MiB, GiB);
    /// 0: none [default: 4G].
    #[arg(long, env = "RADPORT_JOB_MEMORY_LIMIT")]
    pub job_memory_limit: Option<String>,
    /// How received instances are made durable (local archive only; see ARCHITECTURE.md):
    /// `direct` (a file each, synced with its directory and catalog row), `journal` (a file
    /// each behind the ingest journal, one sync shared by every instance arriving meanwhile)
    /// or `packs` (each kept in the pack it is appended to, one shared sync, no file of its
    /// own) [default: packs; on S3 always direct].
    #[arg(long, env = "RADPORT_INGEST_DURABILITY")]
    pub ingest_durability: Option<String>,
    /// Disk space of the ingest journal, in four segments made once at the first start:
    /// bytes, or with K, M, G [default: 1G; at least 16M].
    #[arg(long, env = "RADPORT_JOURNAL_SIZE")]
    pub journal_size: Option<String>,
    /// With packs: space of the active pack written ahead of its records (zeros, synced)
    /// while no instance arrives, so that a burst's syncs have no allocation to write: bytes,
    /// or with K, M, G; 0: none [default: 1G].
    #[arg(long, env = "RADPORT_PACK_WRITE_AHEAD")]
    pub pack_write_ahead: Option<String>,
    /// Seconds one attempt of a job may run before it is stopped and counted failed
    /// [default: 3600].
    #[arg(long, env = "RADPORT_JOB_TIME_LIMIT")]
    pub job_time_limit: Option<f64>,
    /// Seconds a claimed job is held; its worker renews it every third of that while the job
    /// runs, and a job whose lease runs out is taken over (or failed, if that was its last
    /// attempt) [default: 300].
    #[arg(long, env = "RADPORT_JOB_LEASE")]
    pub job_lease: Option<f64>,
    /// Longest side of series thumbnails in pixels [default: 256].
    #[arg(long, env = "RADPORT_THUMBNAIL_SIZE")]
    pub thumbnail_size: Option<u32>,
    /// Largest upload accepted, in bytes [default: 10737418240 = 10 GiB].
    #[arg(long, env = "RADPORT_MAX_UPLOAD_SIZE")]
    pub max_upload_size: Option<u64>,
    /// Hours without a new chunk after which an incomplete upload is deleted [default: 24].
    #[arg(long, env = "RADPORT_UPLOAD_EXPIRY_HOURS")]
    pub upload_expiry_hours: Option<f64>,
    /// Entries a zip imported by a workflow may have [default: 100000].
    #[arg(long, env = "RADPORT_IMPORT_MAX_ENTRIES")]
    pub import_max_entries: Option<u64>,
    /// Bytes one zip entry may inflate to, counted as it inflates
    /// [default: 4294967296 = 4 GiB].
    #[arg(long, env = "RADPORT_IMPORT_MAX_ENTRY_BYTES")]
    pub import_max_entry_bytes: Option<u64>,
    /// Bytes all entries of one imported zip may inflate to (and never more than
    /// --import-max-ratio times the zip's size, 1 GiB at least) [default: 214748364800 = 200 GiB].
    #[arg(long, env = "RADPORT_IMPORT_MAX_TOTAL_BYTES")]
    pub import_max_total_bytes: Option<u64>,
    /// Largest inflated/compressed size ratio of a zip entry past 1 MiB [default: 200].
    #[arg(long, env = "RADPORT_IMPORT_MAX_RATIO")]
    pub import_max_ratio: Option<u64>,
    /// Bytes of a meta_data.json, seg_info.json or dataset.json [default: 1048576].
    #[arg(long, env = "RADPORT_IMPORT_MAX_JSON_BYTES")]
    pub import_max_json_bytes: Option<u64>,
    /// Voxels of one imported NIfTI volume [default: 536870912 = 2^29].
    #[arg(long, env = "RADPORT_IMPORT_MAX_VOXELS")]
    pub import_max_voxels: Option<u64>,
    /// Bytes of voxel data of one imported NIfTI volume [default: 1073741824 = 1 GiB].
    #[arg(long, env = "RADPORT_IMPORT_MAX_VOLUME_BYTES")]
    pub import_max_volume_bytes: Option<u64>,
    /// Segments of one DICOM SEG made from a label map (at most 65535) [default: 1000].
    #[arg(long, env = "RADPORT_IMPORT_MAX_SEGMENTS")]
    pub import_max_segments: Option<usize>,
    /// Age an archive object that nothing references must reach before the collector
    /// removes it: a number and a unit (ms, s, m, h, d), e.g. 90s or 1h. Far longer than any
    /// instance takes from archive write to catalog commit [default: 1h].
    #[arg(long, env = "RADPORT_ORPHAN_GRACE")]
    pub orphan_grace: Option<String>,
    /// Time between two collections of unreferenced objects, as --orphan-grace; 0 runs none
    /// in this process [default: 1h].
    #[arg(long, env = "RADPORT_COLLECT_INTERVAL")]
    pub collect_interval: Option<String>,
    /// Days a completed upload is kept (unless a queued or running workflow run names it);
    /// 0 keeps uploads until deleted [default: 7].
    #[arg(long, env = "RADPORT_UPLOAD_RETENTION_DAYS")]
    pub upload_retention_days: Option<f64>,
    /// Bytes of all uploads together, incomplete ones at their announced length
    /// [default: 107374182400 = 100 GiB].
    #[arg(long, env = "RADPORT_MAX_UPLOAD_TOTAL")]
    pub max_upload_total: Option<u64>,
    /// Seconds a client has to send a complete HTTP request head; also how long an idle
    /// kept-alive connection stays open [default: 10].
    #[arg(long, env = "RADPORT_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<f64>,
    /// Seconds an HTTP request body may pause, or a response wait for a client that reads
    /// nothing, before the request fails [default: 60].
    #[arg(long, env = "RADPORT_HTTP_BODY_TIMEOUT")]
    pub http_body_timeout: Option<f64>,
    /// HTTP connections served at once; more are answered 503 [default: 4096, fewer if the
    /// open-files limit is lower].
    #[arg(long, env = "RADPORT_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Largest request body of the JSON endpoints, in bytes (tus PATCH is bounded by the
    /// upload's length instead) [default: 1048576].
    #[arg(long, env = "RADPORT_HTTP_MAX_JSON_BODY")]
    pub http_max_json_body: Option<usize>,
    /// Pieces of stored files read at once for downloads [default: 16].
    #[arg(long, env = "RADPORT_DOWNLOAD_READS")]
    pub download_reads: Option<usize>,
    /// Bytes of stored objects that DICOMweb retrievals, all together, hold in memory read
    /// ahead of their clients [default: 67108864].
    #[arg(long, env = "RADPORT_DICOMWEB_READ_AHEAD")]
    pub dicomweb_read_ahead: Option<u64>,
    /// Access control: `enforced` (every request signs in and is held to its roles) or `open`
    /// (anyone who reaches the ports may do everything: only on a trusted network)
    /// [default: enforced].
    #[arg(long, env = "RADPORT_ACCESS")]
    pub access: Option<String>,
    /// Password of the first administrator, `admin`, created when the catalog has no account
    /// [default: a random one, printed once, to be changed at the first sign-in]. Environment
    /// or config file only (a flag would show in `ps`).
    #[arg(
        long,
        env = "RADPORT_ADMIN_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
    /// An API token (`rpt_` and 43 characters) that acts as `admin`, recorded at start if it is
    /// not yet: for deployment scripts and test harnesses. Environment or config file only.
    #[arg(long, env = "RADPORT_ADMIN_TOKEN", hide = true, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Host names the HTTP server answers to, comma-separated, besides IP addresses,
    /// localhost, --public-host and this machine's name (`*`: any; the rest get 421, against
    /// DNS rebinding) [default: none].
    #[arg(long, env = "RADPORT_ALLOWED_HOSTS")]
    pub allowed_hosts: Option<String>,
    /// HTTPS: the server's certificate chain (PEM); with --tls-key [default: plain HTTP].
    #[arg(long, env = "RADPORT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM).
    #[arg(long, env = "RADPORT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Single sign-on: the OpenID provider's issuer URL (discovery at
    /// {issuer}/.well-known/openid-configuration; https, or http on the loopback only)
    /// [default: none, local accounts only].
    #[arg(long, env = "RADPORT_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Single sign-on: radport's client id at the provider [default: radport].
    #[arg(long, env = "RADPORT_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Single sign-on: the client secret (prefer the environment or the config file) [default:
    /// none, a public client with PKCE].
    #[arg(long, env = "RADPORT_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Single sign-on: the provider's name on the sign-in button ("Sign in with …")
    /// [default: single sign-on].
    #[arg(long, env = "RADPORT_OIDC_DISPLAY_NAME")]
    pub oidc_display_name: Option<String>,
    /// Single sign-on: the claim that holds the user name (`sub` when it is absent)
    /// [default: preferred_username].
    #[arg(long, env = "RADPORT_OIDC_USERNAME_CLAIM")]
    pub oidc_username_claim: Option<String>,
    /// Single sign-on: the string-array claim of groups or roles mapped to radport roles (a
    /// dotted path such as realm_access.roles is followed) [default: groups].
    #[arg(long, env = "RADPORT_OIDC_ROLES_CLAIM")]
    pub oidc_roles_claim: Option<String>,
    /// Single sign-on: the group that makes a global administrator [default: radport-admin].
    #[arg(long, env = "RADPORT_OIDC_ADMIN_GROUP")]
    pub oidc_admin_group: Option<String>,
    /// Single sign-on: groups PREFIX<project>:<viewer|contributor|manager> give project roles
    /// [default: radport:].
    #[arg(long, env = "RADPORT_OIDC_GROUP_PREFIX")]
    pub oidc_group_prefix: Option<String>,
    /// Single sign-on: the audience (`aud`) bearer JWTs must name [default: the client id].
    #[arg(long, env = "RADPORT_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// Single sign-on: the redirect URI registered at the provider [default:
    /// http(s)://PUBLIC_HOST:HTTP_PORT/api/oidc/callback]; set it when a proxy serves radport
    /// at another URL.
    #[arg(long, env = "RADPORT_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// Directory of the OHIF viewer served at /viewer/ (made by scripts/install-viewer.sh);
    /// without a viewer there, /viewer/ says how to install it [default: ./viewer].
    #[arg(long, env = "RADPORT_VIEWER_DIR")]
    pub viewer_dir: Option<PathBuf>,
}

/// The same settings as read from a TOML file.
#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    dicom_port: Option<u16>,
    http_port: Option<u16>,
    bind: Option<String>,
    catalog_url: Option<String>,
    archive_url: Option<String>,
    duplicate_policy: Option<String>,
    ae_title: Option<String>,
    log_format: Option<String>,
    max_associations: Option<usize>,
    max_pdu: Option<u32>,
    max_associate_rq: Option<u32>,
    max_associations_per_peer: Option<usize>,
    max_pending_connections: Option<usize>,
    proxy_protocol_from: Option<String>,
    max_retrieves: Option<usize>,
    artim_timeout: Option<f64>,
    dicom_idle_timeout: Option<f64>,
    dicom_tls_port: Option<u16>,
    dicom_tls_client_ca: Option<PathBuf>,
    audit_syslog: Option<String>,
    audit_syslog_ca: Option<PathBuf>,
    audit_source_id: Option<String>,
    public_host: Option<String>,
    stable_after: Option<f64>,
    workers: Option<usize>,
    job_attempts: Option<i64>,
    isolate_jobs: Option<bool>,
    job_memory_limit: Option<String>,
    ingest_durability: Option<String>,
    journal_size: Option<String>,
    pack_write_ahead: Option<String>,
    job_time_limit: Option<f64>,
    job_lease: Option<f64>,
    thumbnail_size: Option<u32>,
    max_upload_size: Option<u64>,
    upload_expiry_hours: Option<f64>,
    import_max_entries: Option<u64>,
    import_max_entry_bytes: Option<u64>,
    import_max_total_bytes: Option<u64>,
    import_max_ratio: Option<u64>,
    import_max_json_bytes: Option<u64>,
    import_max_voxels: Option<u64>,
    import_max_volume_bytes: Option<u64>,
    import_max_segments: Option<usize>,
    orphan_grace: Option<String>,
    collect_interval: Option<String>,
    upload_retention_days: Option<f64>,
    max_upload_total: Option<u64>,
    http_header_timeout: Option<f64>,
    http_body_timeout: Option<f64>,
    http_max_connections: Option<usize>,
    http_max_json_body: Option<usize>,
    download_reads: Option<usize>,
    dicomweb_read_ahead: Option<u64>,
    access: Option<String>,
    admin_password: Option<String>,
    admin_token: Option<String>,
    allowed_hosts: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
    oidc_display_name: Option<String>,
    oidc_username_claim: Option<String>,
    oidc_roles_claim: Option<String>,
    oidc_admin_group: Option<String>,
    oidc_group_prefix: Option<String>,
    oidc_audience: Option<String>,
    oidc_redirect_url: Option<String>,
    viewer_dir: Option<PathBuf>,
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub dicom_port: u16,
    pub http_port: u16,
    pub bind: String,
    pub catalog_url: String,
    /// `None`: the local directory `DATA_DIR/archive`.
    pub archive_url: Option<String>,
    pub duplicate_policy: DuplicatePolicy,
    pub ae_title: String,
    pub log_format: LogFormat,
    pub max_associations: usize,
    pub max_pdu: u32,
    pub max_associate_rq: u32,
    pub max_associations_per_peer: usize,
    pub max_pending_connections: usize,
    /// Load balancers that send a PROXY protocol header on the DICOM port.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
    pub max_retrieves: usize,
    pub artim_timeout: std::time::Duration,
    pub dicom_idle_timeout: std::time::Duration,
    /// Where the audit trail is exported; `None`: nowhere.
    pub audit_syslog: Option<radport_audit::SyslogTarget>,
    /// The audit collector's CA (TLS).
    pub audit_syslog_ca: Option<PathBuf>,
    /// The AuditSourceID of exported messages.
    pub audit_source_id: String,
    /// DICOM TLS port; `None`: no TLS receiver.
    pub dicom_tls_port: Option<u16>,
    /// DICOM TLS: the CA peers' certificates must be issued by.
    pub dicom_tls_client_ca: Option<PathBuf>,
    pub public_host: String,
    pub stable_after: std::time::Duration,
    pub workers: usize,
    pub job_attempts: i64,
    /// Whether risky jobs run in child processes (false with an in-memory catalog).
    pub isolate_jobs: bool,
    /// Address-space limit of a job's child process in bytes; 0: none.
    pub job_memory_limit: u64,
    /// How received instances are made durable (local archive only).
    pub ingest_durability: IngestDurability,
    /// Bytes of the ingest journal (four segments).
    pub journal_size: u64,
    /// Bytes of the active pack written ahead of its records while idle.
    pub pack_write_ahead: u64,
    pub job_time_limit: std::time::Duration,
    pub job_lease: std::time::Duration,
    pub thumbnail_size: u32,
    pub max_upload_size: u64,
    pub upload_expiry: std::time::Duration,
    /// Limits of the import workflows (zip, JSON, NIfTI, SEG).
    pub import_limits: radport_workflows::ImportLimits,
    /// Unreferenced archive objects younger than this are kept.
    pub orphan_grace: std::time::Duration,
    /// Time between two collections; zero: none in this process.
    pub collect_interval: std::time::Duration,
    /// Zero: kept until deleted.
    pub upload_retention: std::time::Duration,
    pub max_upload_total: u64,
    pub http_header_timeout: std::time::Duration,
    pub http_body_timeout: std::time::Duration,
    pub http_max_connections: usize,
    pub http_max_json_body: usize,
    pub download_reads: usize,
    pub dicomweb_read_ahead: u64,
    pub access: radport_access::Mode,
    pub admin_password: Option<Secret>,
    pub admin_token: Option<Secret>,
    /// Extra host names of the HTTP server (`*`: any).
    pub allowed_hosts: Vec<String>,
    /// HTTPS: certificate chain and key (PEM files); `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Single sign-on; `None`: local accounts only.
    pub oidc: Option<OidcSettings>,
    /// The OHIF viewer's files (absolute; served once installed there).
    pub viewer_dir: PathBuf,
}

/// Single sign-on with an OpenID provider (see docs/access.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<Secret>,
    pub display_name: String,
    pub username_claim: String,
    pub roles_claim: String,
    pub admin_group: String,
    pub group_prefix: String,
    pub audience: String,
    pub redirect_url: String,
}

impl OidcSettings {
    /// The access crate's form.
    pub fn to_config(&self) -> radport_access::oidc::OidcConfig {
        radport_access::oidc::OidcConfig {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.as_ref().map(|s| s.0.clone()),
            redirect_uri: self.redirect_url.clone(),
            audience: self.audience.clone(),
            mapping: radport_access::oidc::ClaimMapping {
                username_claim: self.username_claim.clone(),
                roles_claim: self.roles_claim.clone(),
                admin_group: self.admin_group.clone(),
                group_prefix: self.group_prefix.clone(),
            },
        }
    }
}

/// A setting that is a secret: kept out of `Debug` output (and so out of logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A number of seconds within `range`, as a duration.
fn seconds(
    name: &str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<std::time::Duration> {
    if !range.contains(&value) {
        anyhow::bail!(
            "{name} must be between {} and {} seconds, not {value}",
            range.start(),
            range.end()
        );
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

fn read_file(path: &Path) -> Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

impl Settings {
    /// The ingest journal's geometry: [`JOURNAL_SEGMENTS`] segments sharing `journal_size`,
    /// each taking instances of up to twice what ingest journals.
    pub fn journal_config(&self) -> radport_ingest::JournalConfig {
        radport_ingest::JournalConfig {
            segment_bytes: self.journal_size / JOURNAL_SEGMENTS as u64,
            segments: JOURNAL_SEGMENTS,
            max_body_bytes: 2 * radport_ingest::JOURNALED_MAX_BYTES,
        }
    }

    /// The packs' geometry (`--ingest-durability packs`): packs of up to 1 GiB, taking
    /// instances of up to twice what ingest packs, a checkpoint every 64 MiB; a record made
    /// while no other is on its way is written while it arrives.
    pub fn pack_config(&self) -> radport_ingest::PackConfig {
        radport_ingest::PackConfig {
            max_body_bytes: 2 * radport_ingest::JOURNALED_MAX_BYTES,
            ahead_bytes: self.pack_write_ahead,
            write_while_arriving: true,
            ..Default::default()
        }
    }

    /// Every setting in the configuration file's form (TOML), complete: resolved again by
    /// [`Settings::from_toml`], it gives these settings back. An isolated job's child process
    /// gets its settings this way, so that it cannot miss one the server has.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(&self.to_file()).context("cannot write the settings as TOML")
    }

    /// Settings from [`Settings::to_toml`]'s text alone (no flags, environment or file).
    pub fn from_toml(text: &str) -> Result<Settings> {
        let file: FileSettings = toml::from_str(text).context("invalid settings")?;
        ServeArgs::default().resolve_over(file)
    }

    /// The file form. A struct literal without defaults: a new file setting does not compile
    /// until it is written here.
    fn to_file(&self) -> FileSettings {
        let secs = |d: std::time::Duration| Some(d.as_secs_f64());
        let duration = |d: std::time::Duration| Some(format!("{}s", d.as_secs_f64()));
        let l = &self.import_limits;
        FileSettings {
            data_dir: Some(self.data_dir.clone()),
            dicom_port: Some(self.dicom_port),
            http_port: Some(self.http_port),
            bind: Some(self.bind.clone()),
            catalog_url: Some(self.catalog_url.clone()),
            // Absent means the data directory's archive, as it does here.
            archive_url: self.archive_url.clone(),
            duplicate_policy: Some(self.duplicate_policy.as_str().into()),
            ae_title: Some(self.ae_title.clone()),
            log_format: Some(self.log_format.as_str().into()),
            max_associations: Some(self.max_associations),
            max_pdu: Some(self.max_pdu),
            max_associate_rq: Some(self.max_associate_rq),
            max_associations_per_peer: Some(self.max_associations_per_peer),
            max_pending_connections: Some(self.max_pending_connections),
            proxy_protocol_from: Some(
                self.proxy_protocol_from
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            max_retrieves: Some(self.max_retrieves),
            artim_timeout: secs(self.artim_timeout),
            dicom_idle_timeout: secs(self.dicom_idle_timeout),
            dicom_tls_port: self.dicom_tls_port,
            dicom_tls_client_ca: self.dicom_tls_client_ca.clone(),
            audit_syslog: self.audit_syslog.as_ref().map(|t| t.to_string()),
            audit_syslog_ca: self.audit_syslog_ca.clone(),
            audit_source_id: Some(self.audit_source_id.clone()),
            public_host: Some(self.public_host.clone()),
            stable_after: secs(self.stable_after),
            workers: Some(self.workers),
            job_attempts: Some(self.job_attempts),
            isolate_jobs: Some(self.isolate_jobs),
            job_memory_limit: Some(self.job_memory_limit.to_string()),
            ingest_durability: Some(self.ingest_durability.as_str().into()),
            journal_size: Some(self.journal_size.to_string()),
            pack_write_ahead: Some(self.pack_write_ahead.to_string()),
            job_time_limit: secs(self.job_time_limit),
            job_lease: secs(self.job_lease),
            thumbnail_size: Some(self.thumbnail_size),
            max_upload_size: Some(self.max_upload_size),
            upload_expiry_hours: Some(self.upload_expiry.as_secs_f64() / 3600.0),
            import_max_entries: Some(l.max_entries),
            import_max_entry_bytes: Some(l.max_entry_bytes),
            import_max_total_bytes: Some(l.max_total_bytes),
            import_max_ratio: Some(l.max_ratio),
            import_max_json_bytes: Some(l.max_json_bytes),
            import_max_voxels: Some(l.convert.max_voxels),
            import_max_volume_bytes: Some(l.convert.max_volume_bytes),
            import_max_segments: Some(l.convert.max_segments),
            orphan_grace: duration(self.orphan_grace),
            collect_interval: duration(self.collect_interval),
            upload_retention_days: Some(self.upload_retention.as_secs_f64() / 86_400.0),
            max_upload_total: Some(self.max_upload_total),
            http_header_timeout: secs(self.http_header_timeout),
            http_body_timeout: secs(self.http_body_timeout),
            http_max_connections: Some(self.http_max_connections),
            http_max_json_body: Some(self.http_max_json_body),
            download_reads: Some(self.download_reads),
            dicomweb_read_ahead: Some(self.dicomweb_read_ahead),
            access: Some(self.access.as_str().into()),
            admin_password: self.admin_password.as_ref().map(|s| s.0.clone()),
            admin_token: self.admin_token.as_ref().map(|s| s.0.clone()),
            allowed_hosts: Some(self.allowed_hosts.join(",")),
            tls_cert: self.tls.as_ref().map(|t| t.0.clone()),
            tls_key: self.tls.as_ref().map(|t| t.1.clone()),
            oidc_issuer: self.oidc.as_ref().map(|o| o.issuer.clone()),
            oidc_client_id: self.oidc.as_ref().map(|o| o.client_id.clone()),
            oidc_client_secret: self
                .oidc
                .as_ref()
                .and_then(|o| o.client_secret.as_ref().map(|s| s.0.clone())),
            oidc_display_name: self.oidc.as_ref().map(|o| o.display_name.clone()),
            oidc_username_claim: self.oidc.as_ref().map(|o| o.username_claim.clone()),
            oidc_roles_claim: self.oidc.as_ref().map(|o| o.roles_claim.clone()),
            oidc_admin_group: self.oidc.as_ref().map(|o| o.admin_group.clone()),
            oidc_group_prefix: self.oidc.as_ref().map(|o| o.group_prefix.clone()),
            oidc_audience: self.oidc.as_ref().map(|o| o.audience.clone()),
            oidc_redirect_url: self.oidc.as_ref().map(|o| o.redirect_url.clone()),
            viewer_dir: Some(self.viewer_dir.clone()),
        }
    }
}

impl ServeArgs {
    /// Merges flags/env (already in `self`) over the TOML file over defaults.
    pub fn resolve(self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        self.resolve_over(file)
    }

    /// Merges flags/env over `file` over defaults.
    fn resolve_over(self, file: FileSettings) -> Result<Settings> {
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("radport-data"));
        let data_dir = if data_dir.is_absolute() {
            data_dir
        } else {
            std::env::current_dir()?.join(data_dir)
        };
        let viewer_dir = self
            .viewer_dir
            .or(file.viewer_dir)
            .unwrap_or_else(|| PathBuf::from("viewer"));
        let viewer_dir = if viewer_dir.is_absolute() {
            viewer_dir
        } else {
            std::env::current_dir()?.join(viewer_dir)
        };
        let catalog_url = self
            .catalog_url
            .or(file.catalog_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("catalog.db").display()));
        let archive_url = self
            .archive_url
            .or(file.archive_url)
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        let policy_text = self
            .duplicate_policy
            .or(file.duplicate_policy)
            .unwrap_or_else(|| "keep-first".into());
        let duplicate_policy: DuplicatePolicy = policy_text.parse().map_err(|_| {
            anyhow::anyhow!(
                "unknown duplicate policy {policy_text:?}: use keep-first, overwrite or overwrite-if-different"
            )
        })?;
        let durability_text = self
            .ingest_durability
            .or(file.ingest_durability)
            .unwrap_or_else(|| "packs".into());
        let ingest_durability: IngestDurability = durability_text.parse().map_err(|()| {
            anyhow::anyhow!(
                "unknown ingest durability {durability_text:?}: use direct, journal or packs"
            )
        })?;
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => anyhow::bail!("tls_cert and tls_key go together: give both, or neither"),
        };
        // An empty value (RADPORT_ACCESS=) is the default.
        let access_text = self
            .access
            .or(file.access)
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "enforced".into());
        let access = radport_access::Mode::parse(&access_text).ok_or_else(|| {
            anyhow::anyhow!("access must be open or enforced, not {access_text:?}")
        })?;
        let admin_token = match self.admin_token.or(file.admin_token) {
            Some(t) if !radport_access::token::looks_like_token(&t) => anyhow::bail!(
                "admin_token must be an API token: rpt_ and 43 characters of A-Z a-z 0-9 - _"
            ),
            t => t.map(Secret),
        };
        let public_host = self
            .public_host
            .or(file.public_host)
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let oidc = resolve_oidc(
            OidcFlags {
                issuer: self.oidc_issuer.or(file.oidc_issuer),
                client_id: self.oidc_client_id.or(file.oidc_client_id),
                client_secret: self.oidc_client_secret.or(file.oidc_client_secret),
                display_name: self.oidc_display_name.or(file.oidc_display_name),
                username_claim: self.oidc_username_claim.or(file.oidc_username_claim),
                roles_claim: self.oidc_roles_claim.or(file.oidc_roles_claim),
                admin_group: self.oidc_admin_group.or(file.oidc_admin_group),
                group_prefix: self.oidc_group_prefix.or(file.oidc_group_prefix),
                audience: self.oidc_audience.or(file.oidc_audience),
                redirect_url: self.oidc_redirect_url.or(file.oidc_redirect_url),
            },
            &public_host,
            self.http_port.or(file.http_port).unwrap_or(8080),
            tls.is_some(),
        )?;
        let stable_after = self.stable_after.or(file.stable_after).unwrap_or(10.0);
        if !(0.0..=86_400.0).contains(&stable_after) {
            anyhow::bail!("stable_after must be between 0 and 86400 seconds, not {stable_after}");
        }
        let job_memory_limit = byte_setting(
            "job_memory_limit",
            self.job_memory_limit.or(file.job_memory_limit),
        )?
        .unwrap_or(4 << 30);
        if job_memory_limit != 0 && job_memory_limit < 32 << 20 {
            anyhow::bail!("job_memory_limit must be 0 (none) or at least 32M");
        }
        let journal_size = byte_setting("journal_size", self.journal_size.or(file.journal_size))?
            .unwrap_or(DEFAULT_JOURNAL_SIZE);
        if journal_size < MIN_JOURNAL_SIZE {
            anyhow::bail!("journal_size must be at least 16M");
        }
        let pack_write_ahead = byte_setting(
            "pack_write_ahead",
            self.pack_write_ahead.or(file.pack_write_ahead),
        )?
        .unwrap_or(DEFAULT_PACK_WRITE_AHEAD);
        let job_time_limit = self
            .job_time_limit
            .or(file.job_time_limit)
            .unwrap_or(3600.0);
        if !(1.0..=7.0 * 86_400.0).contains(&job_time_limit) {
            anyhow::bail!(
                "job_time_limit must be between 1 and 604800 seconds, not {job_time_limit}"
            );
        }
        let job_lease = self.job_lease.or(file.job_lease).unwrap_or(300.0);
        if !(0.3..=86_400.0).contains(&job_lease) {
            anyhow::bail!("job_lease must be between 0.3 and 86400 seconds, not {job_lease}");
        }
        // An in-memory catalog lives in this process only: a child could not see it.
        let isolate_jobs =
            self.isolate_jobs.or(file.isolate_jobs).unwrap_or(true) && !is_in_memory(&catalog_url);
        let thumbnail_size = self.thumbnail_size.or(file.thumbnail_size).unwrap_or(256);
        if !(16..=2048).contains(&thumbnail_size) {
            anyhow::bail!(
                "thumbnail_size must be between 16 and 2048 pixels, not {thumbnail_size}"
            );
        }
        let upload_expiry_hours = self
            .upload_expiry_hours
            .or(file.upload_expiry_hours)
            .unwrap_or(24.0);
        if !(0.0..=24.0 * 365.0).contains(&upload_expiry_hours) {
            anyhow::bail!(
                "upload_expiry_hours must be between 0 and 8760, not {upload_expiry_hours}"
            );
        }
        let upload_retention_days = self
            .upload_retention_days
            .or(file.upload_retention_days)
            .unwrap_or(7.0);
        if !(0.0..=3650.0).contains(&upload_retention_days) {
            anyhow::bail!(
                "upload_retention_days must be between 0 and 3650, not {upload_retention_days}"
            );
        }
        let http_header_timeout = seconds(
            "http_header_timeout",
            self.http_header_timeout
                .or(file.http_header_timeout)
                .unwrap_or(10.0),
            0.1..=3600.0,
        )?;
        let http_body_timeout = seconds(
            "http_body_timeout",
            self.http_body_timeout
                .or(file.http_body_timeout)
                .unwrap_or(60.0),
            0.1..=86_400.0,
        )?;
        let http_max_connections = self
            .http_max_connections
            .or(file.http_max_connections)
            .unwrap_or(4096);
        if http_max_connections == 0 {
            anyhow::bail!("http_max_connections must be at least 1");
        }
        let orphan_grace = match self.orphan_grace.or(file.orphan_grace) {
            Some(text) => parse_duration("orphan_grace", &text)?,
            None => radport_collector::DEFAULT_GRACE,
        };
        let collect_interval = match self.collect_interval.or(file.collect_interval) {
            Some(text) => parse_duration("collect_interval", &text)?,
            None => radport_collector::DEFAULT_INTERVAL,
        };
        let import_limits = {
            let d = radport_workflows::ImportLimits::default();
            let limits = radport_workflows::ImportLimits {
                max_entries: self
                    .import_max_entries
                    .or(file.import_max_entries)
                    .unwrap_or(d.max_entries),
                max_entry_bytes: self
                    .import_max_entry_bytes
                    .or(file.import_max_entry_bytes)
                    .unwrap_or(d.max_entry_bytes),
                max_total_bytes: self
                    .import_max_total_bytes
                    .or(file.import_max_total_bytes)
                    .unwrap_or(d.max_total_bytes),
                max_ratio: self
                    .import_max_ratio
                    .or(file.import_max_ratio)
                    .unwrap_or(d.max_ratio),
                max_json_bytes: self
                    .import_max_json_bytes
                    .or(file.import_max_json_bytes)
                    .unwrap_or(d.max_json_bytes),
                convert: radport_workflows::ConvertLimits {
                    max_voxels: self
                        .import_max_voxels
                        .or(file.import_max_voxels)
                        .unwrap_or(d.convert.max_voxels),
                    max_volume_bytes: self
                        .import_max_volume_bytes
                        .or(file.import_max_volume_bytes)
                        .unwrap_or(d.convert.max_volume_bytes),
                    max_segments: self
                        .import_max_segments
                        .or(file.import_max_segments)
                        .unwrap_or(d.convert.max_segments),
                    ..d.convert
                },
            };
            let l = &limits;
            if [
                l.max_entries,
                l.max_entry_bytes,
                l.max_total_bytes,
                l.max_ratio,
                l.max_json_bytes,
                l.convert.max_voxels,
                l.convert.max_volume_bytes,
                l.convert.max_segments as u64,
            ]
            .contains(&0)
                || l.convert.max_segments > 65535
            {
                anyhow::bail!(
                    "the import_max_* limits must be at least 1 (import_max_segments at most 65535)"
                );
            }
            limits
        };
        let max_pdu = self.max_pdu.or(file.max_pdu).unwrap_or(262_144);
        if !(4096..=16 * 1024 * 1024).contains(&max_pdu) {
            anyhow::bail!("max_pdu must be between 4096 and 16777216 bytes, not {max_pdu}");
        }
        let max_associate_rq = self
            .max_associate_rq
            .or(file.max_associate_rq)
            .unwrap_or(radport_dimse::DEFAULT_MAX_ASSOCIATE_RQ_LENGTH);
        if !(1024..=1024 * 1024).contains(&max_associate_rq) {
            anyhow::bail!(
                "max_associate_rq must be between 1024 and 1048576 bytes, not {max_associate_rq}"
            );
        }
        let artim_timeout = seconds(
            "artim_timeout",
            self.artim_timeout.or(file.artim_timeout).unwrap_or(10.0),
            0.1..=600.0,
        )?;
        let dicom_idle_timeout = seconds(
            "dicom_idle_timeout",
            self.dicom_idle_timeout
                .or(file.dicom_idle_timeout)
                .unwrap_or(120.0),
            0.1..=86_400.0,
        )?;
        let max_associations_per_peer = self
            .max_associations_per_peer
            .or(file.max_associations_per_peer)
            .unwrap_or(32);
        let max_pending_connections = self
            .max_pending_connections
            .or(file.max_pending_connections)
            .unwrap_or(128);
        if max_associations_per_peer == 0 || max_pending_connections == 0 {
            anyhow::bail!(
                "max_associations_per_peer and max_pending_connections must be at least 1"
            );
        }
        let proxy_protocol_from = parse_networks(
            &self
                .proxy_protocol_from
                .or(file.proxy_protocol_from)
                .unwrap_or_default(),
        )
        .context("proxy_protocol_from")?;
        let max_retrieves = self
            .max_retrieves
            .or(file.max_retrieves)
            .unwrap_or(radport_dimse::DEFAULT_MAX_RETRIEVES);
        if max_retrieves == 0 {
            anyhow::bail!("max_retrieves must be at least 1");
        }
        let dicom_tls_port = self.dicom_tls_port.or(file.dicom_tls_port);
        let dicom_tls_client_ca = self.dicom_tls_client_ca.or(file.dicom_tls_client_ca);
        if dicom_tls_port.is_some() && tls.is_none() {
            anyhow::bail!("dicom_tls_port needs a certificate: give tls_cert and tls_key too");
        }
        if dicom_tls_client_ca.is_some() && dicom_tls_port.is_none() {
            anyhow::bail!("dicom_tls_client_ca is for the DICOM TLS port: give dicom_tls_port too");
        }
        let audit_syslog = match self.audit_syslog.or(file.audit_syslog) {
            Some(t) if !t.trim().is_empty() => {
                Some(t.trim().parse::<radport_audit::SyslogTarget>()?)
            }
            _ => None,
        };
        let audit_syslog_ca = self.audit_syslog_ca.or(file.audit_syslog_ca);
        let audit_source_id = self.audit_source_id.or(file.audit_source_id);
        Ok(Settings {
            audit_syslog,
            audit_syslog_ca,
            audit_source_id: audit_source_id.unwrap_or_else(|| format!("radport@{public_host}")),
            dicom_tls_port,
            dicom_tls_client_ca,
            max_pdu,
            max_associate_rq,
            max_associations_per_peer,
            max_pending_connections,
            proxy_protocol_from,
            max_retrieves,
            artim_timeout,
            dicom_idle_timeout,
            orphan_grace,
            collect_interval,
            upload_retention: std::time::Duration::from_secs_f64(upload_retention_days * 86_400.0),
            max_upload_total: self
                .max_upload_total
                .or(file.max_upload_total)
                .unwrap_or(100 * 1024 * 1024 * 1024),
            http_header_timeout,
            http_body_timeout,
            http_max_connections,
            http_max_json_body: self
                .http_max_json_body
                .or(file.http_max_json_body)
                .unwrap_or(1024 * 1024)
                .max(1024),
            download_reads: self
                .download_reads
                .or(file.download_reads)
                .unwrap_or(16)
                .max(1),
            dicomweb_read_ahead: self
                .dicomweb_read_ahead
                .or(file.dicomweb_read_ahead)
                .unwrap_or(radport_dicomweb::DEFAULT_READ_AHEAD_BUDGET)
                .max(1024 * 1024),
            access,
            admin_password: self.admin_password.or(file.admin_password).map(Secret),
            admin_token,
            tls,
            allowed_hosts: self
                .allowed_hosts
                .or(file.allowed_hosts)
                .unwrap_or_default()
                .split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
            oidc,
            max_upload_size: self
                .max_upload_size
                .or(file.max_upload_size)
                .unwrap_or(10 * 1024 * 1024 * 1024),
            upload_expiry: std::time::Duration::from_secs_f64(upload_expiry_hours * 3600.0),
            stable_after: std::time::Duration::from_secs_f64(stable_after),
            workers: self.workers.or(file.workers).unwrap_or(2),
            job_attempts: self.job_attempts.or(file.job_attempts).unwrap_or(5).max(1),
            isolate_jobs,
            job_memory_limit,
            ingest_durability,
            journal_size,
            pack_write_ahead,
            job_time_limit: std::time::Duration::from_secs_f64(job_time_limit),
            job_lease: std::time::Duration::from_secs_f64(job_lease),
            thumbnail_size,
            data_dir,
            dicom_port: self.dicom_port.or(file.dicom_port).unwrap_or(11112),
            http_port: self.http_port.or(file.http_port).unwrap_or(8080),
            bind: self.bind.or(file.bind).unwrap_or_else(|| "0.0.0.0".into()),
            catalog_url,
            archive_url,
            duplicate_policy,
            ae_title: self
                .ae_title
                .or(file.ae_title)
                .unwrap_or_else(|| "RADPORT".into()),
            log_format: self
                .log_format
                .or(file.log_format)
                .map(|f| f.parse())
                .transpose()?
                .unwrap_or_default(),
            max_associations: self
                .max_associations
                .or(file.max_associations)
                .unwrap_or(64),
            public_host,
            import_limits,
            viewer_dir,
        })
    }
}

/// The single sign-on settings as given (flag or environment, else file).
struct OidcFlags {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    display_name: Option<String>,
    username_claim: Option<String>,
    roles_claim: Option<String>,
    admin_group: Option<String>,
    group_prefix: Option<String>,
    audience: Option<String>,
    redirect_url: Option<String>,
}

/// Single sign-on is on when an issuer is given; the redirect URI defaults to this server's
/// public name and HTTP port (`https` with TLS).
fn resolve_oidc(
    flags: OidcFlags,
    public_host: &str,
    http_port: u16,
    https: bool,
) -> Result<Option<OidcSettings>> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let Some(issuer) = nonempty(flags.issuer) else {
        return Ok(None);
    };
    let client_id = nonempty(flags.client_id).unwrap_or_else(|| "radport".into());
    let scheme = if https { "https" } else { "http" };
    let host = if public_host.contains(':') && !public_host.starts_with('[') {
        format!("[{public_host}]")
    } else {
        public_host.to_string()
    };
    let settings = OidcSettings {
        audience: nonempty(flags.audience).unwrap_or_else(|| client_id.clone()),
        redirect_url: nonempty(flags.redirect_url)
            .unwrap_or_else(|| format!("{scheme}://{host}:{http_port}/api/oidc/callback")),
        issuer,
        client_id,
        client_secret: nonempty(flags.client_secret).map(Secret),
        display_name: nonempty(flags.display_name).unwrap_or_else(|| "single sign-on".into()),
        username_claim: nonempty(flags.username_claim)
            .unwrap_or_else(|| "preferred_username".into()),
        roles_claim: nonempty(flags.roles_claim).unwrap_or_else(|| "groups".into()),
        admin_group: nonempty(flags.admin_group).unwrap_or_else(|| "radport-admin".into()),
        // An empty prefix is allowed (groups named `<project>:<role>`).
        group_prefix: flags.group_prefix.unwrap_or_else(|| "radport:".into()),
    };
    // The URLs and the rest are checked as the provider is set up.
    radport_access::oidc::Oidc::new(settings.to_config()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(settings))
}

/// A setting in bytes (`parse_bytes`), if given; an error names the setting.
fn byte_setting(name: &str, text: Option<String>) -> Result<Option<u64>> {
    text.map(|text| {
        parse_bytes(&text).ok_or_else(|| {
            anyhow::anyhow!(
                "{name} must be a number of bytes, optionally with K, M or G (e.g. 4G), \
                 not {text:?}"
            )
        })
    })
    .transpose()
}

/// `4294967296`, `4G`, `512M`, `64MiB`, `100k` → bytes (binary multiples).
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let number: u64 = t[..digits].parse().ok()?;
    let shift = match t[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Whether a catalog URL names an in-memory SQLite database (`sqlite::memory:`,
/// `sqlite://` with no file, `mode=memory`).
fn is_in_memory(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("sqlite:") else {
        return false;
    };
    let rest = rest.trim_start_matches('/');
    let (db, params) = match rest.split_once('?') {
        Some((d, p)) => (d, Some(p)),
        None => (rest, None),
    };
    db.is_empty()
        || db == ":memory:"
        || params.is_some_and(|p| p.split('&').any(|kv| kv == "mode=memory"))
}

/// A duration written as a number and a unit — `ms`, `s`, `m`, `h` or `d` — such as `90s`,
/// `1.5h` or `0`; a bare number is seconds.
fn parse_duration(setting: &str, text: &str) -> Result<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => f64::NAN,
    };
    let seconds = number.parse::<f64>().map(|n| n * seconds_per_unit);
    match seconds {
        Ok(s) if (0.0..=365.0 * 86_400.0).contains(&s) => Ok(std::time::Duration::from_secs_f64(s)),
        _ => anyhow::bail!(
            "{setting} must be a duration such as 90s, 15m or 1h (at most 365d), not {text:?}"
        ),
    }
}

/// Addresses or networks, comma-separated (`10.0.0.5`, `10.1.0.0/24`, `::1`).
fn parse_networks(list: &str) -> anyhow::Result<Vec<ipnet::IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| anyhow::anyhow!("{n:?} is neither an address nor a network"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings of a configuration file holding `toml`, with no flags.
    fn resolve_file(toml: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("radport.toml");
        std::fs::write(&file, toml).unwrap();
        ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap()
    }

    #[test]
    fn collector_durations() {
        let s = ServeArgs::default().resolve().unwrap();
        assert_eq!(s.orphan_grace, std::time::Duration::from_secs(3600));
        assert_eq!(s.collect_interval, std::time::Duration::from_secs(3600));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("radport.toml");
        std::fs::write(&file, "orphan_grace = \"2h\"\ncollect_interval = \"90s\"\n").unwrap();
        let s = ServeArgs {
            config: Some(file),
            collect_interval: Some("0".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.orphan_grace, std::time::Duration::from_secs(7200));
        assert_eq!(s.collect_interval, std::time::Duration::ZERO);
        for (text, ms) in [
            ("500ms", 500),
            ("1.5m", 90_000),
            ("1d", 86_400_000),
            ("7", 7000),
        ] {
            assert_eq!(
                parse_duration("x", text).unwrap(),
                std::time::Duration::from_millis(ms),
                "{text}"
            );
        }
        for bad in ["", "h", "-1s", "1y", "1e3s", "400d", "1 2s"] {
            assert!(parse_duration("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_limits_and_isolation() {
        let s = ServeArgs::default().resolve().unwrap();
        assert!(s.isolate_jobs);
        assert_eq!(s.job_memory_limit, 4 << 30);
        assert_eq!(s.job_time_limit, std::time::Duration::from_secs(3600));
        assert_eq!(s.job_lease, std::time::Duration::from_secs(300));
        let s = ServeArgs {
            job_memory_limit: Some("96M".into()),
            job_lease: Some(1.5),
            isolate_jobs: Some(false),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.job_memory_limit, 96 << 20);
        assert_eq!(s.job_lease, std::time::Duration::from_millis(1500));
        assert!(!s.isolate_jobs);
        let s = ServeArgs {
            catalog_url: Some("sqlite::memory:".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(
            !s.isolate_jobs,
            "an in-memory catalog cannot be shared with a child"
        );
        assert!(ServeArgs {
            job_memory_limit: Some("lots".into()),
            ..Default::default()
        }
        .resolve()
        .is_err());
        assert_eq!(parse_bytes("4294967296"), Some(4 << 30));
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("0"), Some(0));
        assert_eq!(parse_bytes("99999999999G"), None);
        assert!(is_in_memory("sqlite://?mode=memory&cache=shared"));
        assert!(!is_in_memory("sqlite:///data/catalog.db"));
        assert!(!is_in_memory("postgres://db/radport"));
    }

    #[test]
    fn single_sign_on_is_off_without_an_issuer_and_has_defaults_with_one() {
        assert_eq!(ServeArgs::default().resolve().unwrap().oidc, None);
        let s = ServeArgs {
            oidc_issuer: Some("http://127.0.0.1:9000".into()),
            public_host: Some("pacs.example.org".into()),
            http_port: Some(8443),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let o = s.oidc.expect("on");
        assert_eq!(
            (o.client_id.as_str(), o.audience.as_str(), o.client_secret),
            ("radport", "radport", None)
        );
        assert_eq!(
            o.redirect_url,
            "http://pacs.example.org:8443/api/oidc/callback"
        );
        assert_eq!(
            (
                o.display_name.as_str(),
                o.username_claim.as_str(),
                o.roles_claim.as_str(),
                o.admin_group.as_str(),
                o.group_prefix.as_str()
            ),
            (
                "single sign-on",
                "preferred_username",
                "groups",
                "radport-admin",
                "radport:"
            )
        );
        // A provider reached in clear over the network is refused.
        let e = ServeArgs {
            oidc_issuer: Some("http://sso.example.org".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("radport.toml");
        std::fs::write(
            &file,
            "dicom_port = 4242\nhttp_port = 9999\nduplicate_policy = \"overwrite\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            http_port: Some(7000),
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert_eq!(s.http_port, 7000, "flag wins over file");
        assert_eq!(s.dicom_port, 4242, "file wins over default");
        assert_eq!(s.duplicate_policy, DuplicatePolicy::Overwrite);
        assert!(s.catalog_url.starts_with("sqlite://"));
        assert!(s.catalog_url.ends_with("radport-data/catalog.db"));
        assert_eq!(s.archive_url, None, "default: the local archive directory");
        assert_eq!(
            s.viewer_dir,
            std::env::current_dir().unwrap().join("viewer"),
            "default: viewer/ in the working directory"
        );
    }

    #[test]
    fn archive_url_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("radport.toml");
        std::fs::write(&file, "archive_url = \"s3://from-file/p\"\n").unwrap();
        let s = ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.archive_url.as_deref(), Some("s3://from-file/p"));
        let s = ServeArgs {
            config: Some(file),
            archive_url: Some("s3://from-flag".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.archive_url.as_deref(), Some("s3://from-flag"));
    }

    #[test]
    fn http_and_upload_limits_have_defaults_and_are_checked() {
        let s = ServeArgs::default().resolve().unwrap();
        assert_eq!(s.http_header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(s.http_body_timeout, std::time::Duration::from_secs(60));
        assert_eq!(s.http_max_connections, 4096);
        assert_eq!(s.http_max_json_body, 1 << 20);
        assert_eq!(s.download_reads, 16);
        assert_eq!(s.max_upload_total, 100 << 30);
        assert_eq!(
            s.upload_retention,
            std::time::Duration::from_secs(7 * 86_400)
        );
        let s = resolve_file(
            "upload_retention_days = 0\nmax_upload_total = 5000\nhttp_header_timeout = 2.5\n",
        );
        assert!(s.upload_retention.is_zero(), "0 keeps uploads");
        assert_eq!(s.max_upload_total, 5000);
        assert_eq!(
            s.http_header_timeout,
            std::time::Duration::from_millis(2500)
        );
        for bad in [
            ServeArgs {
                http_header_timeout: Some(0.0),
                ..Default::default()
            },
            ServeArgs {
                upload_retention_days: Some(-1.0),
                ..Default::default()
            },
            ServeArgs {
                http_max_connections: Some(0),
                ..Default::default()
            },
        ] {
            assert!(bad.resolve().is_err());
        }
    }

    #[test]
    fn import_limits_from_flags_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("radport.toml");
        std::fs::write(
            &file,
            "import_max_entries = 500\nimport_max_voxels = 1000\n",
        )
        .unwrap();
        let s = ServeArgs {
            config: Some(file.clone()),
            import_max_voxels: Some(2000),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let l = s.import_limits;
        assert_eq!(l.max_entries, 500);
        assert_eq!(l.convert.max_voxels, 2000, "flag wins over file");
        let d = radport_workflows::ImportLimits::default();
        assert_eq!(l.max_ratio, d.max_ratio);
        assert_eq!(l.convert.max_seg_frames, d.convert.max_seg_frames);
        let e = ServeArgs {
            import_max_ratio: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("import_max_"), "{e}");
    }

    #[test]
    fn settings_survive_their_toml_form() {
        let s = ServeArgs::default().resolve().unwrap();
        let again = Settings::from_toml(&s.to_toml().unwrap()).unwrap();
        assert_eq!(format!("{again:?}"), format!("{s:?}"));

        // Every setting away from its default, as an isolated job's child must see it.
        let s = resolve_file(
            r#"
data_dir = "/srv/radport"
dicom_port = 4242
http_port = 9999
bind = "127.0.0.2"
catalog_url = "postgres://u:p@db/radport"
archive_url = "s3://bucket/prefix?endpoint=http://s3:9000"
duplicate_policy = "overwrite-if-different"
ae_title = "HOSPITAL"
log_format = "json"
max_associations = 7
max_pdu = 65536
max_associate_rq = 4096
max_associations_per_peer = 3
max_pending_connections = 9
max_retrieves = 4
artim_timeout = 2.5
dicom_idle_timeout = 30
public_host = "pacs.example.org"
stable_after = 4
workers = 3
job_attempts = 2
isolate_jobs = false
job_memory_limit = "512M"
ingest_durability = "packs"
journal_size = "64M"
job_time_limit = 120
job_lease = 20
thumbnail_size = 128
max_upload_size = 1048576
upload_expiry_hours = 2
import_max_entries = 11
import_max_entry_bytes = 12
import_max_total_bytes = 13
import_max_ratio = 14
import_max_json_bytes = 15
import_max_voxels = 16
import_max_volume_bytes = 17
import_max_segments = 18
orphan_grace = "2h"
collect_interval = "90s"
upload_retention_days = 3
max_upload_total = 1073741824
http_header_timeout = 5
http_body_timeout = 6
http_max_connections = 100
http_max_json_body = 2048
download_reads = 4
access = "enforced"
admin_password = "initial admin password"
admin_token = "rpt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
allowed_hosts = "pacs.example.org,radport.internal"
proxy_protocol_from = "10.0.0.5,10.1.0.0/24"
tls_cert = "/etc/radport/cert.pem"
tls_key = "/etc/radport/key.pem"
oidc_issuer = "https://sso.example.org/realms/hospital"
oidc_client_id = "pacs"
oidc_client_secret = "the client secret"
oidc_display_name = "Hospital SSO"
oidc_username_claim = "email_local"
oidc_roles_claim = "realm_access.roles"
oidc_admin_group = "pacs-admins"
oidc_group_prefix = "pacs/"
oidc_audience = "pacs-api"
oidc_redirect_url = "https://pacs.example.org/api/oidc/callback"
viewer_dir = "/opt/radport/viewer"
"#,
        );
        let text = s.to_toml().unwrap();
        let again = Settings::from_toml(&text).unwrap();
        assert_eq!(format!("{again:?}"), format!("{s:?}"));
        assert_eq!(again.import_limits.convert.max_segments, 18);
        assert_eq!(again.max_associate_rq, 4096);
        assert_eq!(again.viewer_dir, Path::new("/opt/radport/viewer"));
        assert_eq!(again.access, radport_access::Mode::Enforced);
        assert_eq!(
            again.allowed_hosts,
            ["pacs.example.org", "radport.internal"]
        );
        assert_eq!(
            again.proxy_protocol_from,
            [
                "10.0.0.5/32".parse::<ipnet::IpNet>().unwrap(),
                "10.1.0.0/24".parse().unwrap()
            ]
        );
        // Secrets print as `Secret(…)`: compared here.
        assert_eq!(
            again.admin_password.as_ref().map(|s| s.0.as_str()),
            Some("initial admin password")
        );
        assert_eq!(again.admin_token, s.admin_token);
        assert!(!format!("{again:?}").contains("initial admin password"));
        assert_eq!(again.oidc, s.oidc);
        let oidc = again.oidc.expect("single sign-on");
        assert_eq!(oidc.group_prefix, "pacs/");
        assert_eq!(oidc.client_secret, Some(Secret("the client secret".into())));
        assert!(!format!("{oidc:?}").contains("the client secret"));
    }

    #[test]
    fn dicom_limits_have_defaults_and_are_checked() {
        let s = ServeArgs::default().resolve().unwrap();
        assert_eq!(s.max_pdu, 262_144);
        assert_eq!(s.max_associate_rq, 128 * 1024);
        assert_eq!(s.max_associations_per_peer, 32);
        assert_eq!(s.max_pending_connections, 128);
        assert_eq!(s.artim_timeout, std::time::Duration::from_secs(10));
        assert_eq!(s.dicom_idle_timeout, std::time::Duration::from_secs(120));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("radport.toml");
        std::fs::write(
            &file,
            "artim_timeout = 2.5\nmax_pending_connections = 9\nmax_associations_per_peer = 3\n\
             max_associate_rq = 4096\n",
        )
        .unwrap();
        let s = ServeArgs {
            config: Some(file),
            dicom_idle_timeout: Some(0.5),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.artim_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(s.dicom_idle_timeout, std::time::Duration::from_millis(500));
        assert_eq!(s.max_pending_connections, 9);
        assert_eq!(s.max_associations_per_peer, 3);
        assert_eq!(s.max_associate_rq, 4096);

        for bad in [
            ServeArgs {
                max_associate_rq: Some(512),
                ..Default::default()
            },
            ServeArgs {
                max_pdu: Some(100),
                ..Default::default()
            },
            ServeArgs {
                artim_timeout: Some(0.0),
                ..Default::default()
            },
            ServeArgs {
                dicom_idle_timeout: Some(f64::NAN),
                ..Default::default()
            },
            ServeArgs {
                max_associations_per_peer: Some(0),
                ..Default::default()
            },
            ServeArgs {
                proxy_protocol_from: Some("10.0.0.5,balancer".into()),
                ..Default::default()
            },
            ServeArgs {
                proxy_protocol_from: Some("10.0.0.0/33".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.resolve().is_err());
        }
    }

    #[test]
    fn unknown_keys_and_policies_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("radport.toml");
        std::fs::write(&file, "dicom_prot = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("dicom_prot"), "{err:#}");
        let err = ServeArgs {
            duplicate_policy: Some("sometimes".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("sometimes"));
    }
}
