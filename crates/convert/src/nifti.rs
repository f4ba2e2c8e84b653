//! NIfTI-1 / NIfTI-2 reader (single-file `.nii`, optionally gzip-compressed).

use std::io::Read;

use crate::ConvertError;

/// Voxel storage, in the file's own datatype (no widening: a 512×512×300 float32 volume stays 300 MB).
///
/// The colour types (`Rgb24`, `Rgba32`) have no scalar value of their own: wherever a scalar is asked for
/// ([`VoxelData::raw_f64_into`], [`Volume::value`], [`Volume::slice_values`]) a colour voxel gives its packed
/// value `R + 256·G + 65536·B` (alpha left out), lossless and integer, so equality checks work; use
/// [`Volume::rgb`] for the components.
#[derive(Debug, Clone, PartialEq)]
pub enum VoxelData {
    /// uint8 (datatype 2).
    U8(Vec<u8>),
    /// int8 (256).
    I8(Vec<i8>),
    /// uint16 (512).
    U16(Vec<u16>),
    /// int16 (4).
    I16(Vec<i16>),
    /// uint32 (768).
    U32(Vec<u32>),
    /// int32 (8).
    I32(Vec<i32>),
    /// uint64 (1280).
    U64(Vec<u64>),
    /// int64 (1024).
    I64(Vec<i64>),
    /// float32 (16).
    F32(Vec<f32>),
    /// float64 (64).
    F64(Vec<f64>),
    /// DT_RGB24 (128): one `[R, G, B]` per voxel.
    Rgb24(Vec<[u8; 3]>),
    /// DT_RGBA32 (2304): one `[R, G, B, A]` per voxel (alpha is dropped when converting to DICOM).
    Rgba32(Vec<[u8; 4]>),
}

fn packed_rgb(r: u8, g: u8, b: u8) -> f64 {
    (r as u32 | (g as u32) << 8 | (b as u32) << 16) as f64
}

impl VoxelData {
    /// Number of voxels.
    pub fn len(&self) -> usize {
        match self {
            VoxelData::U8(v) => v.len(),
            VoxelData::I8(v) => v.len(),
            VoxelData::U16(v) => v.len(),
            VoxelData::I16(v) => v.len(),
            VoxelData::U32(v) => v.len(),
            VoxelData::I32(v) => v.len(),
            VoxelData::U64(v) => v.len(),
            VoxelData::I64(v) => v.len(),
            VoxelData::F32(v) => v.len(),
            VoxelData::F64(v) => v.len(),
            VoxelData::Rgb24(v) => v.len(),
            VoxelData::Rgba32(v) => v.len(),
        }
    }

    /// True when there are no voxels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for the integer (scalar) datatypes.
    pub fn is_integer(&self) -> bool {
        !matches!(self, VoxelData::F32(_) | VoxelData::F64(_)) && !self.is_colour()
    }

    /// True for the colour datatypes (RGB24, RGBA32).
    pub fn is_colour(&self) -> bool {
        matches!(self, VoxelData::Rgb24(_) | VoxelData::Rgba32(_))
    }

    /// Name of the datatype (`"uint8"`, `"float32"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            VoxelData::U8(_) => "uint8",
            VoxelData::I8(_) => "int8",
            VoxelData::U16(_) => "uint16",
            VoxelData::I16(_) => "int16",
            VoxelData::U32(_) => "uint32",
            VoxelData::I32(_) => "int32",
            VoxelData::U64(_) => "uint64",
            VoxelData::I64(_) => "int64",
            VoxelData::F32(_) => "float32",
            VoxelData::F64(_) => "float64",
            VoxelData::Rgb24(_) => "rgb24",
            VoxelData::Rgba32(_) => "rgba32",
        }
    }

    /// Raw (unscaled) values of `range`, widened to f64, appended to `out` (which is cleared first). Colour voxels
    /// give their packed value `R + 256·G + 65536·B`.
    pub fn raw_f64_into(&self, range: std::ops::Range<usize>, out: &mut Vec<f64>) {
        out.clear();
        macro_rules! ext {
            ($v:expr) => {
                out.extend($v[range].iter().map(|&x| x as f64))
            };
        }
        match self {
            VoxelData::U8(v) => ext!(v),
            VoxelData::I8(v) => ext!(v),
            VoxelData::U16(v) => ext!(v),
            VoxelData::I16(v) => ext!(v),
            VoxelData::U32(v) => ext!(v),
            VoxelData::I32(v) => ext!(v),
            VoxelData::U64(v) => ext!(v),
            VoxelData::I64(v) => ext!(v),
            VoxelData::F32(v) => ext!(v),
            VoxelData::F64(v) => out.extend_from_slice(&v[range]),
            VoxelData::Rgb24(v) => {
                out.extend(v[range].iter().map(|&[r, g, b]| packed_rgb(r, g, b)))
            }
            VoxelData::Rgba32(v) => {
                out.extend(v[range].iter().map(|&[r, g, b, _]| packed_rgb(r, g, b)))
            }
        }
    }
}

/// A parsed 3-D NIfTI volume.
///
/// Voxel `(i, j, k)` is `data[i + nx * (j + ny * k)]` (NIfTI order); its real value is
/// `raw * scl_slope + scl_inter` (see [`Volume::value`]); its world position (RAS, mm) is
/// `affine * (i, j, k, 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// `[nx, ny, nz]`; `nz` is 1 for a 2-D image.
    pub dims: [usize; 3],
    /// Raw voxel values in the file's datatype.
    pub data: VoxelData,
    /// `scl_slope` (1.0 when the header had 0 or a non-finite value: no scaling).
    pub scl_slope: f64,
    /// `scl_inter` (0.0 when no scaling).
    pub scl_inter: f64,
    /// Voxel → RAS mm, rows x, y, z of a 4×4 matrix whose last row is (0, 0, 0, 1).
    pub affine: [[f64; 4]; 3],
    /// Where the affine came from.
    pub geometry_source: GeometrySource,
    /// 1 or 2.
    pub nifti_version: u8,
    /// Header `descrip` field.
    pub description: String,
}

/// Which header fields gave the affine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometrySource {
    /// From the sform (srow_x/y/z).
    Sform,
    /// From the qform (quaternion, offsets, qfac).
    Qform,
    /// Neither code set: diag(pixdim[1..3]), origin at voxel (0,0,0).
    Pixdim,
}

impl Volume {
    /// Build a volume from typed data and an affine (no scaling).
    pub fn new(
        dims: [usize; 3],
        data: VoxelData,
        affine: [[f64; 4]; 3],
    ) -> Result<Self, ConvertError> {
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if dims.contains(&0) || n != Some(data.len()) {
            return Err(ConvertError::InvalidNifti(format!(
                "dims {dims:?} do not match {} voxels",
                data.len()
            )));
        }
        Ok(Volume {
            dims,
            data,
            scl_slope: 1.0,
            scl_inter: 0.0,
            affine,
            geometry_source: GeometrySource::Sform,
            nifti_version: 1,
            description: String::new(),
        })
    }

    /// Number of voxels.
    pub fn voxel_count(&self) -> usize {
        self.dims[0]
            .saturating_mul(self.dims[1])
            .saturating_mul(self.dims[2])
    }

    /// True when scl_slope/scl_inter change the raw values.
    pub fn is_scaled(&self) -> bool {
        self.scl_slope != 1.0 || self.scl_inter != 0.0
    }

    /// Real value of voxel (i, j, k) (scaling applied). Panics when out of range.
    pub fn value(&self, i: usize, j: usize, k: usize) -> f64 {
        let idx = i + self.dims[0] * (j + self.dims[1] * k);
        let mut v = Vec::with_capacity(1);
        self.data.raw_f64_into(idx..idx + 1, &mut v);
        v[0] * self.scl_slope + self.scl_inter
    }

    /// `[R, G, B]` of voxel (i, j, k) of a colour volume (alpha dropped), `None` for scalar data. Panics when out
    /// of range.
    pub fn rgb(&self, i: usize, j: usize, k: usize) -> Option<[u8; 3]> {
        let idx = i + self.dims[0] * (j + self.dims[1] * k);
        match &self.data {
            VoxelData::Rgb24(v) => Some(v[idx]),
            VoxelData::Rgba32(v) => {
                let [r, g, b, _] = v[idx];
                Some([r, g, b])
            }
            _ => None,
        }
    }

    /// Real values (scaling applied) of slice `k`, in NIfTI order (i fastest), into `out`.
    pub fn slice_values(&self, k: usize, out: &mut Vec<f64>) {
        let n = self.dims[0] * self.dims[1];
        self.data.raw_f64_into(k * n..(k + 1) * n, out);
        if self.is_scaled() {
            let (s, b) = (self.scl_slope, self.scl_inter);
            out.iter_mut().for_each(|x| *x = *x * s + b);
        }
    }

    /// World (RAS mm) position of a (fractional) voxel index.
    pub fn world(&self, ijk: [f64; 3]) -> [f64; 3] {
        let a = &self.affine;
        std::array::from_fn(|r| a[r][0] * ijk[0] + a[r][1] * ijk[1] + a[r][2] * ijk[2] + a[r][3])
    }
}

/// What one NIfTI file, label map and SEG may make the converter read and allocate. Every size in a header is
/// checked against these (with checked arithmetic) before anything of that size is allocated or read.
///
/// The defaults let real CT, MR and PET through and keep one conversion within a few GiB:
/// * `max_voxels` 2²⁹ (536 870 912): a 512 × 512 × 2048-slice CT (whole body at 0.6 mm) or a 1024 × 1024 × 512
///   photon-counting CT; MR (512 × 512 × 400 ≈ 2²⁷) and PET (400 × 400 × 700 ≈ 2²⁷) are far below.
/// * `max_volume_bytes` 1 GiB: the voxel data of one 3-D volume as stored (2²⁹ int16 voxels, 2²⁸ float32: a
///   512 × 512 × 1024 float PET/CT). A conversion holds the volume, its series (2 bytes per voxel), the label map
///   and the SEG at once: at these defaults at most ≈ 1 + 1 + 1 + 2 × 0.5 GiB, within the 4 GiB a job's process
///   may have.
/// * `max_extension_bytes` 8 MiB: NIfTI extensions between the header and the data (AFNI/XML/DICOM header
///   extensions are kilobytes to a few MiB); they are skipped, never held in memory.
/// * `max_segments` 1000: more than any label map in practice (uint8 maps hold at most 255 labels,
///   TotalSegmentator ≈ 120, brain parcellations a few hundred), far below the 65 535 Segment Numbers DICOM
///   allows (and the per-segment cost: items, colours).
/// * `max_segment_slices` 2²⁴: segments × slices, the table of candidate frames a SEG is planned with (4 bytes
///   each, 64 MiB at most): 1000 segments × 16 384 slices.
/// * `max_seg_frames` 100 000 non-empty frames (each carries ~2 KB of per-frame functional groups): 120
///   organs over 800 slices each.
/// * `max_seg_pixel_bytes` 512 MiB of packed bits: 16 384 frames of 512 × 512.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Voxels of one 3-D volume (the channel read of a 4-D one).
    pub max_voxels: u64,
    /// Bytes of voxel data of one 3-D volume, in the file's datatype.
    pub max_volume_bytes: u64,
    /// Bytes between the end of the header and `vox_offset` (NIfTI extensions).
    pub max_extension_bytes: u64,
    /// Segments of one SEG (never more than 65 535, DICOM's Segment Number range).
    pub max_segments: usize,
    /// Segments × slices of one SEG (the candidate frames, checked before anything per frame is allocated).
    pub max_segment_slices: u64,
    /// Non-empty frames of one SEG.
    pub max_seg_frames: u64,
    /// Bytes of a SEG's Pixel Data (1 bit per pixel of every frame).
    pub max_seg_pixel_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_voxels: 1 << 29,
            max_volume_bytes: 1 << 30,
            max_extension_bytes: 8 << 20,
            max_segments: 1000,
            max_segment_slices: 1 << 24,
            max_seg_frames: 100_000,
            max_seg_pixel_bytes: 512 << 20,
        }
    }
}

/// Options of [`read_nifti_with`] and [`read_nifti_from`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// For a 4-D file: which volume (0-based index along `dim[4]`) to read. `None` refuses 4-D input.
    pub channel: Option<usize>,
    /// Size limits (voxels, bytes, extensions).
    pub limits: Limits,
}

/// Read a `.nii` or `.nii.gz` (gzip detected by its magic) NIfTI-1 or NIfTI-2 file from memory.
/// 4-D input is refused; see [`read_nifti_with`] to pick a channel.
pub fn read_nifti(bytes: &[u8]) -> Result<Volume, ConvertError> {
    read_nifti_with(bytes, &ReadOptions::default())
}

/// [`read_nifti`] with options (channel of a 4-D file, limits).
pub fn read_nifti_with(bytes: &[u8], opts: &ReadOptions) -> Result<Volume, ConvertError> {
    read_nifti_from(bytes, opts)
}

/// Read a `.nii` or `.nii.gz` from a stream, reading no more than the header says it needs: the header, the
/// extensions (skipped, not kept), the voxels of the volume wanted. What follows is never read, so a gzip stream
/// that inflates to far more than its header declares costs nothing beyond that. Sizes are checked against
/// [`ReadOptions::limits`] before anything is allocated, and the voxel buffer grows only as data arrives.
///
/// An error of `r` itself (not of the gzip decoder) comes back as [`ConvertError::Read`] with the reader's
/// `io::Error` unchanged, so a caller can recognise its own errors (a size limit of a zip entry, say).
pub fn read_nifti_from(r: impl Read, opts: &ReadOptions) -> Result<Volume, ConvertError> {
    let mut src = Source(r);
    let mut magic = [0u8; 2];
    let n = read_full(&mut src, &mut magic).map_err(|e| io_error(e, "the file", 0))?;
    let prefix = std::io::Cursor::new(magic[..n].to_vec());
    if n == 2 && magic == [0x1f, 0x8b] {
        let dec = flate2::read::MultiGzDecoder::new(prefix.chain(src));
        read_stream(dec, opts, "the gzip stream")
    } else {
        read_stream(prefix.chain(src), opts, "the file")
    }
}

/// Marks errors of the caller's reader, so they are told apart from the gzip decoder's.
struct Source<R>(R);

#[derive(Debug)]
struct SourceError(std::io::Error);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), SourceError(e)))
    }
}

/// The reader's own error back, or a truncation/corruption error of the data after `at` bytes.
fn io_error(e: std::io::Error, what: &str, at: u64) -> ConvertError {
    if e.get_ref().is_some_and(|i| i.is::<SourceError>()) {
        let kind = e.kind();
        match e.into_inner().map(|i| i.downcast::<SourceError>()) {
            Some(Ok(source)) => return ConvertError::Read(source.0),
            Some(Err(other)) => return ConvertError::Read(std::io::Error::new(kind, other)),
            None => return ConvertError::Read(std::io::Error::from(kind)),
        }
    }
    ConvertError::Truncated(format!(
        "{what} is corrupt or truncated after {at} bytes: {e}"
    ))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Voxels decoded per read (a multiple of every datatype size).
const CHUNK_VOXELS: usize = 1 << 18;

fn read_stream(mut r: impl Read, opts: &ReadOptions, what: &str) -> Result<Volume, ConvertError> {
    // NIfTI-1's header is the shorter; NIfTI-2's 540 bytes are completed once sizeof_hdr says so.
    let mut head = vec![0u8; 540];
    let got = read_full(&mut r, &mut head[..348]).map_err(|e| io_error(e, what, 0))?;
    if got < 348 {
        return Err(ConvertError::InvalidNifti(format!(
            "{got} bytes: too short for a NIfTI header (348 bytes for NIfTI-1, 540 for NIfTI-2)"
        )));
    }
    let mut pos = 348u64;
    if header_version(&head)?.0 == 2 {
        let got = read_full(&mut r, &mut head[348..]).map_err(|e| io_error(e, what, pos))?;
        pos += got as u64;
        if got < 540 - 348 {
            return Err(ConvertError::Truncated(format!(
                "NIfTI-2 header needs 540 bytes, got {pos}"
            )));
        }
    } else {
        head.truncate(348);
    }
    let hdr = parse_header(&head)?;
    let plan = hdr.plan(opts)?;
    // Extensions (and the volumes before the channel wanted): read and dropped.
    let skip = plan.data_start - pos;
    let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
        .map_err(|e| io_error(e, what, pos))?;
    pos += skipped;
    if skipped < skip {
        return Err(plan.truncated(&hdr, pos));
    }
    let data = read_voxels(&mut r, &hdr, &plan, pos, what)?;
    build_volume(&hdr, plan.dims, data)
}

/// Reads `plan.voxels` voxels of the header's datatype, growing the buffer as the data arrives.
fn read_voxels(
    r: &mut impl Read,
    h: &Header,
    plan: &Plan,
    start: u64,
    what: &str,
) -> Result<VoxelData, ConvertError> {
    let n = plan.voxels;
    let le = h.le;
    let mut buf = vec![0u8; CHUNK_VOXELS * h.dtype_size];
    let mut pos = start;
    macro_rules! read_as {
        ($t:ty, $var:ident, $decode:expr) => {{
            let decode = $decode;
            let mut out: Vec<$t> = Vec::new();
            while out.len() < n {
                let want = (n - out.len()).min(CHUNK_VOXELS);
                let bytes = &mut buf[..want * h.dtype_size];
                let got = read_full(r, bytes).map_err(|e| io_error(e, what, pos))?;
                pos += got as u64;
                if got < bytes.len() {
                    return Err(plan.truncated(h, pos));
                }
                if out.capacity() - out.len() < want {
                    let grow = (n - out.len()).min(out.len().max(want));
                    out.try_reserve_exact(grow).map_err(|_| {
                        ConvertError::TooLarge(format!(
                            "cannot allocate memory for {n} voxels of {} bytes",
                            h.dtype_size
                        ))
                    })?;
                }
                out.extend(bytes.chunks_exact(h.dtype_size).map(|c| decode(c, le)));
            }
            VoxelData::$var(out)
        }};
    }
    macro_rules! num {
        ($t:ty) => {
            |c: &[u8], le: bool| {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(c);
                if le {
                    <$t>::from_le_bytes(a)
                } else {
                    <$t>::from_be_bytes(a)
                }
            }
        };
    }
    Ok(match h.datatype {
        2 => read_as!(u8, U8, |c: &[u8], _| c[0]),
        256 => read_as!(i8, I8, |c: &[u8], _| c[0] as i8),
        4 => read_as!(i16, I16, num!(i16)),
        512 => read_as!(u16, U16, num!(u16)),
        8 => read_as!(i32, I32, num!(i32)),
        768 => read_as!(u32, U32, num!(u32)),
        16 => read_as!(f32, F32, num!(f32)),
        64 => read_as!(f64, F64, num!(f64)),
        1024 => read_as!(i64, I64, num!(i64)),
        1280 => read_as!(u64, U64, num!(u64)),
        // colour bytes are in R, G, B(, A) order whatever the header's byte order
        128 => read_as!([u8; 3], Rgb24, |c: &[u8], _| [c[0], c[1], c[2]]),
        2304 => read_as!([u8; 4], Rgba32, |c: &[u8], _| [c[0], c[1], c[2], c[3]]),
        d => {
            return Err(ConvertError::InvalidNifti(format!(
                "unknown datatype code {d}"
            )))
        }
    })
}

#[derive(Debug)]
struct Header {
    version: u8,
    le: bool,
    dim: [i64; 8],
    datatype: i32,
    dtype_size: usize,
    pixdim: [f64; 8],
    vox_offset: u64,
    scl_slope: f64,
    scl_inter: f64,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
    descrip: String,
}

/// Where the voxels to read are, checked against the limits.
#[derive(Debug)]
struct Plan {
    /// `[nx, ny, nz]`.
    dims: [usize; 3],
    /// Voxels of one 3-D volume.
    voxels: usize,
    /// Byte offset of the first voxel read (vox_offset + the volumes before the channel).
    data_start: u64,
    /// Byte offset where the voxels read end.
    data_end: u64,
}

impl Plan {
    fn truncated(&self, h: &Header, have: u64) -> ConvertError {
        ConvertError::Truncated(format!(
            "header needs {} bytes (vox_offset {} + {} voxels × {} bytes) but the data ends after {have}",
            self.data_end, h.vox_offset, self.voxels, h.dtype_size
        ))
    }
}

impl Header {
    /// Size of the header including the 4 extension-flag bytes: the smallest valid vox_offset.
    fn min_vox_offset(&self) -> u64 {
        if self.version == 1 {
            352
        } else {
            544
        }
    }

    /// Validates dims and sizes against options and limits (checked arithmetic throughout).
    fn plan(&self, opts: &ReadOptions) -> Result<Plan, ConvertError> {
        let limits = &opts.limits;
        let nd = self.dim[0];
        let extent = |a: usize| if (a as i64) <= nd { self.dim[a] } else { 1 };
        for a in 5..=7 {
            if extent(a) > 1 {
                return Err(ConvertError::Unsupported(format!(
                    "{nd}-D volume (dim = {:?}): only 3-D volumes (or one channel of a 4-D one) can be converted",
                    &self.dim[1..=nd as usize]
                )));
            }
        }
        let nt = extent(4).max(1) as u64;
        let channel = match opts.channel {
            None if nt > 1 => {
                return Err(ConvertError::FourD {
                    channels: usize::try_from(nt).unwrap_or(usize::MAX),
                })
            }
            Some(c) if c as u64 >= nt => {
                return Err(ConvertError::InvalidArgument(format!(
                    "channel {c} requested but the file has {nt} volume(s) along dim[4]"
                )))
            }
            c => c.unwrap_or(0) as u64,
        };
        let sd: [u64; 3] = std::array::from_fn(|a| extent(a + 1).max(1) as u64);
        let too_large = |why: String| ConvertError::TooLarge(why);
        let nvox = sd
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                too_large(format!(
                    "dimensions {} × {} × {} overflow a 64-bit voxel count",
                    sd[0], sd[1], sd[2]
                ))
            })?;
        if nvox > limits.max_voxels {
            return Err(too_large(format!(
                "{nvox} voxels ({} × {} × {}) exceed the limit of {}",
                sd[0], sd[1], sd[2], limits.max_voxels
            )));
        }
        let volume_bytes = nvox
            .checked_mul(self.dtype_size as u64)
            .filter(|&b| b <= limits.max_volume_bytes)
            .ok_or_else(|| {
                too_large(format!(
                    "{nvox} voxels × {} bytes exceed the limit of {} bytes for one volume",
                    self.dtype_size, limits.max_volume_bytes
                ))
            })?;
        let min = self.min_vox_offset();
        if self.vox_offset < min {
            return Err(ConvertError::InvalidNifti(format!(
                "vox_offset {} is inside the header (must be at least {min})",
                self.vox_offset
            )));
        }
        if self.vox_offset - min > limits.max_extension_bytes {
            return Err(too_large(format!(
                "vox_offset {} leaves {} bytes of extensions before the data; at most {} are accepted",
                self.vox_offset,
                self.vox_offset - min,
                limits.max_extension_bytes
            )));
        }
        let overflow = || too_large("data offset overflows".into());
        let data_start = channel
            .checked_mul(volume_bytes)
            .and_then(|b| b.checked_add(self.vox_offset))
            .ok_or_else(overflow)?;
        let data_end = data_start.checked_add(volume_bytes).ok_or_else(overflow)?;
        let us = |x: u64| usize::try_from(x).map_err(|_| overflow());
        Ok(Plan {
            dims: [us(sd[0])?, us(sd[1])?, us(sd[2])?],
            voxels: us(nvox)?,
            data_start,
            data_end,
        })
    }
}

struct Rd<'a> {
    b: &'a [u8],
    le: bool,
}

impl Rd<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        if let Some(s) = self.b.get(off..off + N) {
            a.copy_from_slice(s);
        }
        if !self.le {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.arr(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    fn f32(&self, off: usize) -> f64 {
        f32::from_le_bytes(self.arr(off)) as f64
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
    fn text(&self, off: usize, len: usize) -> String {
        let s = self.b.get(off..off + len).unwrap_or_default();
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        String::from_utf8_lossy(&s[..end]).trim().to_string()
    }
}

/// NIfTI version (1 or 2) and byte order (little endian?) from `sizeof_hdr`.
fn header_version(b: &[u8]) -> Result<(u8, bool), ConvertError> {
    let first: [u8; 4] = match b.get(..4).and_then(|s| s.try_into().ok()) {
        Some(a) => a,
        None => {
            return Err(ConvertError::InvalidNifti(
                "too short for a NIfTI header".into(),
            ))
        }
    };
    match (i32::from_le_bytes(first), i32::from_be_bytes(first)) {
        (348, _) => Ok((1, true)),
        (_, 348) => Ok((1, false)),
        (540, _) => Ok((2, true)),
        (_, 540) => Ok((2, false)),
        _ => Err(ConvertError::InvalidNifti(
            "not a NIfTI file: sizeof_hdr is neither 348 (NIfTI-1) nor 540 (NIfTI-2)".into(),
        )),
    }
}

fn parse_header(b: &[u8]) -> Result<Header, ConvertError> {
    if b.len() < 348 {
        return Err(ConvertError::InvalidNifti(format!(
            "{} bytes: too short for a NIfTI header (348 bytes for NIfTI-1, 540 for NIfTI-2)",
            b.len()
        )));
    }
    let (version, le) = header_version(b)?;
    let r = Rd { b, le };
    let bitpix;
    let mut h = if version == 1 {
        let magic = &b[344..348];
        match magic {
            b"n+1\0" => {}
            b"ni1\0" => {
                return Err(ConvertError::Unsupported(
                    "NIfTI-1 header/image pair (.hdr/.img): only single-file .nii / .nii.gz are supported".into(),
                ))
            }
            _ => {
                return Err(ConvertError::InvalidNifti(
                    "NIfTI-1 magic missing (Analyze 7.5 files are not supported)".into(),
                ))
            }
        }
        let vox_offset = r.f32(108);
        if !(vox_offset.is_finite() && vox_offset >= 0.0 && vox_offset.fract() == 0.0) {
            return Err(ConvertError::InvalidNifti(format!(
                "vox_offset {vox_offset} is not a byte offset (a non-negative whole number)"
            )));
        }
        bitpix = r.i16(72) as i64;
        Header {
            version,
            le,
            dim: std::array::from_fn(|a| r.i16(40 + 2 * a) as i64),
            datatype: r.i16(70) as i32,
            dtype_size: 0,
            pixdim: std::array::from_fn(|a| r.f32(76 + 4 * a)),
            // a finite f32 ≥ 0 converts exactly (saturating at u64::MAX)
            vox_offset: vox_offset as u64,
            scl_slope: r.f32(112),
            scl_inter: r.f32(116),
            qform_code: r.i16(252) as i32,
            sform_code: r.i16(254) as i32,
            quatern: [r.f32(256), r.f32(260), r.f32(264)],
            qoffset: [r.f32(268), r.f32(272), r.f32(276)],
            srow: std::array::from_fn(|row| std::array::from_fn(|c| r.f32(280 + 16 * row + 4 * c))),
            descrip: r.text(148, 80),
        }
    } else {
        if b.len() < 540 {
            return Err(ConvertError::Truncated(format!(
                "NIfTI-2 header needs 540 bytes, got {}",
                b.len()
            )));
        }
        match &b[4..12] {
            b"n+2\0\r\n\x1a\n" => {}
            m if &m[..3] == b"ni2" => {
                return Err(ConvertError::Unsupported(
                    "NIfTI-2 header/image pair (.hdr/.img): only single-file .nii / .nii.gz are supported".into(),
                ))
            }
            _ => return Err(ConvertError::InvalidNifti("NIfTI-2 magic missing or corrupt".into())),
        }
        let vox_offset = r.i64(168);
        bitpix = r.i16(14) as i64;
        Header {
            version,
            le,
            dim: std::array::from_fn(|a| r.i64(16 + 8 * a)),
            datatype: r.i16(12) as i32,
            dtype_size: 0,
            pixdim: std::array::from_fn(|a| r.f64(104 + 8 * a)),
            vox_offset: u64::try_from(vox_offset).map_err(|_| {
                ConvertError::InvalidNifti(format!("vox_offset {vox_offset} is negative"))
            })?,
            scl_slope: r.f64(176),
            scl_inter: r.f64(184),
            qform_code: r.i32(344),
            sform_code: r.i32(348),
            quatern: [r.f64(352), r.f64(360), r.f64(368)],
            qoffset: [r.f64(376), r.f64(384), r.f64(392)],
            srow: std::array::from_fn(|row| std::array::from_fn(|c| r.f64(400 + 32 * row + 8 * c))),
            descrip: r.text(240, 80),
        }
    };
    let nd = h.dim[0];
    if !(1..=7).contains(&nd) {
        return Err(ConvertError::InvalidNifti(format!(
            "dim[0] = {nd}: must be 1..7"
        )));
    }
    for a in 1..=nd as usize {
        if h.dim[a] < 1 {
            return Err(ConvertError::InvalidNifti(format!(
                "dim[{a}] = {}: every used dimension must be ≥ 1",
                h.dim[a]
            )));
        }
    }
    h.dtype_size = match h.datatype {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 | 1024 | 1280 => 8,
        128 => 3,
        2304 => 4,
        32 | 1792 | 2048 => {
            return Err(ConvertError::Unsupported(format!(
                "complex-valued NIfTI (datatype {}) cannot be converted: DICOM has no image representation \
                 for complex pixels; split it into magnitude and phase (or real and imaginary) volumes first",
                h.datatype
            )))
        }
        1536 => {
            return Err(ConvertError::Unsupported(
                "float128 NIfTI (datatype 1536) is not supported: convert it to float64 first".into(),
            ))
        }
        1 => {
            return Err(ConvertError::Unsupported(
                "1-bit (DT_BINARY) NIfTI is not supported".into(),
            ))
        }
        d => {
            return Err(ConvertError::InvalidNifti(format!(
                "unknown datatype code {d}"
            )))
        }
    };
    if bitpix != 8 * h.dtype_size as i64 {
        return Err(ConvertError::InvalidNifti(format!(
            "bitpix {bitpix} does not match datatype {} ({} bits per voxel)",
            h.datatype,
            8 * h.dtype_size
        )));
    }
    Ok(h)
}

fn build_volume(h: &Header, dims: [usize; 3], data: VoxelData) -> Result<Volume, ConvertError> {
    // scl_slope/scl_inter do not apply to colour data (NIfTI-1: "not for RGB types"). As nibabel: slope 0 or NaN
    // (nibabel's own default) = no scaling; a valid slope with a non-finite intercept is an error; an infinite
    // slope scales every voxel to ±inf or NaN and is refused.
    let (scl_slope, scl_inter) = if data.is_colour() || h.scl_slope == 0.0 || h.scl_slope.is_nan() {
        (1.0, 0.0)
    } else if h.scl_slope.is_infinite() {
        return Err(ConvertError::InvalidNifti(format!(
            "scl_slope is {}: voxel values cannot be scaled by it",
            h.scl_slope
        )));
    } else if !h.scl_inter.is_finite() {
        return Err(ConvertError::InvalidNifti(format!(
            "scl_slope {} with scl_inter {}: the intercept must be a finite number",
            h.scl_slope, h.scl_inter
        )));
    } else {
        (h.scl_slope, h.scl_inter)
    };
    // Voxel sizes are used when the geometry comes from the qform or from pixdim alone.
    if h.sform_code <= 0 {
        for a in 1..=3 {
            let p = h.pixdim[a];
            if !p.is_finite() || p < 0.0 {
                return Err(ConvertError::InvalidNifti(format!(
                    "pixdim[{a}] = {p}: voxel sizes must be finite and not negative"
                )));
            }
        }
    }
    let (affine, geometry_source) = if h.sform_code > 0 {
        (h.srow, GeometrySource::Sform)
    } else if h.qform_code > 0 {
        (qform_affine(h), GeometrySource::Qform)
    } else {
        let p = |a: usize| {
            if h.pixdim[a] > 0.0 && h.pixdim[a].is_finite() {
                h.pixdim[a]
            } else {
                1.0
            }
        };
        (
            [
                [p(1), 0.0, 0.0, 0.0],
                [0.0, p(2), 0.0, 0.0],
                [0.0, 0.0, p(3), 0.0],
            ],
            GeometrySource::Pixdim,
        )
    };
    if affine.iter().flatten().any(|x| !x.is_finite()) {
        return Err(ConvertError::InvalidNifti(format!(
            "non-finite value in the {geometry_source:?} affine"
        )));
    }
    Ok(Volume {
        dims,
        data,
        scl_slope,
        scl_inter,
        affine,
        geometry_source,
        nifti_version: h.version,
        description: h.descrip.clone(),
    })
}

/// Affine from the quaternion (NIfTI-1 "method 2"), as nibabel's `get_qform`.
fn qform_affine(h: &Header) -> [[f64; 4]; 3] {
    let [b, c, d] = h.quatern;
    let a2 = 1.0 - (b * b + c * c + d * d);
    let (a, b, c, d) = if a2 < 1e-7 {
        // 180° rotation: normalise (b, c, d)
        let n = (b * b + c * c + d * d).sqrt().max(f64::MIN_POSITIVE);
        (0.0, b / n, c / n, d / n)
    } else {
        (a2.sqrt(), b, c, d)
    };
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let z = |a: usize| if h.pixdim[a] > 0.0 { h.pixdim[a] } else { 1.0 };
    let zooms = [z(1), z(2), z(3) * qfac];
    std::array::from_fn(|row| {
        [
            r[row][0] * zooms[0],
            r[row][1] * zooms[1],
            r[row][2] * zooms[2],
            h.qoffset[row],
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A NIfTI-1 header (little endian, uint8 unless changed) followed by `data`.
    fn nii1(dims: &[i16], data: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 352];
        h[0..4].copy_from_slice(&348i32.to_le_bytes());
        let mut dim = [1i16; 8];
        dim[0] = dims.len() as i16;
        dim[1..=dims.len()].copy_from_slice(dims);
        for (a, d) in dim.iter().enumerate() {
            h[40 + 2 * a..42 + 2 * a].copy_from_slice(&d.to_le_bytes());
        }
        h[70..72].copy_from_slice(&2i16.to_le_bytes());
        h[72..74].copy_from_slice(&8i16.to_le_bytes());
        for a in 0..4 {
            h[76 + 4 * a..80 + 4 * a].copy_from_slice(&1f32.to_le_bytes());
        }
        h[108..112].copy_from_slice(&352f32.to_le_bytes());
        h[344..348].copy_from_slice(b"n+1\0");
        h.extend_from_slice(data);
        h
    }

    /// A NIfTI-2 header (little endian, uint8) with 64-bit dims, no data.
    fn nii2(dims: &[i64]) -> Vec<u8> {
        let mut h = vec![0u8; 544];
        h[0..4].copy_from_slice(&540i32.to_le_bytes());
        h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        h[12..14].copy_from_slice(&2i16.to_le_bytes());
        h[14..16].copy_from_slice(&8i16.to_le_bytes());
        let mut dim = [1i64; 8];
        dim[0] = dims.len() as i64;
        dim[1..=dims.len()].copy_from_slice(dims);
        for (a, d) in dim.iter().enumerate() {
            h[16 + 8 * a..24 + 8 * a].copy_from_slice(&d.to_le_bytes());
        }
        for a in 0..4 {
            h[104 + 8 * a..112 + 8 * a].copy_from_slice(&1f64.to_le_bytes());
        }
        h[168..176].copy_from_slice(&544i64.to_le_bytes());
        h
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn set_f32(b: &mut [u8], at: usize, v: f32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Counts what is read from it, and fails when more than `allowed` bytes are asked for.
    struct Metered<'a> {
        inner: &'a [u8],
        read: u64,
        allowed: u64,
    }

    impl Read for Metered<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.read >= self.allowed {
                return Err(std::io::Error::other("read past the allowed bytes"));
            }
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn good_files_read_plain_and_gzipped() {
        let data: Vec<u8> = (0..24).collect();
        let b = nii1(&[4, 3, 2], &data);
        for bytes in [b.clone(), gz(&b)] {
            let v = read_nifti(&bytes).unwrap();
            assert_eq!(v.dims, [4, 3, 2]);
            assert_eq!(v.data, VoxelData::U8(data.clone()));
        }
    }

    #[test]
    fn overflowing_dims_are_refused_before_allocating() {
        // The reported case: NIfTI-2 dims whose product is 2^64 (wraps to 0 unchecked).
        let e = read_nifti(&nii2(&[32768, 32768, 1 << 34])).unwrap_err();
        assert!(
            matches!(e, ConvertError::TooLarge(_)) && e.to_string().contains("overflow"),
            "{e}"
        );
        let e = read_nifti(&gz(&nii2(&[32768, 32768, 1 << 34]))).unwrap_err();
        assert!(matches!(e, ConvertError::TooLarge(_)), "{e}");
        for dims in [
            [i64::MAX, i64::MAX, 2],
            [1 << 40, 1, 1],
            [1 << 20, 1 << 20, 1],
        ] {
            let e = read_nifti(&nii2(&dims)).unwrap_err();
            assert!(matches!(e, ConvertError::TooLarge(_)), "{dims:?}: {e}");
        }
        // Over the voxel limit but not overflowing.
        let e = read_nifti(&nii2(&[1 << 15, 1 << 15, 1 << 10])).unwrap_err();
        assert!(e.to_string().contains("exceed the limit"), "{e}");
        // Under the voxel limit, over the byte limit (float64).
        let mut b = nii2(&[1 << 14, 1 << 14, 2]);
        b[12..14].copy_from_slice(&64i16.to_le_bytes());
        b[14..16].copy_from_slice(&64i16.to_le_bytes());
        let opts = ReadOptions {
            limits: Limits {
                max_volume_bytes: 1 << 30,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = read_nifti_with(&b, &opts).unwrap_err();
        assert!(e.to_string().contains("bytes for one volume"), "{e}");
        // A huge 4-D file: the channel count itself is not allocated.
        let e = read_nifti(&nii2(&[2, 2, 2, i64::MAX])).unwrap_err();
        assert!(matches!(e, ConvertError::FourD { .. }), "{e}");
        let opts = ReadOptions {
            channel: Some(1 << 40),
            ..Default::default()
        };
        let e = read_nifti_with(&nii2(&[1 << 14, 1 << 14, 1, i64::MAX]), &opts).unwrap_err();
        assert!(matches!(e, ConvertError::TooLarge(_)), "{e}");
    }

    #[test]
    fn bad_dims_datatype_and_bitpix_are_errors() {
        for (dims, what) in [
            (vec![0i16, 3, 2], "dim[1] = 0"),
            (vec![4, -3, 2], "dim[2] = -3"),
        ] {
            let e = read_nifti(&nii1(&dims, &[0; 64])).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
        let mut b = nii1(&[2, 2, 2], &[0; 8]);
        b[40..42].copy_from_slice(&8i16.to_le_bytes());
        assert!(read_nifti(&b)
            .unwrap_err()
            .to_string()
            .contains("dim[0] = 8"));
        b[40..42].copy_from_slice(&0i16.to_le_bytes());
        assert!(read_nifti(&b)
            .unwrap_err()
            .to_string()
            .contains("dim[0] = 0"));
        // 5-D with a real 5th dimension
        let e = read_nifti(&nii1(&[2, 2, 2, 1, 2], &[0; 16])).unwrap_err();
        assert!(matches!(e, ConvertError::Unsupported(_)), "{e}");
        // bitpix that does not match the datatype
        let mut b = nii1(&[2, 2, 2], &[0; 8]);
        b[72..74].copy_from_slice(&16i16.to_le_bytes());
        let e = read_nifti(&b).unwrap_err();
        assert!(e.to_string().contains("bitpix 16"), "{e}");
        b[72..74].copy_from_slice(&0i16.to_le_bytes());
        assert!(read_nifti(&b).is_err());
        // unknown datatype
        let mut b = nii1(&[2, 2, 2], &[0; 8]);
        b[70..72].copy_from_slice(&3i16.to_le_bytes());
        assert!(read_nifti(&b)
            .unwrap_err()
            .to_string()
            .contains("unknown datatype"));
    }

    #[test]
    fn vox_offset_is_bounded() {
        let data = [7u8; 8];
        // inside the header
        for off in [0f32, 348.0, 351.0] {
            let mut b = nii1(&[2, 2, 2], &data);
            set_f32(&mut b, 108, off);
            let e = read_nifti(&b).unwrap_err();
            assert!(e.to_string().contains("inside the header"), "{off}: {e}");
        }
        // not a byte offset
        for off in [f32::NAN, f32::INFINITY, -1.0, 352.5] {
            let mut b = nii1(&[2, 2, 2], &data);
            set_f32(&mut b, 108, off);
            let e = read_nifti(&b).unwrap_err();
            assert!(e.to_string().contains("vox_offset"), "{off}: {e}");
        }
        // 4 GiB of "extensions" (the reported case): refused from the header, nothing read
        let mut b = nii1(&[2, 2, 2], &data);
        set_f32(&mut b, 108, 4294967296.0);
        let z = gz(&b);
        let mut src = Metered {
            inner: &z,
            read: 0,
            allowed: u64::MAX,
        };
        let e = read_nifti_from(&mut src, &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(e, ConvertError::TooLarge(_)) && e.to_string().contains("extensions"),
            "{e}"
        );
        // a few KiB of extensions are skipped
        let mut b = nii1(&[2, 2, 2], &[]);
        set_f32(&mut b, 108, 352.0 + 4096.0);
        b.extend(vec![0xEE; 4096]);
        b.extend_from_slice(&data);
        assert_eq!(read_nifti(&b).unwrap().data, VoxelData::U8(data.to_vec()));
        // NIfTI-2: negative, inside the header
        for off in [-1i64, 540] {
            let mut b = nii2(&[2, 2, 2]);
            b[168..176].copy_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&data);
            let e = read_nifti(&b).unwrap_err();
            assert!(e.to_string().contains("vox_offset"), "{off}: {e}");
        }
        let mut b = nii2(&[2, 2, 2]);
        b[168..176].copy_from_slice(&i64::MAX.to_le_bytes());
        assert!(matches!(
            read_nifti(&b).unwrap_err(),
            ConvertError::TooLarge(_)
        ));
    }

    #[test]
    fn gzip_is_inflated_only_as_far_as_the_header_needs() {
        // 64 MiB of zeros after a 2×2×2 volume: inflated only up to the voxels.
        let mut b = nii1(&[2, 2, 2], &[1; 8]);
        b.extend(vec![0u8; 64 << 20]);
        let z = gz(&b);
        let mut src = Metered {
            inner: &z,
            read: 0,
            allowed: u64::MAX,
        };
        let v = read_nifti_from(&mut src, &ReadOptions::default()).unwrap();
        assert_eq!(v.data, VoxelData::U8(vec![1; 8]));
        assert!(
            src.read < 256 << 10,
            "read {} of {} compressed bytes",
            src.read,
            z.len()
        );
        // A plain file: nothing after the data is read either.
        let mut src = Metered {
            inner: &b,
            read: 0,
            allowed: 352 + 8,
        };
        read_nifti_from(&mut src, &ReadOptions::default()).unwrap();
        assert_eq!(src.read, 360);
    }

    #[test]
    fn truncated_and_corrupt_gzip_are_typed_errors() {
        let data: Vec<u8> = (0..100).collect();
        let z = gz(&nii1(&[10, 10, 1], &data));
        // (the 8-byte gzip trailer is never needed: reading stops at the end of the voxels)
        for cut in [0, 5, 12, 40, z.len() / 2, z.len() - 16] {
            let e = read_nifti(&z[..cut]).unwrap_err();
            assert!(
                matches!(
                    e,
                    ConvertError::Truncated(_) | ConvertError::InvalidNifti(_)
                ),
                "cut {cut}: {e:?}"
            );
        }
        let mut bad = z.clone();
        for b in &mut bad[10..30] {
            *b ^= 0x5A;
        }
        assert!(read_nifti(&bad).is_err());
        // header says more voxels than there are
        let e = read_nifti(&gz(&nii1(&[10, 10, 2], &data))).unwrap_err();
        assert!(
            matches!(e, ConvertError::Truncated(_)) && e.to_string().contains("200 voxels"),
            "{e}"
        );
        let e = read_nifti(&nii1(&[10, 10, 2], &data)).unwrap_err();
        assert!(matches!(e, ConvertError::Truncated(_)), "{e}");
    }

    #[test]
    fn the_readers_own_errors_come_back_unchanged() {
        #[derive(Debug)]
        struct Mine;
        impl std::fmt::Display for Mine {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("entry limit")
            }
        }
        impl std::error::Error for Mine {}
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other(Mine));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(0);
                self.0 -= n;
                Ok(n)
            }
        }
        let e = read_nifti_from(Failing(0), &ReadOptions::default()).unwrap_err();
        match e {
            ConvertError::Read(io) => assert!(io.get_ref().unwrap().is::<Mine>()),
            other => panic!("{other:?}"),
        }
        // through the gzip decoder too
        let z = gz(&nii1(&[10, 10, 10], &[0; 1000]));
        let mut src = (&z[..20]).chain(Failing(0));
        let e = read_nifti_from(&mut src, &ReadOptions::default()).unwrap_err();
        match e {
            ConvertError::Read(io) => assert!(io.get_ref().unwrap().is::<Mine>()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scaling_and_voxel_sizes_are_checked() {
        let b = nii1(&[2, 2, 2], &[3; 8]);
        let with = |slope: f32, inter: f32| {
            let mut b = b.clone();
            set_f32(&mut b, 112, slope);
            set_f32(&mut b, 116, inter);
            read_nifti(&b)
        };
        // 0 and NaN: no scaling (nibabel's convention)
        assert_eq!(with(0.0, 5.0).unwrap().value(0, 0, 0), 3.0);
        assert_eq!(with(f32::NAN, f32::NAN).unwrap().value(0, 0, 0), 3.0);
        assert_eq!(with(2.0, 1.0).unwrap().value(0, 0, 0), 7.0);
        for (s, i) in [
            (f32::INFINITY, 0.0),
            (f32::NEG_INFINITY, 0.0),
            (2.0, f32::NAN),
            (2.0, f32::INFINITY),
        ] {
            let e = with(s, i).unwrap_err();
            assert!(e.to_string().contains("scl_"), "{s} {i}: {e}");
        }
        // voxel sizes used for the geometry (no sform): finite and not negative
        for p in [f32::NAN, f32::INFINITY, -2.0] {
            let mut b = b.clone();
            set_f32(&mut b, 80, p);
            let e = read_nifti(&b).unwrap_err();
            assert!(e.to_string().contains("pixdim[1]"), "{p}: {e}");
        }
        // a non-finite sform is refused
        let mut b = b.clone();
        b[254..256].copy_from_slice(&2i16.to_le_bytes());
        set_f32(&mut b, 280, f32::NAN);
        assert!(read_nifti(&b)
            .unwrap_err()
            .to_string()
            .contains("non-finite"));
    }
}
