//! Speed of one 256 px thumbnail of a 512 × 512 CT slice (decode of one frame + window +
//! resize + PNG), per transfer syntax (the files converted by DCMTK, GDCM for JPEG 2000).
//! Prints a table; asserts only that each thumbnail is made.
//!
//! `cargo bench -p radport-pipeline --bench thumbnail` (release; `THUMBNAIL_ROUNDS=20`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use radport_pipeline::thumbnail::{
    render_instance, render_or_placeholder, Rendered, ThumbnailOptions,
};

fn main() {
    let rounds: u32 = std::env::var("THUMBNAIL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let ct = ct_file(512, 512, "MONOCHROME2");
    let variants = [
        ("explicit-le", ct.clone()),
        (
            "deflated",
            convert(dir.path(), &ct, "t-deflate", &["dcmconv", "+td"]),
        ),
        ("rle", convert(dir.path(), &ct, "t-rle", &["dcmcrle"])),
        (
            "jpeg-lossless",
            convert(dir.path(), &ct, "t-jpeg", &["dcmcjpeg", "+e1"]),
        ),
        ("jpeg-ls", convert(dir.path(), &ct, "t-jpls", &["dcmcjpls"])),
        (
            "jpeg2000",
            convert(dir.path(), &ct, "t-j2k", &["gdcmconv", "--j2k"]),
        ),
    ];
    println!("| transfer syntax | ms per thumbnail (mean of {rounds}) | PNG bytes |");
    println!("|---|---:|---:|");
    let opts = ThumbnailOptions::default();
    for (name, file) in variants {
        let png = match render_or_placeholder(&file, &opts) {
            Rendered::Image(png) => png,
            _ => {
                println!("| {name} | codec not built in | |");
                continue;
            }
        };
        assert_eq!(png_size(&png), (256, 256));
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(
                render_instance(std::hint::black_box(&file), &opts).expect("render"),
            );
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds);
        println!("| {name} | {ms:.2} | {} |", png.len());
    }
}
