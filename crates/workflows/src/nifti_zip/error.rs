//! The NIfTI import's errors: why a zip cannot be imported at all ([`PlanError`], found while
//! planning, before anything is converted), and why one file of a case was not converted
//! ([`FileError`], an item error of the run that names the file).

use radport_convert::ConvertError;

use super::manifest::ManifestError;

/// Why a NIfTI zip cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub(super) enum PlanError {
    /// The zip's central directory lists an entry that cannot be read.
    #[error("not a readable .zip file: entry #{index}: {source}")]
    Unreadable {
        /// Index of the entry.
        index: usize,
        /// What the zip reader said.
        #[source]
        source: zip::result::ZipError,
    },
    /// A file the layout needs once is there several times.
    #[error("{name} found {count} times ({paths}); keep one per zip")]
    Repeated {
        /// The file's name, e.g. `dataset.json`.
        name: &'static str,
        /// How many times.
        count: usize,
        /// Where, comma-separated.
        paths: String,
    },
    /// A JSON file of the layout cannot be read.
    #[error(transparent)]
    Unread(ManifestError),
    /// A JSON file of the layout is read but does not say what the layout needs.
    #[error("{file} is not usable: {source}")]
    Unusable {
        /// Path of the file in the zip.
        file: String,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// More labels are listed than a SEG may have segments.
    #[error("{count} labels are listed ({file}); a SEG may have at most {max} segments")]
    TooManyLabels {
        /// Labels listed.
        count: usize,
        /// The file that lists them (`seg_info.json` or `dataset.json`).
        file: &'static str,
        /// Segments a SEG may have.
        max: usize,
    },
}

/// Why one file of a case was not converted.
#[derive(Debug, thiserror::Error)]
pub(super) enum FileError {
    /// The zip entry could not be read within the import's limits.
    #[error("{file}: {reason}")]
    Entry {
        /// Path of the file in the zip.
        file: String,
        /// The limit or the damage.
        reason: String,
    },
    /// A 4-D volume.
    #[error(
        "{file}: 4-D volume ({channels} volumes along the 4th dimension): only 3-D volumes are \
         imported; save one file per volume (nnU-Net: one file per channel, _0000, _0001 …)"
    )]
    FourD {
        /// Path of the file in the zip.
        file: String,
        /// Volumes along the 4th dimension.
        channels: usize,
    },
    /// The NIfTI file cannot be read or converted, or its SEG cannot be made.
    #[error("{file}: {source}")]
    Convert {
        /// Path of the file in the zip.
        file: String,
        /// What the converter said.
        #[source]
        source: ConvertError,
    },
    /// The label map's values cannot become segments.
    #[error("{file}: label map: {problem}")]
    Labels {
        /// Path of the label map in the zip.
        file: String,
        /// What is wrong with its values.
        problem: LabelProblem,
    },
    /// A key of `meta_data.json`'s `series_tags` for this file is not a tag.
    #[error("{file}: meta_data.json series_tags[{key:?}]: {source}")]
    SeriesTag {
        /// Path of the file in the zip.
        file: String,
        /// The key of `series_tags` that names the file.
        key: String,
        /// Why the tag is not one.
        #[source]
        source: ConvertError,
    },
}

/// Why the values of a label map cannot become segments (when no file names the labels).
#[derive(Debug, PartialEq, thiserror::Error)]
pub(super) enum LabelProblem {
    /// A value that is not a non-negative integer.
    #[error("value {0} (labels must be non-negative integers)")]
    NotALabel(f64),
    /// More distinct values than a SEG may have segments.
    #[error("more than {0} distinct values (the segment limit) and no seg_info.json to name them")]
    TooMany(usize),
    /// No voxel is labelled.
    #[error("no labelled voxel")]
    Empty,
}
