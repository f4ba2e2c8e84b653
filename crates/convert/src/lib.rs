//! # radport-convert: NIfTI → DICOM image series, label maps → DICOM SEG
//!
//! A pure, in-memory library: inputs are bytes, outputs are DICOM Part-10 files (`Vec<u8>` each, Explicit VR
//! Little Endian). It is what the NIfTI upload workflow (Kaapana's `import-niftis-from-data-upload` equivalent)
//! calls; unzipping, layout detection (`meta_data.json`, `seg_info.json`, nnU-Net) and ingest live elsewhere.
//!
//! * [`read_nifti`] / [`read_nifti_with`]: `.nii` or `.nii.gz` (gzip detected by magic), NIfTI-1 and NIfTI-2
//!   (both parsed here; either byte order), every scalar datatype (u8, i8, u16, i16, u32, i32, u64, i64, f32, f64)
//!   and colour (RGB24, RGBA32). `scl_slope`/`scl_inter` honoured for scalar data (slope 0 or non-finite = no
//!   scaling; ignored for colour, as the NIfTI-1 header says). Refused with a clear message: complex (32, 1792,
//!   2048) — DICOM has no image representation for complex pixels, so split it into magnitude/phase or real/
//!   imaginary volumes first —, float128 (1536) and DT_BINARY (1). 4-D input (dim\[4\] > 1) is refused unless a
//!   channel is chosen; 5-D and more are refused. [`read_nifti_from`] reads from a stream and stops where the
//!   header says the data ends.
//! * Hostile input: every size in a header is checked (checked arithmetic) against [`Limits`] (voxels, bytes of
//!   one volume, bytes of extensions before the data; segments, segments × slices, frames and pixel bytes of a
//!   SEG) before anything of that size is allocated; a gzip stream is inflated only up to the end of the data the
//!   header needs; dims ≤ 0, more than 7 dims, bitpix not matching the datatype, a vox_offset inside the header
//!   or not a whole number, infinite scl_slope, non-finite scl_inter with a slope, non-finite or negative voxel
//!   sizes (when the geometry uses them) and non-finite affines are errors, never panics.
//! * [`volume_to_series`]: one single-frame instance per slice. Scalar data: CT → CT Image Storage, MR → MR Image
//!   Storage, PT → PET Image Storage, any other modality (OT, NM, US, …) → Secondary Capture Image Storage (with
//!   that Modality value; Frame of Reference and Image Plane are still written so the geometry survives, which
//!   dciodvfy notes as warnings). Colour data (any modality) → Secondary Capture Image Storage with that Modality
//!   value, Samples per Pixel 3, RGB, Planar Configuration 0, 8 bits: the CT, MR and PET Image IODs only allow
//!   MONOCHROME1/2, SC allows RGB and still carries the Modality, and refusing would lose an upload that has a
//!   faithful DICOM form. RGBA32: the alpha channel is dropped and [`ConvertedSeries::precision_note`] says so
//!   (with the count of voxels that were not opaque).
//! * [`labels_to_seg`]: a label map on the same grid as the source volume → one BINARY DICOM SEG instance.
//! * [`parse_tag_key`]: `"0008|103e"` (the `meta_data.json` key form) → [`Tag`].
//!
//! ## Geometry conventions
//! NIfTI world coordinates are RAS, DICOM's are LPS: the affine's x and y rows are negated. The affine used is
//! the sform when `sform_code > 0`, else the qform when `qform_code > 0`, else diag(pixdim) with the origin at
//! voxel (0, 0, 0). With `M` the LPS affine and `cᵢ, cⱼ, cₖ, o` its columns: voxel index i runs along DICOM
//! columns, j along rows, k along slices, so DICOM pixel (row r, column c) of instance k is voxel (i=c, j=r, k)
//! and the NIfTI slice memory order *is* the DICOM frame order (no flipping, ever).
//! Image Orientation (Patient) = (cᵢ/|cᵢ|, cⱼ/|cⱼ|); Image Position (Patient) of slice k = o + k·cₖ;
//! Pixel Spacing = (|cⱼ| (between rows), |cᵢ| (between columns)); Slice Thickness = Spacing Between Slices =
//! |cₖ · n| with n = cᵢ×cⱼ normalised (= |cₖ| when the affine is not sheared). Works for any rotation (RAS, LAS,
//! LPS, oblique, left- or right-handed) and 2-D images (nz = 1). An affine whose i and j axes are not orthogonal
//! cannot be represented by Image Orientation (Patient) and is refused.
//!
//! ## Precision rules
//! Scalar pixels are always 16-bit, one value per voxel, never silently truncated:
//! * integer-valued data (after `scl_slope`/`scl_inter`) in 0..=65535 → uint16 as is; in -32768..=32767 → int16
//!   as is (Rescale Slope 1, Intercept 0);
//! * integer-valued data whose range (max − min) fits 65535 → uint16 with Rescale Intercept = min: still exact;
//! * anything else (floats, wider integers) → uint16 with Rescale Intercept = min and Rescale Slope =
//!   (max − min) / 65535 (as written in the DS string): max abs error ≈ slope / 2, measured and reported in
//!   [`ConvertedSeries::precision_note`]. NaN/±Inf voxels are stored as the value nearest 0 and counted in the note.
//! * PET: Rescale Intercept must be 0 (PS3.3 C.8.9.4.1.2), so the intercept steps above become slope-only:
//!   integer data with `scl_inter / scl_slope` integral keep Rescale Slope = `scl_slope` (exact); anything else is
//!   uint16 with slope max / 65535 when nothing is negative, else int16 with slope max(max / 32767, −min / 32768)
//!   (error ≤ slope / 2, reported).
//! * colour: 8-bit R, G, B stored as they are (exact).
//!
//! ## PET Image Storage
//! PET Series: Series Date/Time (Type 1) from `extra_tags` (0008,0021)/(0008,0031), else the Study Date/Time given
//! there, else the time of conversion; Units CNTS, Counts Source EMISSION, Series Type STATIC\IMAGE, Number of
//! Slices, Decay Correction NONE, Corrected Image and Collimator Type empty (Type 2). PET Isotope: an empty
//! Radiopharmaceutical Information Sequence; NM/PET Patient Orientation: empty code sequences (so no Patient
//! Position). PET Image: Image Type DERIVED\PRIMARY (Value 2 must be PRIMARY), Frame Reference Time 0, Image Index
//! = slice number, Acquisition Date/Time and Actual Frame Duration empty. All of these can be set through
//! `extra_tags` (e.g. Units BQML, Decay Correction START with a Decay Factor, Corrected Image DECY\ATTN).
//!
//! UIDs are `2.25.<decimal UUIDv5>` of the seeds, so converting the same upload again yields the same
//! Study/Series/SOP Instance UIDs (and Patient ID when none is given).
//!
//! ## DICOM SEG
//! SOP Class 1.2.840.10008.5.1.4.1.1.66.4, BINARY, one segment per [`Segment`] (numbered 1.. in the order given),
//! frames ordered by segment then slice, empty frames omitted (every source instance is still listed in the
//! Referenced Series Sequence), bits packed LSB-first contiguously across frame boundaries (only the total padded
//! to an even length). Same Study and Frame of Reference as the source series; each frame's Derivation Image
//! Sequence references the exact source instance. Segmented Property Category/Type come from a small SNOMED CT
//! table (organ names) or fall back to Anatomical structure / Tissue; each segment gets a distinct CIELab colour.
//!
//! ## Validation (tests, with real oracles)
//! * `dcm2niix` (apt `dcm2niix`): our series → dcm2niix → NIfTI read back; every output voxel is mapped through
//!   both affines to world space: positions agree within 1e-3 mm and values exactly (integers, colour) or within
//!   the reported error (floats), for RAS, LAS, LPS, negative-k, oblique, 3-D and 2-D inputs, CT, MR, PET and RGB
//!   (dcm2niix writes RGB24 back).
//! * `dciodvfy` (apt `dicom3tools`): no errors for CT, MR, PET, SC (OT; RGB with any modality) and SEG instances.
//! * `nibabel` writes the RGB24/RGBA32 test files (NIfTI-1 and -2, gzip or not); `pydicom` reads our RGB and PET
//!   pixels back.
//! * `highdicom` (pip): reads the SEG back (`get_pixels_by_source_instance`); the label map matches voxel for
//!   voxel (13 × 7 frames, i.e. not a multiple of 8 bits) and segment labels / codes / algorithm types match.
//! * `nibabel` (pip): its sample files are read with the same shape, affine and values as nibabel reads them;
//!   4-D ones are refused (or split by channel), the CIFTI one is refused as 6-D.
//!
//! dciodvfy warnings left in place (not errors):
//! * all images: Study Date/Time/ID empty ("needed to build DICOMDIR"; set them through `extra_tags`); empty
//!   Laterality (dciodvfy reports an *error* when it is absent and a warning when empty).
//! * Secondary Capture (scalar data of every modality but CT/MR/PT, and all colour data): Frame of Reference, Image Plane and Slice Location are not part
//!   of the SC IOD ("Standard Extended SOP Class"); kept on purpose, the geometry matters more.
//! * MR with rescaling: Rescale Slope/Intercept are not in the MR Image IOD; kept, they carry the values (dcm2niix
//!   and most viewers apply them).
//! * PET: only the DICOMDIR and Laterality warnings above.
//! * SEG: only the DICOMDIR Study Date/Time/ID warnings (copied empty from the source series).
//!
//! Speed: the range scan and the per-slice encoding run on every core for volumes of 2²⁰ voxels or more.
//! `cargo run --release --example bench` times a 512×512×300 float32 volume + 5-label SEG in memory;
//! `bench/kaapana-compare.sh` compares, on the same files read from and written to disk, with Kaapana's approach
//! (SimpleITK slice by slice with an int16 cast, dcmqi's `itkimage2segimage`). The figures are in
//! `docs/performance.md`.

#![warn(missing_docs)]

mod dicom_util;
mod nifti;
mod seg;
mod series;

pub use dicom_core::Tag;
pub use nifti::{
    read_nifti, read_nifti_from, read_nifti_with, GeometrySource, Limits, ReadOptions, Volume,
    VoxelData,
};
pub use seg::{labels_to_seg, AlgorithmType, SegOptions, Segment};
pub use series::{volume_to_series, ConvertedSeries, SeriesOptions};

/// Everything that can go wrong; messages are meant to be shown to the uploader.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Not a (valid) NIfTI file.
    #[error("invalid NIfTI: {0}")]
    InvalidNifti(String),
    /// Data shorter than the header says, or a corrupt/truncated gzip stream.
    #[error("truncated NIfTI: {0}")]
    Truncated(String),
    /// A valid file this converter does not handle (complex, float128, 5-D, .hdr/.img pairs…).
    #[error("unsupported NIfTI: {0}")]
    Unsupported(String),
    /// 4-D input without a channel choice.
    #[error("4-D volume with {channels} volumes along dim[4]: split it by channel (ReadOptions::channel)")]
    /// A 4-D volume with this many volumes along dim[4].
    FourD {
        /// Volumes along dim[4].
        channels: usize,
    },
    /// Over a size limit (see [`Limits`]), or sizes that overflow.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The reader handed to [`read_nifti_from`] failed (its error, unchanged).
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    /// Geometry DICOM cannot represent (sheared or degenerate affine).
    #[error("geometry not representable in DICOM: {0}")]
    Geometry(String),
    /// A `"gggg|eeee"` key that does not parse.
    #[error(
        "bad tag key {key:?}: expected \"gggg|eeee\" with 4 hex digits each, e.g. \"0008|103e\""
    )]
    /// A key that is not `gggg|eeee`.
    BadTagKey {
        /// The key as given.
        key: String,
    },
    /// A tag that cannot be set through extra tags (unknown, structural, or a value that does not fit its VR).
    #[error("cannot set tag {tag}: {reason}")]
    /// A tag whose value cannot be set, and why.
    BadTag {
        /// The tag.
        tag: Tag,
        /// Why.
        reason: String,
    },
    /// Label map problems: shape/geometry mismatch, non-integer labels, unlisted labels…
    #[error("label map: {0}")]
    Labels(String),
    /// Other bad arguments.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// DICOM encoding failed (should not happen).
    #[error("DICOM encoding failed: {0}")]
    Dicom(String),
}

/// Parse a `meta_data.json` key `"gggg|eeee"` (hex, case-insensitive, surrounding blanks ignored; `"(gggg,eeee)"`
/// is accepted too) into a [`Tag`].
pub fn parse_tag_key(key: &str) -> Result<Tag, ConvertError> {
    let bad = || ConvertError::BadTagKey {
        key: key.to_string(),
    };
    let k = key.trim();
    let k = k
        .strip_prefix('(')
        .and_then(|k| k.strip_suffix(')'))
        .map(|k| k.replacen(',', "|", 1))
        .unwrap_or_else(|| k.to_string());
    let (g, e) = k.split_once('|').ok_or_else(bad)?;
    let hex4 = |s: &str| {
        if s.len() == 4 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
            u16::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    Ok(Tag(hex4(g).ok_or_else(bad)?, hex4(e).ok_or_else(bad)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_keys() {
        assert_eq!(parse_tag_key("0008|103e").unwrap(), Tag(0x0008, 0x103E));
        assert_eq!(parse_tag_key(" 0010|0020 ").unwrap(), Tag(0x0010, 0x0020));
        assert_eq!(parse_tag_key("(0008,0060)").unwrap(), Tag(0x0008, 0x0060));
        for bad in [
            "0008-103e",
            "",
            "0008|103",
            "0008|103g",
            "00008|103e",
            "8|103e",
            "0008|103e|1",
        ] {
            let e = parse_tag_key(bad).unwrap_err();
            assert!(e.to_string().contains("gggg|eeee"), "{bad}: {e}");
        }
    }
}
