//! Segmentation (SEG) and structure set (RTSTRUCT) overlays, on files written by highdicom and
//! pydicom (`tests/fixtures/make_seg.py`; needs `pip install highdicom`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{gray, rgb, save_sample, Lcg};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use image::{GrayImage, RgbImage};
use radport_pipeline::thumbnail::{
    overlay_source, render_frame_or_placeholder, render_frame_over_or_placeholder, render_instance,
    render_or_placeholder, render_rtstruct_overlay, render_seg_frame, render_seg_overlay,
    rtstruct_source_reference, seg_slices, seg_source_reference, OverlaySource, Rendered,
    SegSegment, SegSourceRef, ThumbnailError, ThumbnailOptions,
};
use serde_json::Value;

fn opts(max_side: u32) -> ThumbnailOptions {
    ThumbnailOptions { max_side }
}

/// The fixtures, written once per test process by the Python script, into a directory of the
/// process's own (the target directory may be shared by concurrent runs); those of earlier runs
/// are removed after an hour.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let (dir, printed) = radport_testkit::python::run_fixture_script(
            &Path::new(env!("CARGO_TARGET_TMPDIR")).join("overlay-fixtures"),
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_seg.py"),
            "highdicom",
        );
        eprintln!("fixtures by {}", printed.trim());
        dir
    })
}

/// One size of the fixtures (see make_seg.py).
struct Set {
    dir: PathBuf,
    manifest: Value,
    rows: usize,
    cols: usize,
    name: &'static str,
}

impl Set {
    fn new(name: &'static str) -> Set {
        let dir = fixtures().join(name);
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(dir.join("manifest.json")).expect("read manifest"),
        )
        .expect("manifest JSON");
        let rows = manifest["rows"].as_u64().expect("rows") as usize;
        let cols = manifest["cols"].as_u64().expect("cols") as usize;
        Set {
            dir,
            manifest,
            rows,
            cols,
            name,
        }
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn ct(&self, k: usize) -> Vec<u8> {
        self.file(&format!("ct-{k}.dcm"))
    }

    fn ct_uid(&self, k: usize) -> String {
        self.manifest["ct_sop_uids"][k]
            .as_str()
            .expect("uid")
            .to_owned()
    }

    fn series_uid(&self) -> String {
        self.manifest["ct_series_uid"]
            .as_str()
            .expect("series")
            .to_owned()
    }

    /// BINARY mask of `segment` on slice `k`, [row][col].
    fn mask(&self, segment: u32, k: usize) -> Vec<Vec<u8>> {
        let m = &self.manifest["seg_binary"]["masks"][segment.to_string()][k];
        grid(m)
    }

    fn fractional(&self, k: usize) -> Vec<Vec<u8>> {
        grid(&self.manifest["seg_fractional"]["values"][k])
    }

    fn colour(&self, path: &[&str]) -> [u8; 3] {
        let mut v = &self.manifest;
        for p in path {
            v = &v[*p];
        }
        let c: Vec<u8> = v
            .as_array()
            .expect("colour")
            .iter()
            .map(|x| x.as_u64().expect("component") as u8)
            .collect();
        [c[0], c[1], c[2]]
    }

    fn rt_box(&self, key: &str) -> [f64; 4] {
        let b: Vec<f64> = self.manifest["rtstruct"][key]
            .as_array()
            .expect("box")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect();
        [b[0], b[1], b[2], b[3]]
    }

    /// The source pixel (row, col) an output pixel shows, for an output of `w` × `h`.
    fn source_pixel(&self, x: u32, y: u32, w: u32, h: u32) -> (usize, usize) {
        let col = ((f64::from(x) + 0.5) * self.cols as f64 / f64::from(w)).floor() as usize;
        let row = ((f64::from(y) + 0.5) * self.rows as f64 / f64::from(h)).floor() as usize;
        (row.min(self.rows - 1), col.min(self.cols - 1))
    }

    /// Whether (row, col) is to be checked against `mask` on an output of `w` × `h`: always at
    /// the source's own size, else only where `mask` has the same value at (row, col) and all 8
    /// neighbours (so that the exact position of a scaled edge does not matter).
    fn checked(&self, mask: &[Vec<u8>], row: usize, col: usize, (w, h): (u32, u32)) -> bool {
        if (w as usize, h as usize) == (self.cols, self.rows) {
            return true;
        }
        let v = mask[row][col];
        (row.saturating_sub(1)..=(row + 1).min(self.rows - 1)).all(|r| {
            (col.saturating_sub(1)..=(col + 1).min(self.cols - 1)).all(|c| mask[r][c] == v)
        })
    }
}

fn grid(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_u64().expect("value") as u8)
                .collect()
        })
        .collect()
}

/// The two fixture sizes, each with the thumbnail size that tests it best: 64×48 scaled up to
/// 256, 30×25 at its own size (one output pixel per source pixel: every pixel is checked).
fn sets() -> Vec<(Set, u32)> {
    vec![(Set::new("64x48"), 256), (Set::new("30x25"), 30)]
}

fn blend(grey: u8, colour: [u8; 3], alpha: f64) -> [u8; 3] {
    colour.map(|c| (f64::from(grey) * (1.0 - alpha) + f64::from(c) * alpha).round() as u8)
}

fn close(a: [u8; 3], b: [u8; 3], tolerance: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tolerance)
}

fn source_grey(file: &[u8], o: &ThumbnailOptions) -> GrayImage {
    gray(&render_instance(file, o).expect("render the CT slice"))
}

fn px(img: &RgbImage, x: u32, y: u32) -> [u8; 3] {
    img.get_pixel(x, y).0
}

/// Each CT slice gets the SEG frames that reference it, and nothing else: the red square where
/// that slice has it (slices 0 to 2, moving), the disc of segment 2 where it has it (slices 2
/// and 3, moving), untouched grey elsewhere. For 30×25 (750 pixels, frames not byte-aligned) every pixel is
/// compared, which a frame unpacked from the wrong bit offset would fail.
#[test]
fn binary_seg_tints_the_frames_of_each_slice() {
    for (set, side) in sets() {
        let seg = set.file("seg-binary.dcm");
        let red = set.colour(&["seg_binary", "colors", "1"]);
        assert_eq!(
            red,
            [255, 0, 0],
            "highdicom's own reading of the CIELab value"
        );
        let mut segment2_colour: Option<[u8; 3]> = None;
        for k in 0..4 {
            let ct = set.ct(k);
            let o = opts(side);
            let png = render_seg_overlay(&seg, Some(&ct), &o).expect("render overlay");
            save_sample(&format!("seg-binary-{}-slice{k}.png", set.name), &png);
            let img = rgb(&png);
            let grey = source_grey(&ct, &o);
            assert_eq!(
                img.dimensions(),
                grey.dimensions(),
                "{}: same size as render_instance",
                set.name
            );
            let (w, h) = img.dimensions();
            let (m1, m2) = (set.mask(1, k), set.mask(2, k));
            let (mut tinted1, mut tinted2, mut untouched) = (0, 0, 0);
            for y in 0..h {
                for x in 0..w {
                    let (r, c) = set.source_pixel(x, y, w, h);
                    if !(set.checked(&m1, r, c, (w, h)) && set.checked(&m2, r, c, (w, h))) {
                        continue;
                    }
                    let g = grey.get_pixel(x, y)[0];
                    let got = px(&img, x, y);
                    let at = format!("{} slice {k} ({x},{y}) = source ({r},{c})", set.name);
                    match (m1[r][c], m2[r][c]) {
                        (0, 0) => {
                            assert_eq!(got, [g, g, g], "{at}: outside keeps the grey");
                            untouched += 1;
                        }
                        (1, 0) => {
                            let want = blend(g, red, 0.5);
                            assert!(close(got, want, 1), "{at}: {got:?} != {want:?}");
                            assert!(
                                got[0] > got[1].saturating_add(60) && got[1] == got[2],
                                "{at}: red dominant {got:?}"
                            );
                            tinted1 += 1;
                        }
                        (0, 1) => {
                            // The colour put in: 2 × shown − grey.
                            let colour =
                                got.map(|v| (2 * i32::from(v) - i32::from(g)).clamp(0, 255) as u8);
                            let first = *segment2_colour.get_or_insert(colour);
                            assert!(close(colour, first, 2), "{at}: one colour per segment");
                            tinted2 += 1;
                        }
                        _ => unreachable!("the fixtures' segments do not overlap"),
                    }
                }
            }
            eprintln!(
                "{} slice {k}: {tinted1} red, {tinted2} segment-2, {untouched} untouched pixels",
                set.name
            );
            assert!(untouched > 0);
            assert_eq!(tinted1 > 0, k <= 2, "{} slice {k}: square", set.name);
            assert_eq!(tinted2 > 0, k >= 2, "{} slice {k}: disc", set.name);
        }
        let c2 = segment2_colour.expect("segment 2 drawn");
        let spread = c2.iter().max().unwrap() - c2.iter().min().unwrap();
        assert!(spread >= 100, "segment 2 gets a saturated colour: {c2:?}");
        let distance: u32 = c2
            .iter()
            .zip(red)
            .map(|(a, b)| u32::from(a.abs_diff(b)))
            .sum();
        assert!(distance >= 150, "segment 2 {c2:?} is told apart from red");
    }
}

/// Without a source, the SEG's middle slice with foreground (slice 2 of the slices 0 to 3, along
/// z: its square and its disc) is drawn on a dark background at the SEG's own geometry.
#[test]
fn binary_seg_alone_draws_the_middle_slice_on_dark() {
    for (set, side) in sets() {
        let seg = set.file("seg-binary.dcm");
        let o = opts(side);
        let png = render_seg_overlay(&seg, None, &o).expect("render alone");
        save_sample(&format!("seg-binary-{}-alone.png", set.name), &png);
        let img = rgb(&png);
        // Same geometry as the CT (highdicom copies Pixel Spacing): same size.
        assert_eq!(img.dimensions(), source_grey(&set.ct(0), &o).dimensions());
        let (w, h) = img.dimensions();
        let (square, disc) = (set.mask(1, 2), set.mask(2, 2));
        let others: Vec<Vec<Vec<u8>>> = vec![set.mask(1, 0), set.mask(1, 1), set.mask(2, 3)];
        let background = px(&img, 0, 0);
        assert!(
            background[0] == background[1] && background[1] == background[2] && background[0] < 80,
            "dark grey background {background:?}"
        );
        let (mut red, mut tinted, mut plain) = (0, 0, 0);
        for y in 0..h {
            for x in 0..w {
                let (r, c) = set.source_pixel(x, y, w, h);
                if [&square, &disc]
                    .into_iter()
                    .chain(&others)
                    .any(|m| !set.checked(m, r, c, (w, h)))
                {
                    continue;
                }
                let got = px(&img, x, y);
                if square[r][c] == 1 {
                    assert!(
                        close(got, blend(background[0], [255, 0, 0], 0.5), 1),
                        "{got:?}"
                    );
                    red += 1;
                } else if disc[r][c] == 1 {
                    let spread = got.iter().max().unwrap() - got.iter().min().unwrap();
                    assert!(spread >= 40 && got[0] < 120, "({x},{y}): segment 2 {got:?}");
                    tinted += 1;
                } else {
                    assert_eq!(got, background, "({x},{y}): only slice 2's labels");
                    plain += 1;
                }
            }
        }
        assert!(
            red > 0 && tinted > 0 && plain > 0,
            "{red} red, {tinted} segment 2, {plain} plain"
        );

        // render_or_placeholder draws the same.
        match render_or_placeholder(&seg, &o) {
            Rendered::Image(same) => assert_eq!(rgb(&same), img),
            Rendered::Placeholder { reason, .. } => panic!("SEG got a placeholder: {reason}"),
        }
        // So does the viewer, without a source, on either frame of slice 2 (frames 1 and 5:
        // highdicom stores segment 1 at slices 2, 1, 0, then segment 2 at slices 3, 2); the
        // frames of other slices draw those.
        for index in [0, 4] {
            match render_frame_or_placeholder(&seg, Some(index), &o) {
                Rendered::Image(same) => assert_eq!(rgb(&same), img, "frame {}", index + 1),
                Rendered::Placeholder { reason, .. } => panic!("SEG got a placeholder: {reason}"),
            }
        }
        match render_frame_or_placeholder(&seg, Some(2), &o) {
            Rendered::Image(other) => assert_ne!(rgb(&other), img, "frame 3 is on slice 0"),
            Rendered::Placeholder { reason, .. } => panic!("SEG got a placeholder: {reason}"),
        }
    }
}

/// The slice viewer's SEG: its 5 frames are 4 slices (slices 0 to 3 of the CT, along z), each
/// listed with the CT instance its frames reference; any frame of a slice draws that slice's
/// frames over its CT instance exactly as the thumbnail draws them over it (the segment in
/// colour, the CT around it untouched), and alone on dark when that instance is not given.
#[test]
fn seg_frames_are_drawn_over_their_source_slices() {
    for (set, side) in sets() {
        let seg = set.file("seg-binary.dcm");
        let o = opts(side);
        let layout = seg_slices(&seg).expect("the slices of the SEG");
        assert_eq!(layout.number_of_frames, 5);
        assert_eq!(
            layout.segments,
            vec![
                SegSegment {
                    number: 1,
                    label: Some("Square".into()),
                    colour: [255, 0, 0]
                },
                // No CIELab value: the palette's second colour.
                SegSegment {
                    number: 2,
                    label: Some("Disc".into()),
                    colour: [60, 180, 75]
                },
            ]
        );
        // Frames 1-3: segment 1 on slices 2, 1, 0; frames 4-5: segment 2 on slices 3, 2.
        let frames: Vec<Vec<u32>> = layout
            .slices
            .iter()
            .map(|s| s.frame_numbers.clone())
            .collect();
        assert_eq!(frames, vec![vec![3], vec![2], vec![1, 5], vec![4]]);
        let segments: Vec<Vec<i64>> = layout.slices.iter().map(|s| s.segments.clone()).collect();
        assert_eq!(segments, vec![vec![1], vec![1], vec![1, 2], vec![2]]);
        for (k, slice) in layout.slices.iter().enumerate() {
            let want = OverlaySource {
                sop_instance_uid: set.ct_uid(k),
                series_uid: Some(set.series_uid()),
                frame_number: None,
            };
            assert_eq!(slice.source.as_ref(), Some(&want), "slice {k}");
            let z = slice.position.expect("a position");
            assert!(
                (z - (100.0 + 2.5 * k as f64)).abs() < 1e-6,
                "slice {k} at {z}"
            );

            let ct = set.ct(k);
            let thumbnail = rgb(&render_seg_overlay(&seg, Some(&ct), &o).expect("thumbnail"));
            for f in &slice.frame_numbers {
                let index = f - 1;
                assert_eq!(overlay_source(&seg, Some(index)).as_ref(), Some(&want));
                let png = render_seg_frame(&seg, index, Some(&ct), &o).expect("over the CT");
                assert_eq!(rgb(&png), thumbnail, "frame {f} over slice {k}");
                match render_frame_over_or_placeholder(&seg, Some(index), Some(&ct), &o) {
                    Rendered::Image(same) => assert_eq!(same, png),
                    Rendered::Placeholder { reason, .. } => panic!("{reason}"),
                }
            }
            save_sample(
                &format!("seg-viewer-{}-slice{k}.png", set.name),
                &render_seg_frame(&seg, slice.frame_numbers[0] - 1, Some(&ct), &o).unwrap(),
            );

            // The pixels: each segment of the slice in its colour over the CT, the CT elsewhere.
            let img = thumbnail;
            let grey = source_grey(&ct, &o);
            let (w, h) = img.dimensions();
            let masks = [set.mask(1, k), set.mask(2, k)];
            let (mut inside, mut outside) = (0, 0);
            for y in 0..h {
                for x in 0..w {
                    let (r, c) = set.source_pixel(x, y, w, h);
                    if masks.iter().any(|m| !set.checked(m, r, c, (w, h))) {
                        continue;
                    }
                    let got = px(&img, x, y);
                    let g = grey.get_pixel(x, y)[0];
                    if masks[0][r][c] == 1 {
                        assert!(
                            close(got, blend(g, [255, 0, 0], 0.5), 1),
                            "({x},{y}) {got:?}"
                        );
                        inside += 1;
                    } else if masks[1][r][c] == 1 {
                        assert!(
                            close(got, blend(g, [60, 180, 75], 0.5), 1),
                            "({x},{y}) {got:?}"
                        );
                        inside += 1;
                    } else {
                        assert_eq!(got, [g, g, g], "({x},{y}): the CT untouched");
                        outside += 1;
                    }
                }
            }
            assert!(
                inside > 0 && outside > 0,
                "slice {k}: {inside} in, {outside} out"
            );

            // Without the CT (not in the archive): the slice alone, on dark.
            let alone =
                rgb(&render_seg_frame(&seg, slice.frame_numbers[0] - 1, None, &o).expect("alone"));
            assert_eq!(alone.dimensions(), (w, h));
            let (mut coloured, mut dark) = (0, 0);
            for y in 0..h {
                for x in 0..w {
                    let (r, c) = set.source_pixel(x, y, w, h);
                    if masks.iter().any(|m| !set.checked(m, r, c, (w, h))) {
                        continue;
                    }
                    let got = px(&alone, x, y);
                    if masks[0][r][c] == 1 || masks[1][r][c] == 1 {
                        assert!(got.iter().max() != got.iter().min(), "({x},{y}) {got:?}");
                        coloured += 1;
                    } else {
                        assert_eq!(got, [32, 32, 32], "({x},{y}): the dark background");
                        dark += 1;
                    }
                }
            }
            assert!(coloured > 0 && dark > 0, "slice {k} alone");
            // A source that is not an image: alone as well.
            assert_eq!(
                rgb(
                    &render_seg_frame(&seg, slice.frame_numbers[0] - 1, Some(b"DICM"), &o)
                        .expect("garbage source")
                ),
                alone
            );
        }
        // Slice 2 alone is the thumbnail without a source.
        assert_eq!(
            rgb(&render_seg_frame(&seg, 0, None, &o).unwrap()),
            rgb(&render_seg_overlay(&seg, None, &o).unwrap())
        );
        // A frame it does not have.
        match render_seg_frame(&seg, 5, Some(&set.ct(0)), &o) {
            Err(ThumbnailError::NoSuchFrame {
                index: 5,
                frames: 5,
            }) => {}
            other => panic!("frame 6 of 5: {other:?}"),
        }
        assert_eq!(overlay_source(&seg, Some(5)), None);
        assert!(
            render_frame_over_or_placeholder(&seg, Some(5), None, &o).is_placeholder(),
            "frame 6 of 5"
        );
        // Not a segmentation: no slices, no source.
        assert!(seg_slices(&set.ct(0)).is_err());
        assert_eq!(overlay_source(&set.ct(0), Some(0)), None);
    }
}

/// The fractional SEG has foreground on slice 1 only: one slice to step through, over ct-1.
#[test]
fn fractional_seg_has_one_slice() {
    let set = Set::new("64x48");
    for name in ["seg-fractional.dcm", "seg-fractional-rle.dcm"] {
        let seg = set.file(name);
        let layout = seg_slices(&seg).expect(name);
        assert_eq!(layout.slices.len(), 1, "{name}");
        assert_eq!(
            layout.slices[0]
                .source
                .as_ref()
                .map(|s| s.sop_instance_uid.clone()),
            Some(set.ct_uid(1))
        );
        let index = layout.slices[0].frame_numbers[0] - 1;
        let o = opts(256);
        assert_eq!(
            rgb(&render_seg_frame(&seg, index, Some(&set.ct(1)), &o).unwrap()),
            rgb(&render_seg_overlay(&seg, Some(&set.ct(1)), &o).unwrap()),
            "{name}"
        );
    }
}

/// The source to fetch for a SEG: the middle (n / 2) of the slices with foreground along z,
/// slice 2 of 0..=3; not the middle frame (the 5 frames are stored segment 1 at slices 2, 1, 0,
/// then segment 2 at slices 3, 2: frame 5 / 2 is on slice 0), nor the middle in the order
/// highdicom stores them (slice 1).
#[test]
fn seg_source_reference_names_the_middle_slice_with_foreground() {
    for (set, _) in sets() {
        let seg = set.file("seg-binary.dcm");
        assert_eq!(set.manifest["seg_binary"]["frames"], 5);
        let want = SegSourceRef {
            series_uid: set.series_uid(),
            sop_instance_uid: set.ct_uid(2),
        };
        assert_eq!(seg_source_reference(&seg), Some(want), "{}", set.name);
        // The fractional SEG has foreground on slice 1 only.
        let frac = set.file("seg-fractional.dcm");
        let want = SegSourceRef {
            series_uid: set.series_uid(),
            sop_instance_uid: set.ct_uid(1),
        };
        assert_eq!(seg_source_reference(&frac), Some(want), "{}", set.name);
        assert!(seg_source_reference(&set.ct(1)).is_none(), "a CT is no SEG");
    }
}

/// FRACTIONAL: opacity follows the value (1.0 → 0.5, 0.5 → about 0.25), native and RLE.
#[test]
fn fractional_seg_opacity_follows_the_value() {
    for (set, side) in sets() {
        let blue = set.colour(&["seg_fractional", "color"]);
        assert_eq!(blue, [0, 0, 255]);
        let max = f64::from(set.manifest["seg_fractional"]["max"].as_u64().unwrap() as u32);
        for file in ["seg-fractional.dcm", "seg-fractional-rle.dcm"] {
            let seg = set.file(file);
            let o = opts(side);
            for k in [0usize, 1] {
                let ct = set.ct(k);
                let png = render_seg_overlay(&seg, Some(&ct), &o).expect("render fractional");
                if k == 1 {
                    save_sample(
                        &format!("{}-{}.png", file.trim_end_matches(".dcm"), set.name),
                        &png,
                    );
                }
                let img = rgb(&png);
                let grey = source_grey(&ct, &o);
                let (w, h) = img.dimensions();
                let values = set.fractional(k);
                let (mut full, mut half) = (0, 0);
                for y in 0..h {
                    for x in 0..w {
                        let (r, c) = set.source_pixel(x, y, w, h);
                        if !set.checked(&values, r, c, (w, h)) {
                            continue;
                        }
                        let g = grey.get_pixel(x, y)[0];
                        let v = f64::from(values[r][c]);
                        let want = blend(g, blue, 0.5 * v / max);
                        let got = px(&img, x, y);
                        assert!(
                            close(got, want, 1),
                            "{file} {} slice {k} ({x},{y}) value {v}: {got:?} != {want:?}",
                            set.name
                        );
                        if v == max {
                            full += 1;
                            assert!(got[2] > got[0].saturating_add(60), "blue dominant {got:?}");
                        } else if v > 0.0 {
                            half += 1;
                        }
                    }
                }
                if k == 1 {
                    assert!(full > 0 && half > 0, "{file}: {full} full, {half} half");
                } else {
                    assert_eq!(full + half, 0);
                }
            }
        }
    }
}

/// Output coordinates (pixel centres at +0.5) of a source pixel centre.
fn to_output(set: &Set, row: f64, col: f64, w: u32, h: u32) -> (f64, f64) {
    (
        (col + 0.5) * f64::from(w) / set.cols as f64,
        (row + 0.5) * f64::from(h) / set.rows as f64,
    )
}

fn is_green(p: [u8; 3]) -> bool {
    p[1] >= 200 && p[0] <= 60 && p[2] <= 60
}

/// The square ROI is drawn green along its edges on slice 2 (by Contour Image Sequence, or by z
/// when the contours reference no image), grey inside and outside, and not at all on the other
/// slices.
#[test]
fn rtstruct_contour_is_drawn_on_its_slice() {
    for (set, side) in sets() {
        let o = opts(side);
        let [r0, c0, r1, c1] = set.rt_box("box");
        for file in ["rtstruct.dcm", "rtstruct-noref.dcm"] {
            let rt = set.file(file);
            for k in 0..4 {
                let ct = set.ct(k);
                let png = render_rtstruct_overlay(&rt, Some(&ct), &o).expect("render rtstruct");
                let img = rgb(&png);
                let grey = source_grey(&ct, &o);
                assert_eq!(img.dimensions(), grey.dimensions());
                let (w, h) = img.dimensions();
                let greens = img.pixels().filter(|p| is_green(p.0)).count();
                if k != 2 {
                    assert_eq!(greens, 0, "{file} {}: nothing on slice {k}", set.name);
                    for (a, b) in img.pixels().zip(grey.pixels()) {
                        assert_eq!(a.0, [b[0]; 3]);
                    }
                    continue;
                }
                save_sample(
                    &format!("{}-{}-slice2.png", file.trim_end_matches(".dcm"), set.name),
                    &png,
                );
                // Along each edge.
                let corners = [(r0, c0), (r0, c1), (r1, c1), (r1, c0)];
                for i in 0..4 {
                    let (a, b) = (corners[i], corners[(i + 1) % 4]);
                    for t in [0.1, 0.3, 0.5, 0.7, 0.9] {
                        let (x, y) =
                            to_output(&set, a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, w, h);
                        let p = px(&img, x as u32, y as u32);
                        assert!(
                            is_green(p),
                            "{file} {}: edge at ({x:.1},{y:.1}) is {p:?}",
                            set.name
                        );
                    }
                }
                // Inside and outside, away from the edges: the grey image.
                let margin = 2.0 * (f64::from(side) / 128.0).max(1.0) + 1.0;
                let (ox0, oy0) = to_output(&set, r0, c0, w, h);
                let (ox1, oy1) = to_output(&set, r1, c1, w, h);
                let (mut inside, mut outside) = (0, 0);
                for y in 0..h {
                    for x in 0..w {
                        let (fx, fy) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
                        let within = fx > ox0 + margin
                            && fx < ox1 - margin
                            && fy > oy0 + margin
                            && fy < oy1 - margin;
                        let beyond = fx < ox0 - margin
                            || fx > ox1 + margin
                            || fy < oy0 - margin
                            || fy > oy1 + margin;
                        if within || beyond {
                            let g = grey.get_pixel(x, y)[0];
                            assert_eq!(px(&img, x, y), [g, g, g], "{file} ({x},{y})");
                            if within {
                                inside += 1;
                            } else {
                                outside += 1;
                            }
                        }
                    }
                }
                assert!(
                    inside > 0 && outside > 0,
                    "{inside} inside, {outside} outside"
                );
                assert!(greens > 0);
            }
        }
    }
}

/// Without a source: the middle contoured slice's contours on a dark background; the source
/// reference names that slice's image and series.
#[test]
fn rtstruct_alone_and_its_source_reference() {
    for (set, side) in sets() {
        let o = opts(side.max(64));
        let rt = set.file("rtstruct.dcm");
        let want = SegSourceRef {
            series_uid: set.series_uid(),
            sop_instance_uid: set.ct_uid(2),
        };
        assert_eq!(rtstruct_source_reference(&rt), Some(want), "{}", set.name);

        let png = render_rtstruct_overlay(&rt, None, &o).expect("rtstruct alone");
        save_sample(&format!("rtstruct-{}-alone.png", set.name), &png);
        let img = rgb(&png);
        let greens = img.pixels().filter(|p| is_green(p.0)).count();
        let background = px(&img, 0, 0);
        assert!(
            background[0] < 80 && background[0] == background[2],
            "{background:?}"
        );
        let plain = img.pixels().filter(|p| p.0 == background).count();
        assert!(
            greens > 0 && plain > greens,
            "{greens} green, {plain} background"
        );
        // The centre of the square is not filled.
        let (w, h) = img.dimensions();
        assert_eq!(px(&img, w / 2, h / 2), background);
        match render_or_placeholder(&rt, &o) {
            Rendered::Image(same) => assert_eq!(rgb(&same), img),
            Rendered::Placeholder { reason, .. } => panic!("RTSTRUCT got a placeholder: {reason}"),
        }
        // The slice viewer: one slice, over the image its thumbnail is drawn on when given.
        assert_eq!(
            overlay_source(&rt, Some(0)),
            Some(OverlaySource {
                sop_instance_uid: set.ct_uid(2),
                series_uid: Some(set.series_uid()),
                frame_number: None,
            })
        );
        let ct = set.ct(2);
        match render_frame_over_or_placeholder(&rt, Some(0), Some(&ct), &o) {
            Rendered::Image(over) => assert_eq!(
                rgb(&over),
                rgb(&render_rtstruct_overlay(&rt, Some(&ct), &o).unwrap())
            ),
            Rendered::Placeholder { reason, .. } => panic!("RTSTRUCT got a placeholder: {reason}"),
        }
        assert!(render_frame_over_or_placeholder(&rt, Some(1), Some(&ct), &o).is_placeholder());

        // Contoured slices 0, 1, 3 (yellow "Band") and 2 (green "Square"): the middle along z
        // is slice 2 (the middle contour in file order is on slice 3; down z, slice 1).
        let multi = set.file("rtstruct-multi.dcm");
        let want = SegSourceRef {
            series_uid: set.series_uid(),
            sop_instance_uid: set.ct_uid(2),
        };
        assert_eq!(
            rtstruct_source_reference(&multi),
            Some(want),
            "{}",
            set.name
        );
        let yellow = |p: &image::Rgb<u8>| p[0] >= 200 && p[1] >= 200 && p[2] <= 60;
        let img = rgb(&render_rtstruct_overlay(&multi, None, &o).expect("multi alone"));
        let yellows = img.pixels().filter(|p| yellow(p)).count();
        let greens = img.pixels().filter(|p| is_green(p.0)).count();
        assert!(
            greens > 0 && yellows == 0,
            "{yellows} yellow, {greens} green"
        );
        let on_slice1 =
            rgb(&render_rtstruct_overlay(&multi, Some(&set.ct(1)), &o).expect("multi on slice 1"));
        save_sample(
            &format!("rtstruct-multi-{}-slice1.png", set.name),
            &rgb_png(&on_slice1),
        );
        let yellows = on_slice1.pixels().filter(|p| yellow(p)).count();
        let greens = on_slice1.pixels().filter(|p| is_green(p.0)).count();
        assert!(
            yellows > 0 && greens == 0,
            "slice 1: {yellows} yellow, {greens} green"
        );

        // Contours referencing no image: drawn alone, but no image to name.
        let noref = set.file("rtstruct-noref.dcm");
        assert_eq!(rtstruct_source_reference(&noref), None);
        assert!(render_rtstruct_overlay(&noref, None, &o).is_ok());
    }
}

fn rgb_png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

/// Garbage, truncated and inconsistent input: errors (or placeholders), never a panic.
#[test]
fn garbage_gives_errors_not_panics() {
    let set = Set::new("30x25");
    let o = opts(64);
    let seg = set.file("seg-binary.dcm");
    let rt = set.file("rtstruct.dcm");
    let ct = set.ct(1);
    let mut lcg = Lcg(7);
    let garbage: Vec<u8> = (0..4096).map(|_| lcg.next() as u8).collect();
    let mut with_magic = vec![0u8; 128];
    with_magic.extend_from_slice(b"DICM");
    with_magic.extend_from_slice(&garbage);
    for input in [&garbage[..], &with_magic[..], &[][..], b"DICM"] {
        assert!(render_seg_overlay(input, None, &o).is_err());
        assert!(render_seg_overlay(&seg, Some(input), &o).is_err());
        assert!(render_rtstruct_overlay(input, None, &o).is_err());
        assert!(render_rtstruct_overlay(&rt, Some(input), &o).is_err());
        assert_eq!(seg_source_reference(input), None);
        assert_eq!(rtstruct_source_reference(input), None);
    }
    // The wrong kind of object.
    match render_seg_overlay(&ct, None, &o) {
        Err(ThumbnailError::Unsupported(what)) => assert!(what.contains("CT Image"), "{what}"),
        other => panic!("a CT as SEG: {other:?}"),
    }
    assert!(render_rtstruct_overlay(&seg, None, &o).is_err());
    assert!(render_seg_overlay(&rt, Some(&ct), &o).is_err());

    // More frames declared than the pixel data holds.
    let mut obj = OpenFileOptions::new()
        .from_reader(&seg[128..])
        .expect("parse seg");
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1000"),
    ));
    let mut bumped = Vec::new();
    obj.write_all(&mut bumped).expect("write");
    match render_seg_overlay(&bumped, None, &o) {
        Err(ThumbnailError::Invalid(what)) => assert!(what.contains("too short"), "{what}"),
        other => panic!("1000 frames declared: {other:?}"),
    }
    assert!(render_or_placeholder(&bumped, &o).is_placeholder());
    for index in [0, 999, 1000] {
        assert!(render_seg_frame(&bumped, index, Some(&ct), &o).is_err());
        assert!(
            render_frame_over_or_placeholder(&bumped, Some(index), Some(&ct), &o).is_placeholder()
        );
        assert_eq!(overlay_source(&bumped, Some(index)), None);
    }
    match seg_slices(&bumped) {
        Err(ThumbnailError::Invalid(what)) => assert!(what.contains("too short"), "{what}"),
        other => panic!("1000 frames declared: {other:?}"),
    }
    // A million frames declared: refused before any is looked at.
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1000000"),
    ));
    let mut million = Vec::new();
    obj.write_all(&mut million).expect("write");
    match seg_slices(&million) {
        Err(e @ ThumbnailError::TooManyFrames { .. }) => {
            assert!(e.to_string().contains("1000000"), "{e}")
        }
        other => panic!("a million frames declared: {other:?}"),
    }
    assert!(render_seg_frame(&million, 999_999, None, &o).is_err());

    // Truncated anywhere: no panic.
    for file in [&seg, &rt] {
        for cut in (0..file.len()).step_by(37) {
            let part = &file[..cut];
            let _ = render_seg_overlay(part, Some(&ct), &o);
            let _ = render_seg_overlay(part, None, &o);
            let _ = render_rtstruct_overlay(part, Some(&ct), &o);
            let _ = render_rtstruct_overlay(part, None, &o);
            let _ = seg_source_reference(part);
            let _ = rtstruct_source_reference(part);
            let _ = render_or_placeholder(part, &o);
            let _ = seg_slices(part);
            let _ = overlay_source(part, Some(1));
            let _ = render_seg_frame(part, 1, Some(&ct), &o);
        }
    }
}
