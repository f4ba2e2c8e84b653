//! DICOMweb (PS3.18) over the catalog and the archive: QIDO-RS searches ([`qido`]), WADO-RS
//! retrieval of instances, metadata, frames and bulk data ([`wado`], [`frames`]), rendered
//! pictures and thumbnails ([`rendered`], drawn by a [`rendered::PixelService`] the binary plugs
//! in) and STOW-RS storage through the one ingest path ([`stow`]).
//!
//! This crate is the engine; `radport-http` routes requests to it after its guard has decided
//! who may see what, and hands it a [`Scope`]. Every read goes through `radport-catalog`
//! (searches with the same matching as C-FIND: [`radport_catalog::search`]) and
//! `radport-archive` (the stored bytes, streamed); every write through `radport-ingest`.
//! DICOM JSON and the multipart framing are this crate's own wire formats, as the API's JSON is
//! `radport-http`'s.

#![warn(missing_docs)]

mod error;
pub mod frames;
mod json;
pub mod media;
mod multipart;
pub mod qido;
pub mod rendered;
pub mod stow;
pub mod wado;

pub use error::DicomWebError;
pub use multipart::DEFAULT_READ_AHEAD_BUDGET;
pub use radport_catalog::search::{Level, Scope};

use radport_archive::Archive;
use radport_catalog::Catalog;
use radport_ingest::Ingestor;

/// The study, series and instance a request's path names (each level needs the ones above).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Study Instance UID.
    pub study: Option<String>,
    /// Series Instance UID.
    pub series: Option<String>,
    /// SOP Instance UID.
    pub instance: Option<String>,
}

impl Target {
    /// The level below which the path names nothing: what a retrieve returns.
    pub fn level(&self) -> Level {
        if self.instance.is_some() {
            Level::Instance
        } else if self.series.is_some() {
            Level::Series
        } else {
            Level::Study
        }
    }
}

/// The DICOMweb services of one server.
#[derive(Clone)]
pub struct DicomWeb {
    catalog: Catalog,
    archive: Archive,
    ingestor: Ingestor,
    pixels: Option<rendered::Pixels>,
    thumbnail_size: u32,
    read_ahead: multipart::ReadAhead,
}

impl DicomWeb {
    /// Services over this catalog and archive, storing through `ingestor`.
    pub fn new(ingestor: Ingestor) -> Self {
        Self {
            catalog: ingestor.catalog().clone(),
            archive: ingestor.archive().clone(),
            ingestor,
            pixels: None,
            thumbnail_size: rendered::DEFAULT_THUMBNAIL_SIZE,
            read_ahead: multipart::ReadAhead::new(multipart::DEFAULT_READ_AHEAD_BUDGET),
        }
    }

    /// At most `bytes` (default [`DEFAULT_READ_AHEAD_BUDGET`]) of stored objects held in
    /// memory, over all answers together, read ahead of what their clients have taken.
    pub fn with_read_ahead_budget(mut self, bytes: u64) -> Self {
        self.read_ahead = multipart::ReadAhead::new(bytes);
        self
    }
}
