//! Hand-written NIfTI-1/2 files and gzip streams for tests: every header field under the
//! test's control (so that files can lie), written the way the format lays them out.
#![allow(clippy::needless_range_loop)]

use std::io::Write;

/// An affine (`srow_x`, `srow_y`, `srow_z`).
pub type Affine = [[f64; 4]; 3];

/// A NIfTI file to write.
#[derive(Clone)]
pub struct Nii {
    /// 1 (348-byte header) or 2 (540-byte header).
    pub version: u8,
    /// Header and voxels in big-endian byte order.
    pub big_endian: bool,
    /// dim[1..]
    pub dims: Vec<usize>,
    /// NIfTI datatype code (2 uint8, 4 int16, 16 float32, …).
    pub datatype: i16,
    /// Raw voxel bytes in *little-endian* order (swapped when big_endian).
    pub data: Vec<u8>,
    /// pixdim[4] (time), then pixdim[1..=3] (voxel sizes): `[t, x, y, z]`.
    pub pixdim: [f64; 4],
    /// The sform affine (sform_code 2), if any.
    pub sform: Option<Affine>,
    /// (quatern b, c, d, qoffset x, y, z, qfac)
    pub qform: Option<([f64; 3], [f64; 3], f64)>,
    /// `scl_slope` (0: no scaling).
    pub scl_slope: f64,
    /// `scl_inter`.
    pub scl_inter: f64,
    /// `vox_offset` as the header declares it; `None`: right after the header (and its 4
    /// extension bytes), where the data is written in any case.
    pub vox_offset: Option<f64>,
}

/// Bytes per voxel of a NIfTI datatype code (panics on an unknown one).
pub fn dtype_size(dt: i16) -> usize {
    match dt {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 | 1024 | 1280 => 8,
        128 => 3,
        2304 => 4,
        _ => panic!("dt {dt}"),
    }
}

impl Nii {
    /// A NIfTI-1 file of `dims` in `datatype` holding `data`, 1 mm voxels, no affine.
    pub fn new(dims: &[usize], datatype: i16, data: Vec<u8>) -> Self {
        Nii {
            version: 1,
            big_endian: false,
            dims: dims.to_vec(),
            datatype,
            data,
            pixdim: [1.0, 1.0, 1.0, 1.0],
            sform: None,
            qform: None,
            scl_slope: 0.0,
            scl_inter: 0.0,
            vox_offset: None,
        }
    }

    /// With the sform `a`; the voxel sizes follow its columns.
    pub fn with_sform(mut self, a: Affine) -> Self {
        self.sform = Some(a);
        for c in 0..3 {
            self.pixdim[c + 1] = (a[0][c].powi(2) + a[1][c].powi(2) + a[2][c].powi(2)).sqrt();
        }
        self
    }

    /// The file's bytes (header, 4 extension bytes, voxels).
    pub fn bytes(&self) -> Vec<u8> {
        let v2 = self.version == 2;
        let hsize = if v2 { 540 } else { 348 };
        let off = hsize + 4;
        let mut h = vec![0u8; off];
        let be = self.big_endian;
        macro_rules! put {
            ($at:expr, $v:expr) => {{
                let b = if be {
                    $v.to_be_bytes()
                } else {
                    $v.to_le_bytes()
                };
                h[$at..$at + b.len()].copy_from_slice(&b);
            }};
        }
        let mut dim = [1i64; 8];
        dim[0] = self.dims.len() as i64;
        for (a, &d) in self.dims.iter().enumerate() {
            dim[a + 1] = d as i64;
        }
        let qfac = self.qform.map(|q| q.2).unwrap_or(1.0);
        let pixdim = [
            qfac,
            self.pixdim[1],
            self.pixdim[2],
            self.pixdim[3],
            self.pixdim[0],
            0.0,
            0.0,
            0.0,
        ];
        let bitpix = (dtype_size(self.datatype) * 8) as i16;
        if !v2 {
            put!(0, 348i32);
            for (a, d) in dim.iter().enumerate() {
                put!(40 + 2 * a, *d as i16);
            }
            put!(70, self.datatype);
            put!(72, bitpix);
            for (a, p) in pixdim.iter().enumerate() {
                put!(76 + 4 * a, *p as f32);
            }
            put!(108, self.vox_offset.unwrap_or(off as f64) as f32);
            put!(112, self.scl_slope as f32);
            put!(116, self.scl_inter as f32);
            put!(123, 10u8); // mm | s (xyzt_units is a char)
            if let Some((q, o, _)) = self.qform {
                put!(252, 1i16);
                for a in 0..3 {
                    put!(256 + 4 * a, q[a] as f32);
                    put!(268 + 4 * a, o[a] as f32);
                }
            }
            if let Some(s) = self.sform {
                put!(254, 2i16);
                for (r, row) in s.iter().enumerate() {
                    for (c, x) in row.iter().enumerate() {
                        put!(280 + 16 * r + 4 * c, *x as f32);
                    }
                }
            }
            h[344..348].copy_from_slice(b"n+1\0");
        } else {
            put!(0, 540i32);
            h[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
            put!(12, self.datatype);
            put!(14, bitpix);
            for (a, d) in dim.iter().enumerate() {
                put!(16 + 8 * a, *d);
            }
            for (a, p) in pixdim.iter().enumerate() {
                put!(104 + 8 * a, *p);
            }
            put!(168, self.vox_offset.unwrap_or(off as f64) as i64);
            put!(176, self.scl_slope);
            put!(184, self.scl_inter);
            put!(500, 10i32);
            if let Some((q, o, _)) = self.qform {
                put!(344, 1i32);
                for a in 0..3 {
                    put!(352 + 8 * a, q[a]);
                    put!(376 + 8 * a, o[a]);
                }
            }
            if let Some(s) = self.sform {
                put!(348, 2i32);
                for (r, row) in s.iter().enumerate() {
                    for (c, x) in row.iter().enumerate() {
                        put!(400 + 32 * r + 8 * c, *x);
                    }
                }
            }
        }
        let mut out = h;
        if be {
            let n = dtype_size(self.datatype);
            for c in self.data.chunks(n) {
                out.extend(c.iter().rev());
            }
        } else {
            out.extend_from_slice(&self.data);
        }
        out
    }

    /// The file gzipped.
    pub fn gz(&self) -> Vec<u8> {
        gzip(&self.bytes())
    }
}

/// `b` gzipped (deflated, fast).
pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// `b` gzipped with stored (uncompressed) deflate blocks: its bytes stay visible in the file.
pub fn gzip_stored(b: &[u8]) -> Vec<u8> {
    let mut deflate = Vec::new();
    let chunks: Vec<&[u8]> = b.chunks(65535).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        deflate.push(u8::from(n + 1 == chunks.len()));
        let len = chunk.len() as u16;
        deflate.extend_from_slice(&len.to_le_bytes());
        deflate.extend_from_slice(&(!len).to_le_bytes());
        deflate.extend_from_slice(chunk);
    }
    gzip_member(&deflate, crc32(b), b.len() as u64)
}

/// One gzip member around a raw `deflate` stream whose inflated bytes have checksum `crc` and
/// length `len` (for streams made elsewhere, e.g. a zip entry's).
pub fn gzip_member(deflate: &[u8], crc: u32, len: u64) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(deflate);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

/// The CRC-32 gzip puts in its trailer.
pub fn crc32(b: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(b);
    crc.sum()
}
