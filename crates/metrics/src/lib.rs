//! radport's operational figures, served as `GET /metrics` in the OpenMetrics text format that
//! Prometheus scrapes: instances received and their bytes, C-STORE latency by outcome,
//! associations open, job queue depth and age, job durations, upload bytes, catalog and
//! archive errors, and what durable ingest into packs spends its time on.
//!
//! One process-wide set ([`global`]), recorded where the thing happens (`ingest` counts
//! instances, `dimse` associations and C-STORE latency, `pipeline` jobs, `http` upload bytes,
//! `catalog` and `archive` their own errors) and rendered by [`Metrics::render`]. The queue's
//! figures are not events: the HTTP handler reads them from the catalog at each scrape and sets
//! them with [`Metrics::set_job_queue`]. Nor are the pack log's: it keeps its own totals, read
//! at each scrape through the source the server gives [`Metrics::set_pack_source`]. Every node
//! counts what *it* did; the queue is shared, so every node reports the same queue (sum the
//! counters across nodes, not the queue).
//!
//! Labels take only values from fixed sets (`&'static str` from an enum's name), never a
//! value a client sent, so the number of series stays bounded. The counters live on
//! [`prometheus_client`]'s atomics: recording is a few atomic additions, no lock on the hot
//! path except a family's map lookup (a read lock).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the C-STORE latency buckets: 0.25 ms to about 16 s, doubling.
fn c_store_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_25, 2.0, 17)
}

/// Upper bounds (seconds) of the job duration buckets: 10 ms to about 11 min, doubling.
fn job_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 17)
}

/// How an instance arrived (the first part of its recorded `source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A C-STORE on the DICOM port.
    Dimse,
    /// A STOW-RS request.
    Stow,
    /// An import workflow (zip of DICOM, NIfTI conversion).
    Import,
    /// Anything else (tests, tools).
    Other,
}

impl Channel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Dimse => "dimse",
            Channel::Stow => "stow",
            Channel::Import => "import",
            Channel::Other => "other",
        }
    }
}

/// How a C-STORE was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOutcome {
    /// Status 0x0000.
    Success,
    /// A warning status (0x0001, 0xB000–0xBFFF): stored.
    Warning,
    /// A failure status: not stored.
    Failure,
}

impl StoreOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOutcome::Success => "success",
            StoreOutcome::Warning => "warning",
            StoreOutcome::Failure => "failure",
        }
    }
}

/// How an attempt of a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    /// It did its work.
    Succeeded,
    /// It failed (retried later, or failed for good).
    Failed,
    /// Its lease was taken over by another worker: abandoned here.
    Abandoned,
}

impl JobOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Abandoned => "abandoned",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceivedLabels {
    channel: &'static str,
    disposition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    channel: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What the pack log (durable ingest into packs) has done since it was opened: its own
/// totals, read at each scrape ([`Metrics::set_pack_source`]). Divided by each other they say
/// where an instance's answer waits: instances per sync, and per group the write and the sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackFigures {
    /// Records made durable.
    pub records: u64,
    /// `fdatasync` calls for them.
    pub syncs: u64,
    /// Groups written (the records waiting when a writer took them).
    pub groups: u64,
    /// How long records waited for a writer, in all.
    pub queued: Duration,
    /// How long the groups' writes took, in all.
    pub writing: Duration,
    /// How long the groups' syncs took, in all.
    pub syncing: Duration,
    /// Bytes of records written while they arrived.
    pub written_while_arriving: u64,
}

impl PackFigures {
    /// The counts, in [`PACK_COUNTS`]' order.
    fn counts(&self) -> [u64; 4] {
        [
            self.records,
            self.syncs,
            self.groups,
            self.written_while_arriving,
        ]
    }

    /// The times, in [`PACK_TIMES`]' order.
    fn times(&self) -> [Duration; 3] {
        [self.queued, self.writing, self.syncing]
    }
}

/// The pack log's counts as registered: name, help, unit (`None`: a plain count).
const PACK_COUNTS: [(&str, &str, Option<Unit>); 4] = [
    (
        "pack_records",
        "Instances' records made durable in packs",
        None,
    ),
    (
        "pack_syncs",
        "fdatasync calls of the pack log (records per sync: how much one sync covers)",
        None,
    ),
    (
        "pack_groups",
        "Groups of records written by the pack log (the records waiting when a writer took \
         them)",
        None,
    ),
    (
        "pack_written_while_arriving",
        "Bytes of records written while their instances arrived",
        Some(Unit::Bytes),
    ),
];

/// The pack log's times as registered (in seconds): name, help.
const PACK_TIMES: [(&str, &str); 3] = [
    (
        "pack_queue",
        "Time records waited for the pack log's writer, in all",
    ),
    (
        "pack_write",
        "Time the pack log's groups took to write, in all",
    ),
    ("pack_sync", "Time the pack log's syncs took, in all"),
];

/// Reads the pack log's figures at a scrape; `None` once the log is closed.
type PackSource = Box<dyn Fn() -> Option<PackFigures> + Send + Sync>;

/// The pack log's counters, and the figures they were last brought up to.
struct PackCounters {
    counts: [Counter; 4],
    times: [Counter<f64, AtomicU64>; 3],
    source: Mutex<Option<(PackSource, PackFigures)>>,
}

impl PackCounters {
    fn register(registry: &mut Registry) -> PackCounters {
        let counters = PackCounters {
            counts: Default::default(),
            times: Default::default(),
            source: Mutex::new(None),
        };
        for ((name, help, unit), counter) in PACK_COUNTS.into_iter().zip(&counters.counts) {
            match unit {
                Some(unit) => registry.register_with_unit(name, help, unit, counter.clone()),
                None => registry.register(name, help, counter.clone()),
            }
        }
        for ((name, help), counter) in PACK_TIMES.into_iter().zip(&counters.times) {
            registry.register_with_unit(name, help, Unit::Seconds, counter.clone());
        }
        counters
    }

    /// Brings the counters up to what the source says now (they only move forward).
    fn refresh(&self) {
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        let Some((read, seen)) = source.as_mut() else {
            return;
        };
        let Some(now) = read() else {
            return;
        };
        for ((counter, now), seen) in self.counts.iter().zip(now.counts()).zip(seen.counts()) {
            counter.inc_by(now.saturating_sub(seen));
        }
        for ((counter, now), seen) in self.times.iter().zip(now.times()).zip(seen.times()) {
            counter.inc_by(now.saturating_sub(seen).as_secs_f64());
        }
        *seen = now;
    }
}

/// The process's figures. Use [`global`].
pub struct Metrics {
    registry: Registry,
    instances_received: Family<ReceivedLabels, Counter>,
    received_bytes: Family<ChannelLabels, Counter>,
    instances_refused: Family<RefusedLabels, Counter>,
    c_store_duration: HistogramFamily<OutcomeLabels>,
    associations_open: Gauge,
    associations: Counter,
    job_queue_depth: Family<QueueLabels, Gauge>,
    job_queue_oldest: Family<KindLabels, Gauge<f64, AtomicU64>>,
    job_duration: HistogramFamily<JobLabels>,
    upload_bytes: Counter,
    catalog_errors: Family<KindLabels, Counter>,
    archive_errors: Family<KindLabels, Counter>,
    packs: PackCounters,
    /// Set in a job's child process: its counters are also tallied for the parent.
    tallying: AtomicBool,
    tally: Mutex<BTreeMap<TallyKey, u64>>,
}

/// A counter a child process reports to its parent: (what, label, label).
type TallyKey = (&'static str, &'static str, &'static str);

/// The start of the line a job's child process writes to its stderr as it ends, with the
/// counters it changed; the server adds them to its own ([`Metrics::merge_child_report`]).
pub const CHILD_REPORT_PREFIX: &str = "radport-figures:";

/// The label values each reported counter may carry (anything else in a report is ignored).
const CHANNELS: &[&str] = &["dimse", "stow", "import", "other"];
const DISPOSITIONS: &[&str] = &["stored", "duplicate_kept", "replaced"];
const REFUSAL_REASONS: &[&str] = &[
    "out_of_space",
    "malformed",
    "unknown_project",
    "storage",
    "catalog",
];
const CATALOG_ERROR_KINDS: &[&str] = &["transient", "constraint", "connection", "other"];
const ARCHIVE_ERROR_KINDS: &[&str] = &["out_of_space", "storage"];

fn known(value: &str, set: &[&'static str]) -> Option<&'static str> {
    set.iter().copied().find(|v| *v == value)
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The figures of this process.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    /// A fresh set, registered under the prefix `radport`. (Tests make their own; the server
    /// uses [`global`].)
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("radport");
        let instances_received = Family::<ReceivedLabels, Counter>::default();
        registry.register(
            "instances_received",
            "Instances stored and recorded, by channel and by what the catalog did \
             (stored, duplicate_kept, replaced)",
            instances_received.clone(),
        );
        let received_bytes = Family::<ChannelLabels, Counter>::default();
        registry.register_with_unit(
            "received",
            "Bytes of the instances stored and recorded (Part-10 files as stored), by channel",
            Unit::Bytes,
            received_bytes.clone(),
        );
        let instances_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "instances_refused",
            "Instances that arrived and were not stored, by channel and reason",
            instances_refused.clone(),
        );
        let c_store_duration: HistogramFamily<OutcomeLabels> =
            Family::new_with_constructor(|| Histogram::new(c_store_buckets()));
        registry.register_with_unit(
            "c_store_duration",
            "From a C-STORE-RQ's command to its response being sent, by outcome",
            Unit::Seconds,
            c_store_duration.clone(),
        );
        let associations_open = Gauge::default();
        registry.register(
            "associations_open",
            "DICOM associations holding a slot now (both ports)",
            associations_open.clone(),
        );
        let associations = Counter::default();
        registry.register(
            "associations",
            "DICOM associations accepted since the start",
            associations.clone(),
        );
        let job_queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "job_queue_depth",
            "Jobs queued or running in the shared queue, by kind and state (the same on \
             every node)",
            job_queue_depth.clone(),
        );
        let job_queue_oldest = Family::<KindLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "job_queue_oldest_age",
            "Age of the oldest queued job, by kind (0 when none is queued)",
            Unit::Seconds,
            job_queue_oldest.clone(),
        );
        let job_duration: HistogramFamily<JobLabels> =
            Family::new_with_constructor(|| Histogram::new(job_buckets()));
        registry.register_with_unit(
            "job_duration",
            "Attempts of jobs run by this node, by kind and outcome",
            Unit::Seconds,
            job_duration.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register_with_unit(
            "upload",
            "Bytes received in upload chunks (tus PATCH bodies) and kept",
            Unit::Bytes,
            upload_bytes.clone(),
        );
        let catalog_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "catalog_errors",
            "Database errors of catalog operations, by kind (transient: busy, locked, \
             serialization; constraint: a uniqueness or foreign key check; connection: the \
             database could not be reached; other)",
            catalog_errors.clone(),
        );
        let archive_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "archive_errors",
            "Failed archive operations, by kind (out_of_space, storage)",
            archive_errors.clone(),
        );
        let packs = PackCounters::register(&mut registry);
        Metrics {
            registry,
            packs,
            instances_received,
            received_bytes,
            instances_refused,
            c_store_duration,
            associations_open,
            associations,
            job_queue_depth,
            job_queue_oldest,
            job_duration,
            upload_bytes,
            catalog_errors,
            archive_errors,
            tallying: AtomicBool::new(false),
            tally: Mutex::new(BTreeMap::new()),
        }
    }

    /// In a job's child process: keep what is counted from now on for
    /// [`Metrics::child_report`].
    pub fn tally_for_parent(&self) {
        self.tallying.store(true, Ordering::SeqCst);
    }

    fn tally(&self, key: TallyKey, by: u64) {
        if self.tallying.load(Ordering::Relaxed) {
            let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            *tally.entry(key).or_default() += by;
        }
    }

    /// The line a child process writes for its parent (None: nothing was counted).
    pub fn child_report(&self) -> Option<String> {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        if tally.is_empty() {
            return None;
        }
        let entries: Vec<String> = tally
            .iter()
            .map(|((what, a, b), n)| format!("{what} {a} {b} {n}"))
            .collect();
        Some(format!("{CHILD_REPORT_PREFIX} {}", entries.join("; ")))
    }

    /// Adds a child's [`Metrics::child_report`] line to these figures; false if `line` is
    /// not one. Entries with unknown names or labels are skipped.
    pub fn merge_child_report(&self, line: &str) -> bool {
        let Some(report) = line.trim().strip_prefix(CHILD_REPORT_PREFIX) else {
            return false;
        };
        for entry in report.split(';') {
            let parts: Vec<&str> = entry.split_whitespace().collect();
            let [what, a, b, n] = parts[..] else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else {
                continue;
            };
            match what {
                "received" => {
                    if let (Some(channel), Some(disposition)) =
                        (known(a, CHANNELS), known(b, DISPOSITIONS))
                    {
                        self.instances_received
                            .get_or_create(&ReceivedLabels {
                                channel,
                                disposition,
                            })
                            .inc_by(n);
                    }
                }
                "received_bytes" => {
                    if let Some(channel) = known(a, CHANNELS) {
                        self.received_bytes
                            .get_or_create(&ChannelLabels { channel })
                            .inc_by(n);
                    }
                }
                "refused" => {
                    if let (Some(channel), Some(reason)) =
                        (known(a, CHANNELS), known(b, REFUSAL_REASONS))
                    {
                        self.instances_refused
                            .get_or_create(&RefusedLabels { channel, reason })
                            .inc_by(n);
                    }
                }
                "catalog_error" => {
                    if let Some(kind) = known(a, CATALOG_ERROR_KINDS) {
                        self.catalog_errors
                            .get_or_create(&KindLabels { kind })
                            .inc_by(n);
                    }
                }
                "archive_error" => {
                    if let Some(kind) = known(a, ARCHIVE_ERROR_KINDS) {
                        self.archive_errors
                            .get_or_create(&KindLabels { kind })
                            .inc_by(n);
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// An instance stored and recorded: `disposition` says what the catalog did with it.
    pub fn instance_received(&self, channel: Channel, disposition: &'static str, bytes: u64) {
        self.instances_received
            .get_or_create(&ReceivedLabels {
                channel: channel.as_str(),
                disposition,
            })
            .inc();
        self.received_bytes
            .get_or_create(&ChannelLabels {
                channel: channel.as_str(),
            })
            .inc_by(bytes);
        self.tally(("received", channel.as_str(), disposition), 1);
        self.tally(("received_bytes", channel.as_str(), "-"), bytes);
    }

    /// An instance that arrived and was not stored, and why (`malformed`, `out_of_space`, …).
    pub fn instance_refused(&self, channel: Channel, reason: &'static str) {
        self.instances_refused
            .get_or_create(&RefusedLabels {
                channel: channel.as_str(),
                reason,
            })
            .inc();
        self.tally(("refused", channel.as_str(), reason), 1);
    }

    /// A C-STORE answered, `elapsed` after its command arrived.
    pub fn c_store_answered(&self, outcome: StoreOutcome, elapsed: Duration) {
        self.c_store_duration
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// An association took a slot; it is counted open until the guard is dropped.
    pub fn association_opened(&'static self) -> OpenAssociation {
        self.associations.inc();
        self.associations_open.inc();
        OpenAssociation { metrics: self }
    }

    /// The shared queue as the catalog has it now: `(kind, state, jobs)` for every kind and
    /// state to show (absent ones are shown as 0 by passing them with 0), and the age of each
    /// kind's oldest queued job.
    pub fn set_job_queue(
        &self,
        depth: &[(&'static str, &'static str, i64)],
        oldest: &[(&'static str, Duration)],
    ) {
        for &(kind, state, jobs) in depth {
            self.job_queue_depth
                .get_or_create(&QueueLabels { kind, state })
                .set(jobs);
        }
        for &(kind, age) in oldest {
            self.job_queue_oldest
                .get_or_create(&KindLabels { kind })
                .set(age.as_secs_f64());
        }
    }

    /// An attempt of a job of `kind` ended after `elapsed`.
    pub fn job_finished(&self, kind: &'static str, outcome: JobOutcome, elapsed: Duration) {
        self.job_duration
            .get_or_create(&JobLabels {
                kind,
                outcome: outcome.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Bytes of an upload chunk kept.
    pub fn upload_received(&self, bytes: u64) {
        self.upload_bytes.inc_by(bytes);
    }

    /// A database error in a catalog operation (`transient`, `constraint`, `connection`,
    /// `other`).
    pub fn catalog_error(&self, kind: &'static str) {
        self.catalog_errors
            .get_or_create(&KindLabels { kind })
            .inc();
        self.tally(("catalog_error", kind, "-"), 1);
    }

    /// A failed archive operation (`out_of_space`, `storage`).
    pub fn archive_error(&self, kind: &'static str) {
        self.archive_errors
            .get_or_create(&KindLabels { kind })
            .inc();
        self.tally(("archive_error", kind, "-"), 1);
    }

    /// Where the pack log's figures are read at each scrape (the server's log, once it is
    /// open); replaces an earlier source. The counters go on from what they showed.
    pub fn set_pack_source(
        &self,
        source: impl Fn() -> Option<PackFigures> + Send + Sync + 'static,
    ) {
        let seen = source().unwrap_or_default();
        *self.packs.source.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Box::new(source), seen));
    }

    /// Everything, in the OpenMetrics text format (ends with `# EOF`).
    pub fn render(&self) -> String {
        self.packs.refresh();
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug of ours.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            text = format!("# the figures could not be written: {e}\n# EOF\n");
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// An association counted as open; dropped when it ends (however it ends).
pub struct OpenAssociation {
    metrics: &'static Metrics,
}

impl Drop for OpenAssociation {
    fn drop(&mut self) {
        self.metrics.associations_open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(text: &str, line_start: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .unwrap_or_else(|| panic!("no {line_start:?} in\n{text}"))
            .trim()
            .parse()
            .expect("a number")
    }

    #[test]
    fn recorded_figures_are_rendered_with_their_labels() {
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        m.instance_received(Channel::Dimse, "stored", 1000);
        m.instance_received(Channel::Dimse, "stored", 500);
        m.instance_received(Channel::Stow, "duplicate_kept", 10);
        m.instance_refused(Channel::Dimse, "malformed");
        m.c_store_answered(StoreOutcome::Success, Duration::from_millis(3));
        m.c_store_answered(StoreOutcome::Failure, Duration::from_secs(100));
        let open = m.association_opened();
        let _second = m.association_opened();
        drop(open);
        m.set_job_queue(
            &[("thumbnail", "queued", 7), ("thumbnail", "running", 1)],
            &[("thumbnail", Duration::from_millis(2500))],
        );
        m.job_finished("validate", JobOutcome::Failed, Duration::from_millis(20));
        m.upload_received(4096);
        m.catalog_error("transient");
        m.archive_error("out_of_space");
        let text = m.render();
        let v = |s: &str| value_of(&text, s);
        assert_eq!(
            v("radport_instances_received_total{channel=\"dimse\",disposition=\"stored\"}"),
            2.0
        );
        assert_eq!(
            v("radport_instances_received_total{channel=\"stow\",disposition=\"duplicate_kept\"}"),
            1.0
        );
        assert_eq!(v("radport_received_bytes_total{channel=\"dimse\"}"), 1500.0);
        assert_eq!(
            v("radport_instances_refused_total{channel=\"dimse\",reason=\"malformed\"}"),
            1.0
        );
        // 3 ms: not in the 2 ms bucket, in the 4 ms one; 100 s only in +Inf.
        assert_eq!(
            v("radport_c_store_duration_seconds_bucket{le=\"0.002\",outcome=\"success\"}"),
            0.0
        );
        assert_eq!(
            v("radport_c_store_duration_seconds_bucket{le=\"0.004\",outcome=\"success\"}"),
            1.0
        );
        assert_eq!(
            v("radport_c_store_duration_seconds_bucket{le=\"+Inf\",outcome=\"failure\"}"),
            1.0
        );
        assert_eq!(
            v("radport_c_store_duration_seconds_count{outcome=\"failure\"}"),
            1.0
        );
        assert_eq!(v("radport_associations_open "), 1.0);
        assert_eq!(v("radport_associations_total "), 2.0);
        assert_eq!(
            v("radport_job_queue_depth{kind=\"thumbnail\",state=\"queued\"}"),
            7.0
        );
        assert_eq!(
            v("radport_job_queue_oldest_age_seconds{kind=\"thumbnail\"}"),
            2.5
        );
        assert_eq!(
            v("radport_job_duration_seconds_count{kind=\"validate\",outcome=\"failed\"}"),
            1.0
        );
        assert_eq!(v("radport_upload_bytes_total "), 4096.0);
        assert_eq!(v("radport_catalog_errors_total{kind=\"transient\"}"), 1.0);
        assert_eq!(
            v("radport_archive_errors_total{kind=\"out_of_space\"}"),
            1.0
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_pack_logs_figures_are_read_at_each_scrape_and_only_move_forward() {
        let m = Metrics::new();
        let text = m.render();
        assert_eq!(value_of(&text, "radport_pack_records_total "), 0.0);
        let figures = std::sync::Arc::new(Mutex::new(Some(PackFigures {
            records: 100,
            syncs: 10,
            ..PackFigures::default()
        })));
        let read = figures.clone();
        m.set_pack_source(move || *read.lock().unwrap());
        // What the log did before it was watched is not counted as new.
        assert_eq!(value_of(&m.render(), "radport_pack_records_total "), 0.0);
        *figures.lock().unwrap() = Some(PackFigures {
            records: 130,
            syncs: 20,
            groups: 18,
            queued: Duration::from_millis(12),
            writing: Duration::from_millis(9),
            syncing: Duration::from_millis(3),
            written_while_arriving: 1 << 20,
        });
        let text = m.render();
        let v = |s: &str| value_of(&text, s);
        assert_eq!(v("radport_pack_records_total "), 30.0);
        assert_eq!(v("radport_pack_syncs_total "), 10.0);
        assert_eq!(v("radport_pack_groups_total "), 18.0);
        assert!((v("radport_pack_queue_seconds_total ") - 0.012).abs() < 1e-9);
        assert!((v("radport_pack_write_seconds_total ") - 0.009).abs() < 1e-9);
        assert!((v("radport_pack_sync_seconds_total ") - 0.003).abs() < 1e-9);
        assert_eq!(
            v("radport_pack_written_while_arriving_bytes_total "),
            (1 << 20) as f64
        );
        // A closed log, or one whose figures went back (another log): nothing moves back.
        *figures.lock().unwrap() = None;
        assert_eq!(value_of(&m.render(), "radport_pack_records_total "), 30.0);
        *figures.lock().unwrap() = Some(PackFigures::default());
        assert_eq!(value_of(&m.render(), "radport_pack_records_total "), 30.0);
    }

    #[test]
    fn a_child_report_adds_what_the_child_counted_to_the_parent() {
        let child = Metrics::new();
        child.instance_received(Channel::Import, "stored", 100);
        assert_eq!(
            child.child_report(),
            None,
            "nothing tallied before it is asked for"
        );
        child.tally_for_parent();
        child.instance_received(Channel::Import, "stored", 1000);
        child.instance_received(Channel::Import, "stored", 24);
        child.instance_refused(Channel::Import, "malformed");
        child.catalog_error("transient");
        child.archive_error("storage");
        let report = child.child_report().expect("a report");
        let parent = Metrics::new();
        parent.instance_received(Channel::Import, "stored", 1);
        assert!(parent.merge_child_report(&report));
        assert!(!parent.merge_child_report("2026-12-03T10:00:00Z INFO something"));
        // Unknown names and labels (a line from a newer or a hostile child) are skipped.
        assert!(parent.merge_child_report(
            "radport-figures: received import bogus 5; launched x y 1; refused import malformed x"
        ));
        let text = parent.render();
        let v = |s: &str| value_of(&text, s);
        assert_eq!(
            v("radport_instances_received_total{channel=\"import\",disposition=\"stored\"}"),
            3.0
        );
        assert_eq!(
            v("radport_received_bytes_total{channel=\"import\"}"),
            1025.0
        );
        assert_eq!(
            v("radport_instances_refused_total{channel=\"import\",reason=\"malformed\"}"),
            1.0
        );
        assert_eq!(v("radport_catalog_errors_total{kind=\"transient\"}"), 1.0);
        assert_eq!(v("radport_archive_errors_total{kind=\"storage\"}"), 1.0);
        assert!(!text.contains("bogus"), "{text}");
    }
}
