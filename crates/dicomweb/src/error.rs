//! What can go wrong, and the HTTP status each case is answered with.

use radport_archive::ArchiveError;
use radport_catalog::CatalogError;

/// Why a DICOMweb request failed.
#[derive(Debug, thiserror::Error)]
pub enum DicomWebError {
    /// The request is malformed (a bad matching key, parameter or body): 400.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing the caller may see matches: 404.
    #[error("{0}")]
    NotFound(String),
    /// None of the accepted media types (or transfer syntaxes) can be given: 406.
    #[error("{0}")]
    NotAcceptable(String),
    /// The body's media type is not one STOW-RS takes: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request is larger than a documented limit: 413.
    #[error("{0}")]
    TooLarge(String),
    /// The server cannot do this (no renderer, no codec for the pixel data): 501.
    #[error("{0}")]
    NotImplemented(String),
    /// A stored object could not be read as DICOM (e.g. frames of a damaged file): 500.
    #[error("{0}")]
    Unreadable(String),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl DicomWebError {
    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            DicomWebError::BadRequest(_) => 400,
            DicomWebError::NotFound(_) => 404,
            DicomWebError::NotAcceptable(_) => 406,
            DicomWebError::UnsupportedMediaType(_) => 415,
            DicomWebError::TooLarge(_) => 413,
            DicomWebError::NotImplemented(_) => 501,
            DicomWebError::Catalog(CatalogError::Invalid(_)) => 400,
            DicomWebError::Catalog(CatalogError::NotFound(_)) => 404,
            DicomWebError::Archive(ArchiveError::NotFound(_)) => 404,
            _ => 500,
        }
    }
}
