//! Test helpers: hand-written NIfTI-1/2 files, external tools, world-coordinate comparison.
#![allow(dead_code, clippy::needless_range_loop)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(unused_imports)] // each test binary uses a part
pub use radport_testkit::nifti::{gzip, Affine, Nii};

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
