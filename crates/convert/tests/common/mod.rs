//! Test helpers: hand-written NIfTI-1/2 files, external tools, world-coordinate comparison.
#![allow(dead_code, clippy::needless_range_loop)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub type Affine = [[f64; 4]; 3];

/// A NIfTI file to write.
#[derive(Clone)]
pub struct Nii {
    pub version: u8,
    pub big_endian: bool,
    /// dim[1..]
    pub dims: Vec<usize>,
    pub datatype: i16,
    /// Raw voxel bytes in *little-endian* order (swapped when big_endian).
    pub data: Vec<u8>,
    pub pixdim: [f64; 4],
    pub sform: Option<Affine>,
    /// (quatern b, c, d, qoffset x, y, z, qfac)
    pub qform: Option<([f64; 3], [f64; 3], f64)>,
    pub scl_slope: f64,
    pub scl_inter: f64,
}

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
        }
    }

    pub fn with_sform(mut self, a: Affine) -> Self {
        self.sform = Some(a);
        for c in 0..3 {
            self.pixdim[c + 1] = (a[0][c].powi(2) + a[1][c].powi(2) + a[2][c].powi(2)).sqrt();
        }
        self
    }

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
            put!(108, off as f32);
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
            put!(168, off as i64);
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

    pub fn gz(&self) -> Vec<u8> {
        gzip(&self.bytes())
    }
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

pub fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

pub fn diag(sx: f64, sy: f64, sz: f64, o: [f64; 3]) -> Affine {
    [
        [sx, 0.0, 0.0, o[0]],
        [0.0, sy, 0.0, o[1]],
        [0.0, 0.0, sz, o[2]],
    ]
}

/// An oblique affine: rotation about (1,1,1) by 20° times spacings (0.8, 0.9, 2.5).
pub fn oblique() -> Affine {
    let (ax, th) = ([1.0f64, 1.0, 1.0], 20f64.to_radians());
    let n = (3.0f64).sqrt();
    let (x, y, z) = (ax[0] / n, ax[1] / n, ax[2] / n);
    let (c, s, t) = (th.cos(), th.sin(), 1.0 - th.cos());
    let r = [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ];
    let sp = [0.8, 0.9, 2.5];
    let o = [-40.5, 12.25, 33.0];
    std::array::from_fn(|row| {
        [
            r[row][0] * sp[0],
            r[row][1] * sp[1],
            r[row][2] * sp[2],
            o[row],
        ]
    })
}

/// Path of a required external tool, or a panic with the install hint.
pub fn tool(name: &str, hint: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    for p in [format!("/usr/bin/{name}"), format!("/usr/local/bin/{name}")] {
        if Path::new(&p).is_file() {
            return p.into();
        }
    }
    panic!("required test tool `{name}` not found: {hint}");
}

/// python3 with the given modules importable, or a panic with the pip hint.
pub fn python(modules: &[&str]) -> PathBuf {
    let py = tool("python3", "install Python 3 (apt-get install python3)");
    let check = format!("import {}", modules.join(", "));
    let ok = Command::new(&py)
        .args(["-c", &check])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!(
            "python3 cannot import {modules:?}: pip install {}",
            modules.join(" ").replace("numpy", "").trim()
        );
    }
    py
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn inv3(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let d = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let c =
        |r1: usize, c1: usize, r2: usize, c2: usize| m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1];
    [
        [c(1, 1, 2, 2) / d, -c(0, 1, 2, 2) / d, c(0, 1, 1, 2) / d],
        [-c(1, 0, 2, 2) / d, c(0, 0, 2, 2) / d, -c(0, 0, 1, 2) / d],
        [c(1, 0, 2, 1) / d, -c(0, 0, 2, 1) / d, c(0, 0, 1, 1) / d],
    ]
}
