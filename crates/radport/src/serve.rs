//! `radport serve`: opens the catalog and the archive, then runs the DICOM receiver and the
//! HTTP API side by side until Ctrl-C / SIGTERM.

use anyhow::{Context, Result};
use radport_archive::Archive;
use radport_catalog::Catalog;
use radport_dimse::ReceiverConfig;
use radport_ingest::Ingestor;

use crate::config::{ServeArgs, Settings};

/// How long a shutdown waits for the ingest journal or packs to be settled (a checkpoint,
/// which waits for every acknowledged instance to be recorded in the catalog).
const SETTLE_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn run(args: ServeArgs) -> Result<()> {
    // The settings first (resolving them logs nothing): they say how to log.
    let settings = args.resolve()?;
    crate::logging::init(settings.log_format, false);
    // Before the threads that serve thousands of connections allocate (see the function).
    radport_http::server::tune_malloc();
    radport_archive::create_dir_all_durably(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let catalog = Catalog::connect(&settings.catalog_url)
        .await
        .with_context(|| {
            format!(
                "cannot open the catalog at {}",
                without_password(&settings.catalog_url)
            )
        })?;
    // Before anything listens: a fresh catalog gets its administrator.
    crate::accounts::bootstrap(&settings, &catalog).await?;
    // The audit trail's copy for a syslog collector, then the first event of this process.
    if let Some(target) = &settings.audit_syslog {
        let source = radport_audit::AuditSource {
            source_id: settings.audit_source_id.clone(),
            host: settings.public_host.clone(),
            ae_title: settings.ae_title.clone(),
        };
        let exporter = radport_audit::SyslogExporter::start(
            target.clone(),
            source,
            settings.audit_syslog_ca.as_deref(),
        )
        .context("cannot export the audit trail")?;
        catalog.set_audit_sink(exporter);
        tracing::info!(%target, "the audit trail is exported to syslog");
    }
    record_application_event(&catalog, radport_audit::message::APPLICATION_START_ACTION).await;
    // The default is the local directory; an S3 bucket is checked (list, write, delete) before
    // anything listens, so a server that could not store says why and stops.
    let archive = match &settings.archive_url {
        None => Archive::local(&settings.data_dir.join("archive"))
            .context("cannot open the archive directory")?,
        Some(url) => Archive::from_url(url)
            .await
            .context("cannot open the archive (--archive-url)")?,
    };
    let ingestor = Ingestor::new(archive.clone(), catalog.clone(), settings.duplicate_policy);
    let ingestor = open_journal(&settings, ingestor).await?;
    let workflows =
        radport_workflows::Workflows::new(ingestor.clone(), settings.data_dir.join("scratch"))
            .with_limits(settings.import_limits);
    // Before any import can run: what is in the scratch area now was left by a dead process.
    let scratch = crate::collect::claim_scratch(&settings);

    let dicom_addr = format!("{}:{}", settings.bind, settings.dicom_port);
    let http_addr = format!("{}:{}", settings.bind, settings.http_port);
    let dicom_listener = tokio::net::TcpListener::bind(&dicom_addr)
        .await
        .with_context(|| format!("cannot listen for DICOM on {dicom_addr}"))?;
    let http_listener = tokio::net::TcpListener::bind(&http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;

    let receiver_config = ReceiverConfig {
        ae_title: settings.ae_title.clone(),
        max_pdu_length: settings.max_pdu,
        max_associate_rq_length: settings.max_associate_rq,
        max_associations: settings.max_associations,
        max_associations_per_peer: settings.max_associations_per_peer,
        max_pending_connections: settings.max_pending_connections,
        artim_timeout: settings.artim_timeout,
        idle_timeout: settings.dicom_idle_timeout,
        max_retrieves: settings.max_retrieves,
        transcoder: Some(std::sync::Arc::new(PipelineTranscoder)),
        transcode_limits: radport_dimse::TranscodeLimits::default(),
        proxy_protocol_from: settings.proxy_protocol_from.clone(),
    };
    let deployment = radport_http::responses::Deployment {
        ae_title_name_limit: radport_catalog::MAX_AE_TITLE_NAME,
        dicom_host: settings.public_host.clone(),
        dicom_port: settings.dicom_port,
        dicom_tls_port: settings.dicom_tls_port,
        ae_title: settings.ae_title.clone(),
        duplicate_policy: format!("{:?}", settings.duplicate_policy),
        // Looked at again by every /api/health (the viewer can be installed while serving).
        viewer: false,
    };
    let state = radport_http::AppState {
        catalog: catalog.clone(),
        archive: archive.clone(),
        deployment,
        uploads: radport_http::uploads::UploadSettings {
            max_size: settings.max_upload_size,
            expire_after: settings.upload_expiry,
            retention: settings.upload_retention,
            max_total: settings.max_upload_total,
        },
        workflows: workflows.clone(),
        // Two at a time: a decode holds a whole file in memory and a core busy.
        rendering: Some(radport_http::preview::FrameRendering::new(
            std::sync::Arc::new(PipelineFrames),
            2,
        )),
        downloads: radport_http::Downloads::new(settings.download_reads),
        max_json_body: settings.http_max_json_body,
        https: settings.tls.is_some(),
        http_port: settings.http_port,
        // Rendered pictures, thumbnails and decoded frames: two at a time, as above.
        dicomweb: radport_dicomweb::DicomWeb::new(ingestor.clone())
            .with_pixels(std::sync::Arc::new(PipelinePixels), 2)
            .with_read_ahead_budget(settings.dicomweb_read_ahead)
            .with_thumbnail_size(settings.thumbnail_size),
        max_stow_body: radport_http::DEFAULT_MAX_STOW_BODY,
        viewer_dir: settings.viewer_dir.clone(),
        allowed_hosts: radport_http::hosts::AllowedHosts::new(
            &settings.public_host,
            &settings.allowed_hosts,
        ),
        access: radport_http::Access {
            mode: settings.access,
            authenticator: radport_access::Authenticator::new(catalog.clone()),
            oidc: single_sign_on(&settings)?,
        },
    };
    let sweeper_state = state.clone();
    // Often enough that an upload is gone soon after it expires.
    let sweep_every = (settings.upload_expiry / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    let sweeper = tokio::spawn(async move {
        loop {
            match radport_http::uploads::sweep_expired(&sweeper_state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "expired incomplete uploads deleted"),
                Err(e) => tracing::warn!(error = ?e, "sweeping expired uploads failed"),
            }
            tokio::time::sleep(sweep_every).await;
        }
    });
    let app = radport_http::router(state);
    // Where people sign in, on standard error beside the first administrator's password.
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    match settings.access {
        radport_access::Mode::Enforced => eprintln!(
            "  radport: sign in at {scheme}://{}:{}/ (accounts: `radport user --help`)",
            settings.public_host, settings.http_port
        ),
        radport_access::Mode::Open => eprintln!(
            "  radport: {scheme}://{}:{}/ (access open: anyone who reaches this port may do everything)",
            settings.public_host, settings.http_port
        ),
    }
    tracing::info!(dicom = %dicom_addr, http = %http_addr, data_dir = %settings.data_dir.display(),
        archive = archive.description(), "radport is running");

    if catalog_is_embedded(&settings.catalog_url) {
        // Embedded: no other process can be running these jobs. The attempt each was running
        // counts: queued again if it has attempts left, else failed (a job that brings the
        // process down cannot do so at every start).
        let reaped = catalog.requeue_running_jobs().await?;
        if reaped.requeued > 0 || reaped.failed > 0 {
            tracing::warn!(
                requeued = reaped.requeued,
                failed = reaped.failed,
                "jobs interrupted by the last stop: queued again, or failed when out of attempts"
            );
        }
    }
    let isolation = if settings.isolate_jobs {
        Some(job_isolation(&settings)?)
    } else {
        None
    };
    if let Some(i) = &isolation {
        tracing::info!(kinds = ?i.kinds, memory_limit = i.memory_limit,
            time_limit_s = settings.job_time_limit.as_secs(), "risky jobs run in child processes");
    }
    let pipeline = radport_pipeline::worker::Pipeline::new(
        catalog.clone(),
        archive.clone(),
        pipeline_config(&settings, isolation),
    );
    let pipeline = pipeline.with_handler(std::sync::Arc::new(WorkflowJobs(workflows.clone())));
    let pipeline_task = tokio::spawn(pipeline.run());

    // Removes what no catalog row references, once older than --orphan-grace.
    crate::collect::spawn_collector(&settings, archive.clone(), catalog.clone(), scratch);

    let dicom_tls = match (settings.dicom_tls_port, &settings.tls) {
        (Some(port), Some((cert, key))) => {
            let addr = format!("{}:{port}", settings.bind);
            let config = radport_access::tls::server_config(
                cert,
                key,
                settings.dicom_tls_client_ca.as_deref(),
            )
            .context("cannot serve DICOM TLS")?;
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen for DICOM TLS on {addr}"))?;
            tracing::info!(%addr, client_certificates = settings.dicom_tls_client_ca.is_some(),
                "DICOM TLS receiver listening");
            Some(radport_dimse::TlsListener {
                listener,
                config: std::sync::Arc::new(config),
            })
        }
        _ => None,
    };
    let receiver = tokio::spawn(radport_dimse::serve(
        dicom_listener,
        dicom_tls,
        ingestor.clone(),
        receiver_config,
    ));
    // Thousands of HTTP connections need more descriptors than the usual soft limit of 1024;
    // the connection cap leaves 512 for DICOM associations, the archive and the catalog.
    let open_files = radport_http::server::raise_open_files_limit();
    let http_limits = radport_http::server::ServerLimits {
        header_timeout: settings.http_header_timeout,
        body_timeout: settings.http_body_timeout,
        max_connections: radport_http::server::connection_cap(
            settings.http_max_connections,
            open_files,
            512,
        ),
    };
    tracing::info!(
        open_files = open_files.unwrap_or_default(),
        max_connections = http_limits.max_connections,
        header_timeout_s = http_limits.header_timeout.as_secs_f64(),
        body_timeout_s = http_limits.body_timeout.as_secs_f64(),
        "HTTP limits"
    );
    if http_limits.max_connections < settings.http_max_connections {
        tracing::warn!(
            open_files = open_files.unwrap_or_default(),
            max_connections = http_limits.max_connections,
            "the open-files limit lowers the HTTP connection cap (raise `ulimit -n`)"
        );
    }
    let tls = match &settings.tls {
        Some((cert, key)) => {
            Some(radport_http::tls::server_config(cert, key).context("cannot serve HTTPS")?)
        }
        None => None,
    };
    if tls.is_some() {
        tracing::info!("HTTP is served over TLS (HTTPS only)");
    }
    let http = tokio::spawn(radport_http::server::serve(
        http_listener,
        app,
        http_limits,
        tls,
    ));

    tokio::select! {
        r = receiver => { r.context("receiver task")?.context("DICOM receiver")?; }
        r = http => { r.context("HTTP task")?.context("HTTP server")?; }
        r = pipeline_task => { r.context("pipeline task")?; }
        r = sweeper => { r.context("upload sweeper task")?; }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            // What is behind the journal made durable: nothing to redo at the next start.
            // Not waited for beyond a limit: a checkpoint waits for every instance to be
            // recorded, which a failing catalog holds up (redone at the next start instead).
            match tokio::time::timeout(SETTLE_AT_SHUTDOWN, ingestor.settle()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the ingest journal could not be settled"),
                Err(_) => tracing::warn!(
                    "the ingest journal was not settled in time; what it holds is redone \
                     at the next start"
                ),
            }
            record_application_event(&catalog, radport_audit::message::APPLICATION_STOP_ACTION)
                .await;
        }
    }
    Ok(())
}

/// How instances are made durable (`--ingest-durability`), for a local archive: the ingest
/// journal under `DATA_DIR/journal` or the packs under the archive's `packs/`, opened (made
/// at the first start), what they hold from before redone, their checkpoints started.
/// Before anything listens.
///
/// A journal or packs left by an earlier run with another setting are still redone (and
/// the journal emptied): what they acknowledged must not be lost because a setting changed.
/// Packs stay where they are: the instances they hold are read there whatever the setting.
async fn open_journal(settings: &crate::config::Settings, ingestor: Ingestor) -> Result<Ingestor> {
    use crate::config::IngestDurability;
    let dir = settings.data_dir.join("journal");
    if !ingestor.archive().is_local() {
        return Ok(ingestor);
    }
    if settings.ingest_durability != IngestDurability::Journal && dir.is_dir() {
        let holds = radport_ingest::Journal::has_records(&dir)
            .context("cannot read the ingest journal left by an earlier run")?;
        if holds {
            drop(open_and_recover(settings, ingestor.clone(), dir.clone()).await?);
        }
        std::fs::remove_dir_all(&dir)
            .and_then(|()| std::fs::File::open(&settings.data_dir)?.sync_all())
            .context("cannot remove the ingest journal left by an earlier run")?;
        tracing::info!("the ingest journal of an earlier run is emptied and removed");
    }
    let packs_dir = ingestor.archive().packs_dir();
    let packs_left = packs_dir.as_ref().is_some_and(|d| d.is_dir());
    if settings.ingest_durability != IngestDurability::Packs && packs_left {
        drop(open_packs_and_recover(settings, ingestor.clone()).await?);
    }
    let ingestor = match settings.ingest_durability {
        IngestDurability::Direct => return Ok(ingestor),
        IngestDurability::Journal => open_and_recover(settings, ingestor, dir).await?,
        IngestDurability::Packs => open_packs_and_recover(settings, ingestor).await?,
    };
    let checkpoints = ingestor.clone();
    tokio::spawn(async move {
        checkpoints
            .run_checkpoints(radport_ingest::CHECKPOINT_IDLE)
            .await
    });
    Ok(ingestor)
}

/// Opens the archive's packs (the directory made durably if missing) and records again
/// what a crash may have lost of them.
async fn open_packs_and_recover(
    settings: &crate::config::Settings,
    ingestor: Ingestor,
) -> Result<Ingestor> {
    let dir = ingestor
        .archive()
        .packs_dir()
        .context("packs need a local archive")?;
    radport_archive::create_dir_all_durably(&dir)
        .with_context(|| format!("cannot create the packs directory {}", dir.display()))?;
    let config = settings.pack_config();
    let (log, replay) =
        tokio::task::spawn_blocking(move || radport_ingest::PackLog::open(&dir, config))
            .await
            .context("packs task")?
            .context("cannot open the archive's packs")?;
    watch_packs(&log);
    let ingestor = ingestor
        .with_packs(log)
        .context("cannot keep instances in packs")?;
    recover(&ingestor, replay, "the archive's packs").await?;
    Ok(ingestor)
}

/// `/metrics` shows what `log` does (`radport_pack_*`), read at each scrape.
fn watch_packs(log: &radport_ingest::PackLog) {
    let reader = log.stats_reader();
    radport_metrics::global().set_pack_source(move || {
        reader.stats().map(|stats| radport_metrics::PackFigures {
            records: stats.records,
            syncs: stats.syncs,
            groups: stats.groups,
            queued: stats.queued,
            writing: stats.writing,
            syncing: stats.syncing,
            written_while_arriving: stats.written_while_arriving,
        })
    });
}

/// Opens the journal in `dir` (made durably if missing) and redoes what it holds.
async fn open_and_recover(
    settings: &crate::config::Settings,
    ingestor: Ingestor,
    dir: std::path::PathBuf,
) -> Result<Ingestor> {
    radport_archive::create_dir_all_durably(&dir)
        .with_context(|| format!("cannot create the journal directory {}", dir.display()))?;
    let config = settings.journal_config();
    let (journal, replay) =
        tokio::task::spawn_blocking(move || radport_ingest::Journal::open(&dir, config))
            .await
            .context("journal task")?
            .context("cannot open the ingest journal")?;
    let ingestor = ingestor
        .with_journal(journal)
        .context("cannot use the ingest journal")?;
    recover(&ingestor, replay, "the ingest journal").await?;
    Ok(ingestor)
}

/// Redoes what `held` (the ingest journal or the packs) holds from before the start, and
/// says how much there was.
async fn recover(
    ingestor: &Ingestor,
    replay: radport_ingest::Replay,
    held: &'static str,
) -> Result<()> {
    let recovery = ingestor
        .recover(replay)
        .await
        .with_context(|| format!("cannot redo what {held} holds"))?;
    if recovery.records > 0 {
        tracing::info!(
            records = recovery.records,
            recorded_again = recovery.recorded_again,
            failed = recovery.failed,
            held,
            "records from before the start: redone where the catalog lacked them"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A database URL as it may be shown: the password of its user part replaced by `***`.
fn without_password(url: &str) -> String {
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end],
                    &rest[..colon],
                    &rest[at..]
                );
            }
        }
    }
    url.to_string()
}

/// The pipeline's settings (`radport serve` and a job's child process).
pub(crate) fn pipeline_config(
    settings: &Settings,
    isolation: Option<radport_pipeline::isolate::Isolation>,
) -> radport_pipeline::worker::PipelineConfig {
    radport_pipeline::worker::PipelineConfig {
        workers: settings.workers,
        stable_after: settings.stable_after,
        max_attempts: settings.job_attempts,
        thumbnail: radport_pipeline::thumbnail::ThumbnailOptions {
            max_side: settings.thumbnail_size,
        },
        lease: settings.job_lease,
        time_limit: settings.job_time_limit,
        isolation,
        ..Default::default()
    }
}

/// How the risky jobs run in children: this executable's hidden `run-job`, with the settings
/// a job needs passed in `RADPORT_*` variables (not arguments: `ps` would show a catalog
/// password), under the job memory limit.
fn job_isolation(settings: &Settings) -> Result<radport_pipeline::isolate::Isolation> {
    let program = std::env::current_exe()
        .context("cannot find this executable to run isolated jobs (--isolate-jobs false)")?;
    // Every setting, as resolved here: the child resolves nothing of its own.
    let env = vec![(
        crate::run_job::SETTINGS_ENV.into(),
        settings.to_toml()?.into(),
    )];
    Ok(radport_pipeline::isolate::Isolation {
        kinds: radport_pipeline::worker::RISKY_KINDS.to_vec(),
        program,
        args: vec!["run-job".into()],
        env,
        memory_limit: settings.job_memory_limit,
    })
}

fn catalog_is_embedded(url: &str) -> bool {
    url.trim_start().to_ascii_lowercase().starts_with("sqlite:")
}

/// Workflow runs execute on the pipeline's workers, as jobs of their own kind.
pub(crate) struct WorkflowJobs(pub(crate) radport_workflows::Workflows);

impl radport_pipeline::worker::JobHandler for WorkflowJobs {
    fn kind(&self) -> radport_catalog::JobKind {
        radport_catalog::JobKind::Workflow
    }

    fn run<'a>(
        &'a self,
        job: &'a radport_catalog::Job,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.0.execute(job).await.map_err(|e| e.to_string()) })
    }
}

/// Frames for the series page's slice viewer (`/rendered`), drawn by the pipeline's thumbnail
/// renderer (windowed like the thumbnails; placeholders for what has no picture; segmentations
/// and structure sets over the image they reference, which the HTTP layer fetches), and the
/// slices of segmentations (`/segmentation`).
/// The DIMSE retrieve's fallback conversion, with the pipeline's codecs.
#[derive(Debug)]
struct PipelineTranscoder;

impl radport_dimse::Transcoder for PipelineTranscoder {
    fn transcode(&self, file: &[u8], transfer_syntax_uid: &str) -> Result<Vec<u8>, String> {
        radport_pipeline::transcode::transcode_data_set(file, transfer_syntax_uid)
    }
}

struct PipelineFrames;

impl radport_http::preview::FrameRenderer for PipelineFrames {
    fn render(
        &self,
        file: &[u8],
        frame: u32,
        _number_of_frames: u32,
        size: u32,
        source: Option<&[u8]>,
    ) -> Result<Vec<u8>, radport_http::preview::RenderError> {
        let options = radport_pipeline::thumbnail::ThumbnailOptions { max_side: size };
        // `frame` is 1-based and within the instance (checked by the HTTP layer).
        let index = frame.saturating_sub(1);
        Ok(
            radport_pipeline::thumbnail::render_frame_over_or_placeholder(
                file,
                Some(index),
                source,
                &options,
            )
            .into_png(),
        )
    }

    fn draws_over(&self, sop_class_uid: &str) -> bool {
        radport_pipeline::thumbnail::is_drawn_over_source(sop_class_uid)
    }

    fn source_of(&self, file: &[u8], frame: u32) -> Option<radport_http::preview::SourceImage> {
        radport_pipeline::thumbnail::overlay_source(file, Some(frame.saturating_sub(1)))
            .map(source_image)
    }

    fn segmentation(
        &self,
        file: &[u8],
    ) -> Result<radport_http::preview::SegmentationLayout, radport_http::preview::RenderError> {
        use radport_http::preview::{RenderError, SegmentLayout, SegmentationLayout, SliceLayout};
        use radport_pipeline::thumbnail::ThumbnailError;
        let seg = radport_pipeline::thumbnail::seg_slices(file).map_err(|e| match e {
            ThumbnailError::CodecMissing { .. } | ThumbnailError::Unsupported(_) => {
                RenderError::Unsupported(format!("cannot read the segmentation: {e}"))
            }
            other => RenderError::Invalid(format!("cannot read the segmentation: {other}")),
        })?;
        Ok(SegmentationLayout {
            number_of_frames: seg.number_of_frames,
            segments: seg
                .segments
                .into_iter()
                .map(|s| SegmentLayout {
                    number: s.number,
                    label: s.label,
                    colour: s.colour,
                })
                .collect(),
            slices: seg
                .slices
                .into_iter()
                .map(|s| SliceLayout {
                    frames: s.frame_numbers,
                    segments: s.segments,
                    source: s.source.map(source_image),
                    position: s.position,
                })
                .collect(),
        })
    }
}

/// DICOMweb's rendered pictures, thumbnails and decoded frames, drawn and decoded by the
/// pipeline's thumbnail renderer (which checks each file with `radport_prescan` before parsing
/// it and catches the parser's and codecs' panics).
struct PipelinePixels;

impl radport_dicomweb::rendered::PixelService for PipelinePixels {
    fn render(
        &self,
        file: &[u8],
        options: &radport_dicomweb::rendered::RenderOptions,
    ) -> Result<radport_dicomweb::rendered::Rendered, radport_dicomweb::rendered::PixelError> {
        use radport_dicomweb::rendered::{ImageType, WindowFunction};
        use radport_pipeline::thumbnail as t;
        let view = t::ViewOptions {
            // 1-based in DICOMweb, 0-based in the renderer.
            frame: options.frame.map(|f| f.saturating_sub(1)),
            window: options.window.map(|w| t::ViewWindow {
                center: w.center,
                width: w.width,
                function: match w.function {
                    WindowFunction::Linear => t::WindowFunction::Linear,
                    WindowFunction::LinearExact => t::WindowFunction::LinearExact,
                    WindowFunction::Sigmoid => t::WindowFunction::Sigmoid,
                },
            }),
            region: options
                .viewport
                .and_then(|v| v.region)
                .map(|r| t::ViewRegion {
                    x: r.x,
                    y: r.y,
                    // To the edge: as far as any image reaches.
                    width: r.width.unwrap_or(i64::from(u32::MAX)),
                    height: r.height.unwrap_or(i64::from(u32::MAX)),
                }),
            viewport: options.viewport.map(|v| (v.width, v.height)),
            format: match options.image_type {
                ImageType::Jpeg => t::ViewFormat::Jpeg {
                    quality: options.quality,
                },
                ImageType::Png => t::ViewFormat::Png,
            },
        };
        let bytes = t::render_view(file, &view).map_err(pixel_error)?;
        Ok(radport_dicomweb::rendered::Rendered {
            media_type: options.image_type.media_type().to_string(),
            bytes,
        })
    }

    fn decode_frames(
        &self,
        file: &[u8],
        frames: &[u32],
    ) -> Result<Vec<Vec<u8>>, radport_dicomweb::rendered::PixelError> {
        let indices: Vec<u32> = frames.iter().map(|f| f.saturating_sub(1)).collect();
        radport_pipeline::thumbnail::decode_native_frames(file, &indices).map_err(pixel_error)
    }
}

fn pixel_error(
    e: radport_pipeline::thumbnail::ThumbnailError,
) -> radport_dicomweb::rendered::PixelError {
    use radport_dicomweb::rendered::PixelError;
    use radport_pipeline::thumbnail::ThumbnailError;
    match e {
        ThumbnailError::NoPixelData { .. } => {
            PixelError::NotAnImage(format!("cannot be drawn: {e}"))
        }
        ThumbnailError::CodecMissing { .. }
        | ThumbnailError::UnknownTransferSyntax(_)
        | ThumbnailError::Unsupported(_)
        | ThumbnailError::TooLarge { .. } => {
            PixelError::Unsupported(format!("cannot be drawn: {e}"))
        }
        other => PixelError::Invalid(format!("cannot be drawn: {other}")),
    }
}

fn source_image(
    s: radport_pipeline::thumbnail::OverlaySource,
) -> radport_http::preview::SourceImage {
    radport_http::preview::SourceImage {
        series_uid: s.series_uid,
        sop_instance_uid: s.sop_instance_uid,
        frame: s.frame_number,
    }
}

/// Single sign-on, if configured: the provider is discovered now if it answers (else when it
/// is first needed).
fn single_sign_on(settings: &Settings) -> Result<Option<radport_http::SingleSignOn>> {
    let Some(oidc) = &settings.oidc else {
        return Ok(None);
    };
    let provider = std::sync::Arc::new(
        radport_access::oidc::Oidc::new(oidc.to_config()).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let early = provider.clone();
    tokio::spawn(async move {
        if let Err(e) = early.discover_early().await {
            tracing::warn!(error = %e, "the OpenID provider is not reachable yet; single sign-on will try again when used");
        }
    });
    tracing::info!(
        issuer = oidc.issuer,
        redirect = oidc.redirect_url,
        "single sign-on enabled"
    );
    Ok(Some(radport_http::SingleSignOn {
        provider,
        display_name: oidc.display_name.clone(),
    }))
}

/// Records this process's start or stop in the audit trail (a failure is logged).
async fn record_application_event(catalog: &radport_catalog::Catalog, action: &str) {
    let event = radport_catalog::NewAuditEvent {
        actor: "radport".into(),
        address: String::new(),
        action: action.into(),
        target: String::new(),
        outcome: radport_catalog::Outcome::Success,
        detail: format!("pid {}", std::process::id()),
    };
    if let Err(e) = catalog.record_audit(&event).await {
        tracing::warn!(error = %e, "recording the {action} in the audit trail failed");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_not_shown() {
        assert_eq!(
            super::without_password("postgres://radport:hunter2@db:5432/radport?sslmode=require"),
            "postgres://radport:***@db:5432/radport?sslmode=require"
        );
        assert_eq!(
            super::without_password("postgres://radport@db/x"),
            "postgres://radport@db/x"
        );
        assert_eq!(
            super::without_password("sqlite:///a:b@c/catalog.db"),
            "sqlite:///a:b@c/catalog.db"
        );
    }
}
