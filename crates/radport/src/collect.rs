//! `radport collect`: one collection of unreferenced archive objects now (see
//! `radport_collector`), with the catalog and archive settings of `radport serve`; and the
//! collector task that `radport serve` runs every `--collect-interval`.

use std::time::Duration;

use anyhow::{Context, Result};
use radport_archive::Archive;
use radport_catalog::Catalog;
use radport_collector::{Collector, CollectorConfig, Scratch};

use crate::config::{ServeArgs, Settings};

/// A grace below this can take an instance that is written but not yet committed.
const SHORT_GRACE: Duration = Duration::from_secs(300);

/// The scratch directory of a data directory (where import runs copy their zip).
pub(crate) fn scratch_dir(settings: &Settings) -> std::path::PathBuf {
    settings.data_dir.join("scratch")
}

/// Claims the scratch directory for this process, or says why not.
pub(crate) fn claim_scratch(settings: &Settings) -> Option<Scratch> {
    match Scratch::claim(&scratch_dir(settings)) {
        Ok(Some(scratch)) => Some(scratch),
        Ok(None) => {
            tracing::info!(
                "another radport process uses this data directory's scratch area: it is left to it"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the scratch area cannot be collected");
            None
        }
    }
}

fn collector(settings: &Settings, archive: Archive, catalog: Catalog) -> Collector {
    if settings.orphan_grace < SHORT_GRACE {
        tracing::warn!(
            grace_s = settings.orphan_grace.as_secs_f64(),
            "--orphan-grace is short: an instance being received when a collection runs can be \
             taken for an orphan; use it only while nothing is received"
        );
    }
    Collector::new(
        archive,
        catalog,
        CollectorConfig {
            grace: settings.orphan_grace,
        },
    )
}

/// `radport serve`: collects every `--collect-interval`, unless that is zero, with the
/// scratch directory claimed before any import ran ([`claim_scratch`]).
pub(crate) fn spawn_collector(
    settings: &Settings,
    archive: Archive,
    catalog: Catalog,
    scratch: Option<Scratch>,
) {
    if settings.collect_interval.is_zero() {
        tracing::info!("no collection of unreferenced objects in this process");
        return;
    }
    let mut collector = collector(settings, archive, catalog);
    if let Some(scratch) = scratch {
        collector = collector.with_scratch(scratch);
    }
    tokio::spawn(collector.run(settings.collect_interval));
}

/// `radport collect`.
pub async fn run(args: ServeArgs) -> Result<()> {
    let settings = args.resolve()?;
    crate::logging::init(settings.log_format, true);
    if !settings.data_dir.is_dir() {
        anyhow::bail!(
            "no data directory {} (give the --data-dir of radport serve)",
            settings.data_dir.display()
        );
    }
    let catalog = Catalog::connect(&settings.catalog_url)
        .await
        .context("cannot open the catalog (--catalog-url)")?;
    let archive = match &settings.archive_url {
        None => Archive::local(&settings.data_dir.join("archive"))
            .context("cannot open the archive directory")?,
        Some(url) => Archive::from_url(url)
            .await
            .context("cannot open the archive (--archive-url)")?,
    };
    let mut collector = collector(&settings, archive, catalog.clone());
    if let Some(scratch) = claim_scratch(&settings) {
        collector = collector.with_scratch(scratch);
    }
    let report = collector
        .collect_once()
        .await
        .context("collection failed")?;
    catalog.close().await;
    println!(
        "removed {} instances, {} thumbnails and reports, {} upload chunks, {} staging files, \
         {} scratch entries; kept {} referenced, {} within the grace, {} of unknown form; \
         {} deletes failed",
        report.instances,
        report.derived,
        report.upload_parts,
        report.staged,
        report.scratch,
        report.referenced,
        report.young,
        report.unknown,
        report.failed
    );
    if report.failed > 0 {
        anyhow::bail!(
            "{} unreferenced objects could not be removed",
            report.failed
        );
    }
    Ok(())
}
