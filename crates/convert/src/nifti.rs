//! NIfTI-1 / NIfTI-2 reader (single-file `.nii`, optionally gzip-compressed).

use std::io::Read;

use crate::ConvertError;

/// Refuse volumes with more voxels than this (2^31).
pub const MAX_VOXELS: u64 = 1 << 31;

/// Voxel storage, in the file's own datatype (no widening: a 512×512×300 float32 volume stays 300 MB).
///
/// The colour types (`Rgb24`, `Rgba32`) have no scalar value of their own: wherever a scalar is asked for
/// ([`VoxelData::raw_f64_into`], [`Volume::value`], [`Volume::slice_values`]) a colour voxel gives its packed
/// value `R + 256·G + 65536·B` (alpha left out), lossless and integer, so equality checks work; use
/// [`Volume::rgb`] for the components.
#[derive(Debug, Clone, PartialEq)]
pub enum VoxelData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
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
    Sform,
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
        self.dims[0] * self.dims[1] * self.dims[2]
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

/// Options of [`read_nifti_with`].
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// For a 4-D file: which volume (0-based index along `dim[4]`) to read. `None` refuses 4-D input.
    pub channel: Option<usize>,
    /// Refuse volumes with more voxels (default [`MAX_VOXELS`]).
    pub max_voxels: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            channel: None,
            max_voxels: MAX_VOXELS,
        }
    }
}

/// Read a `.nii` or `.nii.gz` (gzip detected by its magic) NIfTI-1 or NIfTI-2 file from memory.
/// 4-D input is refused; see [`read_nifti_with`] to pick a channel.
pub fn read_nifti(bytes: &[u8]) -> Result<Volume, ConvertError> {
    read_nifti_with(bytes, &ReadOptions::default())
}

/// [`read_nifti`] with options (channel of a 4-D file, voxel limit).
pub fn read_nifti_with(bytes: &[u8], opts: &ReadOptions) -> Result<Volume, ConvertError> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut dec = flate2::read::MultiGzDecoder::new(bytes);
        // Header first (NIfTI-2 is the larger one), then exactly what the header needs.
        let mut head = Vec::with_capacity(544);
        read_up_to(&mut dec, &mut head, 544)?;
        let hdr = parse_header(&head)?;
        let needed = hdr.data_end(opts)?;
        let mut all = head;
        if (all.len() as u64) < needed {
            let want = needed - all.len() as u64;
            read_up_to(&mut dec, &mut all, want)?;
        }
        if (all.len() as u64) < needed {
            return Err(ConvertError::Truncated(format!(
                "header needs {needed} bytes (vox_offset + {} voxels × {} bytes) but the decompressed file has only {}",
                hdr.voxels_per_volume() * hdr.volumes_needed(opts),
                hdr.dtype_size,
                all.len()
            )));
        }
        build_volume(&hdr, &all, opts)
    } else {
        let hdr = parse_header(bytes)?;
        let needed = hdr.data_end(opts)?;
        if (bytes.len() as u64) < needed {
            return Err(ConvertError::Truncated(format!(
                "header needs {needed} bytes (vox_offset + {} voxels × {} bytes) but the file has only {}",
                hdr.voxels_per_volume() * hdr.volumes_needed(opts),
                hdr.dtype_size,
                bytes.len()
            )));
        }
        build_volume(&hdr, bytes, opts)
    }
}

fn read_up_to(r: &mut impl Read, out: &mut Vec<u8>, n: u64) -> Result<(), ConvertError> {
    // Grow in steps, so a header lying about a huge size does not make us allocate it upfront.
    match r.take(n).read_to_end(out) {
        Ok(_) => Ok(()),
        Err(e) => Err(ConvertError::Truncated(format!(
            "gzip stream is corrupt or truncated after {} decompressed bytes: {e}",
            out.len()
        ))),
    }
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

impl Header {
    fn spatial_dims(&self) -> [u64; 3] {
        let nd = self.dim[0];
        std::array::from_fn(|a| {
            if (a as i64) < nd {
                self.dim[a + 1] as u64
            } else {
                1
            }
        })
    }
    fn voxels_per_volume(&self) -> u64 {
        self.spatial_dims().iter().product()
    }
    fn volumes_needed(&self, opts: &ReadOptions) -> u64 {
        opts.channel.map(|c| c as u64 + 1).unwrap_or(1)
    }
    /// Validate dims against options and return the byte offset where the data we read ends.
    fn data_end(&self, opts: &ReadOptions) -> Result<u64, ConvertError> {
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
        match opts.channel {
            None if nt > 1 => {
                return Err(ConvertError::FourD {
                    channels: nt as usize,
                })
            }
            Some(c) if c as u64 >= nt => {
                return Err(ConvertError::InvalidArgument(format!(
                    "channel {c} requested but the file has {nt} volume(s) along dim[4]"
                )))
            }
            _ => {}
        }
        let nvox = self.voxels_per_volume();
        if nvox > opts.max_voxels {
            return Err(ConvertError::TooLarge(format!(
                "{nvox} voxels ({:?}) exceed the limit of {}",
                self.spatial_dims(),
                opts.max_voxels
            )));
        }
        let bytes = nvox
            .checked_mul(self.dtype_size as u64)
            .and_then(|b| b.checked_mul(self.volumes_needed(opts)))
            .and_then(|b| b.checked_add(self.vox_offset))
            .ok_or_else(|| ConvertError::TooLarge("data size overflows".into()))?;
        Ok(bytes)
    }
}

struct Rd<'a> {
    b: &'a [u8],
    le: bool,
}

impl Rd<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
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
        let s = &self.b[off..off + len];
        let end = s.iter().position(|&c| c == 0).unwrap_or(len);
        String::from_utf8_lossy(&s[..end]).trim().to_string()
    }
}

fn parse_header(b: &[u8]) -> Result<Header, ConvertError> {
    if b.len() < 348 {
        return Err(ConvertError::InvalidNifti(format!(
            "{} bytes: too short for a NIfTI header (348 bytes for NIfTI-1, 540 for NIfTI-2)",
            b.len()
        )));
    }
    let s_le = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let s_be = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (version, le) = match (s_le, s_be) {
        (348, _) => (1, true),
        (_, 348) => (1, false),
        (540, _) => (2, true),
        (_, 540) => (2, false),
        _ => {
            return Err(ConvertError::InvalidNifti(
                "not a NIfTI file: sizeof_hdr is neither 348 (NIfTI-1) nor 540 (NIfTI-2)".into(),
            ))
        }
    };
    let r = Rd { b, le };
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
        Header {
            version,
            le,
            dim: std::array::from_fn(|a| r.i16(40 + 2 * a) as i64),
            datatype: r.i16(70) as i32,
            dtype_size: 0,
            pixdim: std::array::from_fn(|a| r.f32(76 + 4 * a)),
            vox_offset: if vox_offset.is_finite() && vox_offset >= 0.0 {
                vox_offset as u64
            } else {
                u64::MAX
            },
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
        Header {
            version,
            le,
            dim: std::array::from_fn(|a| r.i64(16 + 8 * a)),
            datatype: r.i16(12) as i32,
            dtype_size: 0,
            pixdim: std::array::from_fn(|a| r.f64(104 + 8 * a)),
            vox_offset: u64::try_from(vox_offset).unwrap_or(u64::MAX),
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
    let hsize = if version == 1 { 352 } else { 544 };
    if h.vox_offset == u64::MAX || h.vox_offset < hsize - 4 {
        return Err(ConvertError::InvalidNifti(format!(
            "vox_offset {} is inside the header",
            if h.vox_offset == u64::MAX {
                -1
            } else {
                h.vox_offset as i64
            }
        )));
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
    Ok(h)
}

fn build_volume(h: &Header, bytes: &[u8], opts: &ReadOptions) -> Result<Volume, ConvertError> {
    let sd = h.spatial_dims();
    let dims = [sd[0] as usize, sd[1] as usize, sd[2] as usize];
    let n = h.voxels_per_volume() as usize;
    let start = h.vox_offset as usize + opts.channel.unwrap_or(0) * n * h.dtype_size;
    let raw = &bytes[start..start + n * h.dtype_size];
    let le = h.le;
    macro_rules! conv {
        ($t:ty, $var:ident) => {{
            const S: usize = std::mem::size_of::<$t>();
            let v: Vec<$t> = raw
                .chunks_exact(S)
                .map(|c| {
                    let a: [u8; S] = c.try_into().expect("chunk size");
                    if le {
                        <$t>::from_le_bytes(a)
                    } else {
                        <$t>::from_be_bytes(a)
                    }
                })
                .collect();
            VoxelData::$var(v)
        }};
    }
    let data = match h.datatype {
        2 => VoxelData::U8(raw.to_vec()),
        256 => VoxelData::I8(raw.iter().map(|&x| x as i8).collect()),
        4 => conv!(i16, I16),
        512 => conv!(u16, U16),
        8 => conv!(i32, I32),
        768 => conv!(u32, U32),
        16 => conv!(f32, F32),
        64 => conv!(f64, F64),
        1024 => conv!(i64, I64),
        1280 => conv!(u64, U64),
        // colour bytes are in R, G, B(, A) order whatever the header's byte order
        128 => VoxelData::Rgb24(raw.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()),
        2304 => VoxelData::Rgba32(
            raw.chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect(),
        ),
        _ => unreachable!("datatype checked in parse_header"),
    };
    // scl_slope/scl_inter do not apply to colour data (NIfTI-1: "not for RGB types")
    let (scl_slope, scl_inter) = if data.is_colour() {
        (1.0, 0.0)
    } else if h.scl_slope != 0.0 && h.scl_slope.is_finite() {
        (
            h.scl_slope,
            if h.scl_inter.is_finite() {
                h.scl_inter
            } else {
                0.0
            },
        )
    } else {
        (1.0, 0.0)
    };
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
