//! Thumbnails against DCMTK's `dcmj2pnm` as the oracle, on files written here and converted to
//! every transfer syntax by DCMTK (and GDCM for JPEG 2000).

mod common;

use common::*;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use radport_pipeline::thumbnail::{
    render_frame_or_placeholder, render_instance, render_or_placeholder, render_placeholder,
    Rendered, ThumbnailError, ThumbnailOptions,
};

fn opts(max_side: u32) -> ThumbnailOptions {
    ThumbnailOptions { max_side }
}

/// The rendered image, or `None` when this build lacks the file's codec (features `jpegls`,
/// `jpeg2000` off), in which case the placeholder must say so.
fn image_png(file: &[u8], options: &ThumbnailOptions) -> Option<Vec<u8>> {
    match render_or_placeholder(file, options) {
        Rendered::Image(png) => {
            assert!(decodable(file), "rendered without its codec?");
            Some(png)
        }
        Rendered::Placeholder { reason, .. } if !decodable(file) => {
            assert!(reason.contains("codec missing"), "{reason}");
            None
        }
        Rendered::Placeholder { reason, .. } => {
            panic!("expected an image, got a placeholder: {reason}")
        }
    }
}

const CT_ROWS: u16 = 192;
const CT_COLS: u16 = 256;

/// Every lossless encoding of the CT slice renders like `dcmj2pnm +Ww 40 400` does.
#[test]
fn ct_slice_matches_dcmtk_in_every_lossless_transfer_syntax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = ct_file(CT_ROWS, CT_COLS, "MONOCHROME2");
    let oracle = gray(&dcmj2pnm(
        dir.path(),
        &original,
        "ct",
        &["+Ww", "40", "400"],
    ));
    assert_eq!(
        oracle.dimensions(),
        (u32::from(CT_COLS), u32::from(CT_ROWS))
    );

    let variants: Vec<(&str, &str, Vec<u8>)> = vec![
        ("explicit-le", EXPLICIT_VR_LE, original.clone()),
        (
            "implicit-le",
            "1.2.840.10008.1.2",
            convert(dir.path(), &original, "implicit", &["dcmconv", "+ti"]),
        ),
        (
            "explicit-be",
            "1.2.840.10008.1.2.2",
            convert(dir.path(), &original, "bigendian", &["dcmconv", "+tb"]),
        ),
        (
            "deflated",
            "1.2.840.10008.1.2.1.99",
            convert(dir.path(), &original, "deflated", &["dcmconv", "+td"]),
        ),
        (
            "jpeg-lossless-sv1",
            "1.2.840.10008.1.2.4.70",
            convert(dir.path(), &original, "jpegsv1", &["dcmcjpeg", "+e1"]),
        ),
        (
            "jpeg-lossless",
            "1.2.840.10008.1.2.4.57",
            convert(dir.path(), &original, "jpegll", &["dcmcjpeg", "+el"]),
        ),
        (
            "rle",
            "1.2.840.10008.1.2.5",
            convert(dir.path(), &original, "rle", &["dcmcrle"]),
        ),
        (
            "jpeg-ls",
            "1.2.840.10008.1.2.4.80",
            convert(dir.path(), &original, "jpegls", &["dcmcjpls"]),
        ),
        (
            "jpeg2000-lossless",
            "1.2.840.10008.1.2.4.90",
            convert(dir.path(), &original, "j2k", &["gdcmconv", "--j2k"]),
        ),
    ];
    for (name, ts, file) in variants {
        assert_eq!(
            transfer_syntax(&file),
            ts,
            "{name}: converter produced another syntax"
        );
        let Some(png) = image_png(&file, &opts(u32::from(CT_COLS))) else {
            continue;
        };
        let ours = gray(&png);
        assert_eq!(ours.dimensions(), oracle.dimensions(), "{name}");
        let (mean, max) = diff(ours.as_raw(), oracle.as_raw());
        eprintln!("{name}: mean abs diff {mean:.3}, max {max}");
        assert!(mean <= 2.0, "{name}: mean abs diff {mean} against dcmj2pnm");
        save_sample(&format!("ct-{name}.png"), &png);
    }
}

/// The window really is applied: air black, the 200 HU disc bright but not white, bone white.
#[test]
fn ct_window_puts_tissues_where_expected() {
    let file = ct_file(CT_ROWS, CT_COLS, "MONOCHROME2");
    let img = gray(&render_instance(&file, &opts(u32::from(CT_COLS))).expect("render"));
    let at = |row: f64, col: f64| {
        img.get_pixel(
            (col * f64::from(CT_COLS)) as u32,
            (row * f64::from(CT_ROWS)) as u32,
        )[0]
    };
    assert_eq!(at(0.02, 0.5), 0, "air");
    // 200 HU in 40/400: ((200 - 39.5) / 399 + 0.5) * 255 = 230
    assert!(
        (228..=232).contains(&at(0.55, 0.33)),
        "disc {}",
        at(0.55, 0.33)
    );
    assert_eq!(at(0.55, 0.75), 255, "bone");
    let tissue = at(0.8, 0.5);
    assert!((110..=135).contains(&tissue), "soft tissue {tissue}");
}

#[test]
fn monochrome1_is_inverted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = ct_file(CT_ROWS, CT_COLS, "MONOCHROME1");
    let png = render_instance(&file, &opts(u32::from(CT_COLS))).expect("render");
    save_sample("ct-monochrome1.png", &png);
    let ours = gray(&png);
    let normal = gray(
        &render_instance(&ct_file(CT_ROWS, CT_COLS, "MONOCHROME2"), &opts(256)).expect("render"),
    );
    for (a, b) in ours.as_raw().iter().zip(normal.as_raw()) {
        assert_eq!(u16::from(*a) + u16::from(*b), 255);
    }
    let disc = ours.get_pixel(
        (0.75 * f64::from(CT_COLS)) as u32,
        (0.55 * f64::from(CT_ROWS)) as u32,
    )[0];
    assert_eq!(disc, 0, "bright bone disc becomes black");
    assert_eq!(ours.get_pixel(128, 2)[0], 255, "air becomes white");
    let oracle = gray(&dcmj2pnm(dir.path(), &file, "mono1", &["+Ww", "40", "400"]));
    let (mean, _) = diff(ours.as_raw(), oracle.as_raw());
    assert!(mean <= 2.0, "mean abs diff {mean} against dcmj2pnm");
}

/// Signed 16-bit data (Pixel Representation 1, no rescale) through native and JPEG lossless.
#[test]
fn signed_pixels_match_dcmtk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values: Vec<u16> = ct_values(128, 128)
        .iter()
        .map(|v| (i32::from(*v) - 1024) as i16 as u16)
        .collect();
    let mut spec = ImageSpec::mono16(128, 128, &values, 16);
    spec.signed = true;
    let file = spec.file(vec![
        ds(tags::WINDOW_CENTER, "40"),
        ds(tags::WINDOW_WIDTH, "400"),
    ]);
    let oracle = gray(&dcmj2pnm(
        dir.path(),
        &file,
        "signed",
        &["+Ww", "40", "400"],
    ));
    let jpeg = convert(dir.path(), &file, "signedjpeg", &["dcmcjpeg", "+e1"]);
    let rle = convert(dir.path(), &file, "signedrle", &["dcmcrle"]);
    let jpls = convert(dir.path(), &file, "signedjpls", &["dcmcjpls"]);
    let j2k = convert(dir.path(), &file, "signedj2k", &["gdcmconv", "--j2k"]);
    for (name, f) in [
        ("native", &file),
        ("jpeg-lossless", &jpeg),
        ("rle", &rle),
        ("jpeg-ls", &jpls),
        ("jpeg2000", &j2k),
    ] {
        let Some(png) = image_png(f, &opts(128)) else {
            continue;
        };
        let ours = gray(&png);
        let (mean, max) = diff(ours.as_raw(), oracle.as_raw());
        eprintln!("signed {name}: mean {mean:.3} max {max}");
        assert!(mean <= 2.0, "signed {name}: mean abs diff {mean}");
    }
}

// ---- colour --------------------------------------------------------------------------------

const BLOCKS: [[u8; 3]; 6] = [
    [220, 30, 30],
    [30, 200, 60],
    [40, 60, 220],
    [240, 220, 40],
    [128, 128, 128],
    [250, 250, 250],
];
const COLOUR_ROWS: u16 = 64;
const COLOUR_COLS: u16 = 96;

/// 2 × 3 blocks of 32 × 32 pixels, row-major.
fn block_of(row: usize, col: usize) -> [u8; 3] {
    BLOCKS[(row / 32) * 3 + col / 32]
}

fn rgb_pixels() -> Vec<u8> {
    let mut out = Vec::new();
    for r in 0..usize::from(COLOUR_ROWS) {
        for c in 0..usize::from(COLOUR_COLS) {
            out.extend_from_slice(&block_of(r, c));
        }
    }
    out
}

fn to_ybr(p: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let cb = -0.168_736 * r - 0.331_264 * g + 0.5 * b + 128.0;
    let cr = 0.5 * r - 0.418_688 * g - 0.081_312 * b + 128.0;
    [y, cb, cr].map(|v| v.round().clamp(0.0, 255.0) as u8)
}

/// Checks the centre of each block against its colour.
fn assert_blocks(name: &str, img: &image::RgbImage, tolerance: u8) {
    assert_eq!(
        img.dimensions(),
        (u32::from(COLOUR_COLS), u32::from(COLOUR_ROWS)),
        "{name}"
    );
    for br in 0..2u32 {
        for bc in 0..3u32 {
            let want = block_of(br as usize * 32, bc as usize * 32);
            for (dy, dx) in [(10, 10), (16, 16), (21, 21), (10, 21)] {
                let got = img.get_pixel(bc * 32 + dx, br * 32 + dy).0;
                for ch in 0..3 {
                    assert!(
                        got[ch].abs_diff(want[ch]) <= tolerance,
                        "{name}: block ({br},{bc}) got {got:?} want {want:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn rgb_and_ybr_colours_come_out_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let interleaved = rgb_pixels();
    let planar: Vec<u8> = (0..3)
        .flat_map(|ch| {
            interleaved
                .iter()
                .skip(ch)
                .step_by(3)
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    let ybr: Vec<u8> = interleaved
        .chunks_exact(3)
        .flat_map(|p| to_ybr([p[0], p[1], p[2]]))
        .collect();
    // YBR_FULL_422: Y1 Y2 Cb Cr per horizontal pair (the pairs never straddle a block edge).
    let ybr422: Vec<u8> = ybr
        .chunks_exact(6)
        .flat_map(|pair| [pair[0], pair[3], pair[1], pair[2]])
        .collect();

    let rgb0 = ImageSpec::colour(COLOUR_ROWS, COLOUR_COLS, "RGB", interleaved.clone()).file(vec![]);
    let mut spec1 = ImageSpec::colour(COLOUR_ROWS, COLOUR_COLS, "RGB", planar);
    spec1.planar = Some(1);
    let rgb1 = spec1.file(vec![]);
    let ybr_full = ImageSpec::colour(COLOUR_ROWS, COLOUR_COLS, "YBR_FULL", ybr).file(vec![]);
    let ybr_full_422 =
        ImageSpec::colour(COLOUR_ROWS, COLOUR_COLS, "YBR_FULL_422", ybr422).file(vec![]);

    let baseline = convert(dir.path(), &rgb0, "baseline", &["dcmcjpeg", "+eb"]);
    assert_eq!(transfer_syntax(&baseline), "1.2.840.10008.1.2.4.50");
    assert_eq!(
        attribute(&baseline, tags::PHOTOMETRIC_INTERPRETATION).as_deref(),
        Some("YBR_FULL_422")
    );
    let ybr_rle = convert(dir.path(), &ybr_full, "ybrrle", &["dcmcrle"]);
    assert_eq!(
        attribute(&ybr_rle, tags::PHOTOMETRIC_INTERPRETATION).as_deref(),
        Some("YBR_FULL")
    );

    // (name, file, tolerance against the block colours, compare with dcmj2pnm)
    let cases: Vec<(&str, Vec<u8>, u8, bool)> = vec![
        ("rgb-planar0", rgb0.clone(), 0, true),
        ("rgb-planar1", rgb1.clone(), 0, true),
        ("ybr-full", ybr_full.clone(), 2, true),
        ("ybr-full-422", ybr_full_422, 2, true),
        ("ybr-full-rle", ybr_rle, 2, true),
        (
            "rgb-planar1-rle",
            convert(dir.path(), &rgb1, "rgbrle", &["dcmcrle"]),
            0,
            true,
        ),
        (
            "rgb-jpeg-lossless",
            convert(dir.path(), &rgb0, "rgbjpegll", &["dcmcjpeg", "+e1"]),
            0,
            true,
        ),
        (
            "ybr-jpeg-lossless",
            convert(dir.path(), &ybr_full, "ybrjpegll", &["dcmcjpeg", "+e1"]),
            2,
            true,
        ),
        (
            "rgb-jpeg-ls",
            convert(dir.path(), &rgb0, "rgbjpegls", &["dcmcjpls"]),
            0,
            false, // dcmj2pnm has no JPEG-LS decoder
        ),
        ("ybr-jpeg-baseline", baseline, 12, true),
        (
            "rgb-jpeg2000",
            convert(dir.path(), &rgb0, "rgbj2k", &["gdcmconv", "--j2k"]),
            0,
            false,
        ),
    ];
    for (name, file, tolerance, oracle) in cases {
        let Some(png) = image_png(&file, &opts(u32::from(COLOUR_COLS))) else {
            continue;
        };
        save_sample(&format!("colour-{name}.png"), &png);
        let img = rgb(&png);
        assert_blocks(name, &img, tolerance);
        if oracle {
            let want = rgb(&dcmj2pnm(dir.path(), &file, name, &[]));
            let (mean, max) = diff(img.as_raw(), want.as_raw());
            eprintln!("{name}: vs dcmj2pnm mean {mean:.3} max {max}");
            assert!(mean <= 2.0, "{name}: mean abs diff {mean} against dcmj2pnm");
        }
    }
}

#[test]
fn palette_colour_goes_through_the_lut() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Indexes 10..=13 (first mapped value 10) in four quadrants of a 32 x 32 image.
    let (rows, cols) = (32u16, 32u16);
    let indexes: Vec<u8> = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| 10 + u8::from(r >= 16) * 2 + u8::from(c >= 16)))
        .collect();
    let mut spec = ImageSpec::mono8(rows, cols, indexes);
    spec.photometric = "PALETTE COLOR";
    let lut = |tag, values: [u16; 4]| {
        DataElement::new(
            tag,
            VR::OW,
            PrimitiveValue::U16(values.iter().map(|v| v * 257).collect()),
        )
    };
    let descriptor = |tag| {
        DataElement::new(
            tag,
            VR::US,
            PrimitiveValue::U16([4u16, 10, 16].into_iter().collect()),
        )
    };
    let red = lut(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA, [255, 0, 0, 200]);
    let green = lut(
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        [0, 255, 0, 100],
    );
    let blue = lut(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA, [0, 0, 255, 50]);
    let file = spec.file(vec![
        descriptor(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR),
        descriptor(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR),
        descriptor(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR),
        red,
        green,
        blue,
    ]);
    let png = render_instance(&file, &opts(32)).expect("render");
    save_sample("palette.png", &png);
    let img = rgb(&png);
    assert_eq!(img.get_pixel(4, 4).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(28, 4).0, [0, 255, 0]);
    assert_eq!(img.get_pixel(4, 28).0, [0, 0, 255]);
    assert_eq!(img.get_pixel(28, 28).0, [200, 100, 50]);
    let oracle = rgb(&dcmj2pnm(dir.path(), &file, "palette", &[]));
    let (mean, _) = diff(img.as_raw(), oracle.as_raw());
    assert!(mean <= 1.0, "mean abs diff {mean} against dcmj2pnm");
}

// ---- geometry -------------------------------------------------------------------------------

/// 100 rows x 200 columns with a bright block in the top-left corner.
fn marked_image(spacing: Option<&str>) -> Vec<u8> {
    let (rows, cols) = (100u16, 200u16);
    let values: Vec<u8> = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| if r < 20 && c < 40 { 250 } else { 30 }))
        .collect();
    let extra = spacing
        .map(|s| vec![ds(tags::PIXEL_SPACING, s)])
        .unwrap_or_default();
    ImageSpec::mono8(rows, cols, values).file(extra)
}

#[test]
fn aspect_ratio_follows_pixel_spacing() {
    // Rows 1.0 mm apart, columns 0.5 mm apart: 100 mm x 100 mm.
    let square = render_instance(&marked_image(Some("1.0\\0.5")), &opts(256)).expect("render");
    save_sample("aspect-1.0x0.5.png", &square);
    assert_eq!(png_size(&square), (256, 256));
    let img = gray(&square);
    // The marker (20 rows = 20 mm, 40 columns = 20 mm) is a square in the top-left corner.
    assert!(img.get_pixel(20, 20)[0] > 200);
    assert!(img.get_pixel(60, 20)[0] < 60);
    assert!(img.get_pixel(20, 60)[0] < 60);
    assert!(img.get_pixel(236, 236)[0] < 60);

    let iso = render_instance(&marked_image(Some("0.5\\0.5")), &opts(256)).expect("render");
    assert_eq!(png_size(&iso), (256, 128));
    let none = render_instance(&marked_image(None), &opts(256)).expect("render");
    assert_eq!(png_size(&none), (256, 128));
    let tall = render_instance(&marked_image(Some("0.5\\1.0")), &opts(256)).expect("render");
    assert_eq!(png_size(&tall), (256, 64));
    let small = render_instance(&marked_image(Some("1.0\\0.5")), &opts(64)).expect("render");
    assert_eq!(png_size(&small), (64, 64));
}

#[test]
fn a_512_ct_becomes_a_256_thumbnail() {
    let file = ct_file(512, 512, "MONOCHROME2");
    let png = render_instance(&file, &ThumbnailOptions::default()).expect("render");
    save_sample("ct-512-default.png", &png);
    assert_eq!(png_size(&png), (256, 256));
    let img = gray(&png);
    // Downscaled, the structures are still where they were.
    assert_eq!(img.get_pixel(128, 4)[0], 0, "air");
    let disc = img.get_pixel((0.33 * 256.0) as u32, (0.55 * 256.0) as u32)[0];
    assert!((220..=240).contains(&disc), "disc {disc}");
}

/// Enhanced multi-frame objects keep rescale, window and pixel spacing in functional groups:
/// shared (rescale, spacing) and per frame (window, different for each frame).
#[test]
fn enhanced_multi_frame_uses_functional_groups() {
    use dicom_core::value::DataSetSequence;
    use dicom_object::InMemDicomObject;

    let (rows, cols) = (100u16, 200u16);
    let frame_values = ct_values(rows, cols);
    let mut values = Vec::new();
    for _ in 0..3 {
        values.extend_from_slice(&frame_values);
    }
    let mut spec = ImageSpec::mono16(rows, cols, &values, 12);
    spec.sop_class = "1.2.840.10008.5.1.4.1.1.2.1";
    spec.frames = Some(3);
    let seq = |tag, items: Vec<InMemDicomObject>| {
        DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
    };
    let item = |elements: Vec<dicom_object::mem::InMemElement>| {
        InMemDicomObject::from_element_iter(elements)
    };
    let shared = item(vec![
        seq(
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            vec![item(vec![
                ds(tags::RESCALE_INTERCEPT, "-1024"),
                ds(tags::RESCALE_SLOPE, "1"),
            ])],
        ),
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![item(vec![ds(tags::PIXEL_SPACING, "1.0\\0.5")])],
        ),
    ]);
    // Frame 1 (the middle one) is shown with 40/400; the others with a bone window.
    let per_frame: Vec<InMemDicomObject> = ["500", "40", "500"]
        .iter()
        .zip(["2000", "400", "2000"])
        .map(|(c, w)| {
            item(vec![seq(
                tags::FRAME_VOILUT_SEQUENCE,
                vec![item(vec![
                    ds(tags::WINDOW_CENTER, c),
                    ds(tags::WINDOW_WIDTH, w),
                ])],
            )])
        })
        .collect();
    let file = spec.file(vec![
        seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]),
        seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
    ]);
    let png = render_instance(&file, &opts(200)).expect("render");
    save_sample("enhanced-ct.png", &png);
    // Spacing 1.0 \ 0.5: 100 mm x 100 mm.
    assert_eq!(png_size(&png), (200, 200));

    // The same frame as a plain single-frame CT with 40/400, resampled the same way.
    let plain = ImageSpec::mono16(rows, cols, &frame_values, 12).file(vec![
        ds(tags::RESCALE_INTERCEPT, "-1024"),
        ds(tags::RESCALE_SLOPE, "1"),
        ds(tags::WINDOW_CENTER, "40"),
        ds(tags::WINDOW_WIDTH, "400"),
        ds(tags::PIXEL_SPACING, "1.0\\0.5"),
    ]);
    let want = gray(&render_instance(&plain, &opts(200)).expect("render"));
    assert_eq!(gray(&png).as_raw(), want.as_raw());
}

// ---- frames ---------------------------------------------------------------------------------

fn five_frames() -> Vec<u8> {
    let (rows, cols) = (24u16, 32u16);
    let mut values = Vec::new();
    for frame in 0..5u8 {
        values.extend(std::iter::repeat_n(
            20 + 50 * frame,
            usize::from(rows) * usize::from(cols),
        ));
    }
    let mut spec = ImageSpec::mono8(rows, cols, values);
    spec.frames = Some(5);
    spec.file(vec![])
}

#[test]
fn multi_frame_draws_the_middle_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let native = five_frames();
    let variants = [
        ("native", native.clone()),
        ("rle", convert(dir.path(), &native, "mfrle", &["dcmcrle"])),
        (
            "jpeg-lossless",
            convert(dir.path(), &native, "mfjpeg", &["dcmcjpeg", "+e1"]),
        ),
        (
            "jpeg-ls",
            convert(dir.path(), &native, "mfjpls", &["dcmcjpls"]),
        ),
    ];
    for (name, file) in variants {
        let Some(png) = image_png(&file, &opts(32)) else {
            continue;
        };
        let img = gray(&png);
        assert_eq!(img.dimensions(), (32, 24), "{name}");
        assert!(
            img.as_raw().iter().all(|v| *v == 120),
            "{name}: frame 2 (value 120) expected, got {:?}",
            &img.as_raw()[..4]
        );
    }
}

/// The viewer's frames: each frame of a multi-frame image on its own, native and compressed;
/// a frame the image does not have is a placeholder that says so.
#[test]
fn each_frame_of_a_multi_frame_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let native = five_frames();
    let variants = [
        ("native", native.clone()),
        ("rle", convert(dir.path(), &native, "mfrle2", &["dcmcrle"])),
        (
            "jpeg-ls",
            convert(dir.path(), &native, "mfjpls2", &["dcmcjpls"]),
        ),
    ];
    for (name, file) in variants {
        if !decodable(&file) {
            continue;
        }
        for frame in 0..5u32 {
            let Rendered::Image(png) = render_frame_or_placeholder(&file, Some(frame), &opts(32))
            else {
                panic!("{name}: frame {frame} not drawn");
            };
            let img = gray(&png);
            let expected = 20 + 50 * frame as u8;
            assert!(
                img.as_raw().iter().all(|v| *v == expected),
                "{name}: frame {frame} (value {expected}) expected, got {:?}",
                &img.as_raw()[..4]
            );
        }
        match render_frame_or_placeholder(&file, Some(5), &opts(32)) {
            Rendered::Placeholder { reason, .. } => {
                assert!(
                    reason.contains("no frame 6 in an instance of 5"),
                    "{reason}"
                )
            }
            Rendered::Image(_) => panic!("{name}: frame 6 of 5 drawn"),
        }
    }
}

/// 1-bit data (as in SEG): packed LSB first, contiguously across frames. 3 frames of 13 x 20
/// (260 bits, not a multiple of 8): the middle one has a vertical bar in columns 5..10.
#[test]
fn one_bit_frames_are_unpacked_contiguously() {
    let (rows, cols) = (13usize, 20usize);
    let mut bits = Vec::new();
    for frame in 0..3 {
        for _r in 0..rows {
            for c in 0..cols {
                bits.push(match frame {
                    1 => (5..10).contains(&c),
                    0 => c < 2,
                    _ => c > 17,
                });
            }
        }
    }
    let mut packed = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            packed[i / 8] |= 1 << (i % 8);
        }
    }
    let mut spec = ImageSpec::mono8(rows as u16, cols as u16, packed);
    spec.bits_allocated = 1;
    spec.bits_stored = 1;
    spec.frames = Some(3);
    let png = render_instance(&spec.file(vec![]), &opts(20)).expect("render");
    let img = gray(&png);
    for r in 0..rows as u32 {
        for c in 0..cols as u32 {
            let want = if (5..10).contains(&c) { 255 } else { 0 };
            assert_eq!(img.get_pixel(c, r)[0], want, "({r},{c})");
        }
    }
}

#[test]
fn bits_allocated_32_is_rendered() {
    let (rows, cols) = (16u16, 16u16);
    let values: Vec<u32> = (0..u32::from(rows) * u32::from(cols))
        .map(|i| i * 100_000)
        .collect();
    let spec = ImageSpec {
        sop_class: "1.2.840.10008.5.1.4.1.1.481.2",
        modality: "RTDOSE",
        rows,
        cols,
        samples_per_pixel: 1,
        photometric: "MONOCHROME2",
        bits_allocated: 32,
        bits_stored: 32,
        signed: false,
        planar: None,
        frames: None,
        pixels: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let img = gray(&render_instance(&spec.file(vec![]), &opts(16)).expect("render"));
    // A ramp: percentile window, increasing along rows.
    let raw = img.as_raw();
    assert!(raw[2] < 5 && raw[253] > 250, "{} {}", raw[2], raw[253]);
    assert!(raw.windows(2).all(|w| w[0] <= w[1]), "monotonic ramp");
}

/// Without Window Center/Width, outliers do not flatten the picture.
#[test]
fn percentile_window_ignores_outliers() {
    let (rows, cols) = (64u16, 64u16);
    let mut values: Vec<u16> = (0..rows)
        .flat_map(|_| (0..cols).map(|c| 1000 + c * 10))
        .collect();
    values[0] = 65535;
    values[1] = 65535;
    let png = render_instance(
        &ImageSpec::mono16(rows, cols, &values, 16).file(vec![]),
        &opts(64),
    )
    .expect("render");
    save_sample("percentile-window.png", &png);
    let img = gray(&png);
    let row = 32;
    assert!(
        img.get_pixel(1, row)[0] <= 8,
        "{}",
        img.get_pixel(1, row)[0]
    );
    assert!(
        img.get_pixel(62, row)[0] >= 247,
        "{}",
        img.get_pixel(62, row)[0]
    );
    assert!((100..=156).contains(&img.get_pixel(32, row)[0]));
}

// ---- placeholders ---------------------------------------------------------------------------

#[test]
fn sr_without_pixel_data_gets_a_placeholder_naming_its_sop_class() {
    let mut obj = base_object("1.2.840.10008.5.1.4.1.1.88.11", "SR", "1");
    obj.put(cs(tags::VALUE_TYPE, "CONTAINER"));
    obj.put(cs(tags::COMPLETION_FLAG, "COMPLETE"));
    obj.put(cs(tags::VERIFICATION_FLAG, "UNVERIFIED"));
    let file = part10(obj, EXPLICIT_VR_LE);
    match render_or_placeholder(&file, &ThumbnailOptions::default()) {
        Rendered::Placeholder { png, reason } => {
            assert!(reason.contains("Basic Text SR Storage"), "{reason}");
            assert!(reason.contains("1.2.840.10008.5.1.4.1.1.88.11"), "{reason}");
            save_sample("placeholder-sr.png", &png);
            let img = gray(&png);
            assert_eq!(img.dimensions(), (256, 256));
            let lit = img.as_raw().iter().filter(|v| **v > 180).count();
            assert!(lit > 500, "text drawn ({lit} bright pixels)");
        }
        Rendered::Image(_) => panic!("an SR has no picture"),
    }
    assert!(matches!(
        render_instance(&file, &ThumbnailOptions::default()),
        Err(ThumbnailError::NoPixelData { sop_class }) if sop_class.contains("Basic Text SR")
    ));
}

#[test]
fn garbage_and_broken_files_get_placeholders_without_panicking() {
    let mut lcg = Lcg(42);
    let garbage: Vec<u8> = (0..4096).map(|_| lcg.next() as u8).collect();
    let mut with_magic = vec![0u8; 128];
    with_magic.extend_from_slice(b"DICM");
    with_magic.extend_from_slice(&garbage);
    for input in [&garbage[..], &with_magic[..], &[][..], b"DICM"] {
        let r = render_or_placeholder(input, &ThumbnailOptions::default());
        match r {
            Rendered::Placeholder { png, reason } => {
                assert!(reason.starts_with("cannot render: "), "{reason}");
                assert_eq!(png_size(&png), (256, 256));
            }
            Rendered::Image(_) => panic!("garbage rendered as an image"),
        }
        assert!(render_instance(input, &ThumbnailOptions::default()).is_err());
    }
    let garbage_png = render_or_placeholder(&with_magic, &ThumbnailOptions::default());
    save_sample("placeholder-garbage.png", garbage_png.png());

    // Truncated at every 97th byte: never a panic, and the full file still renders.
    let ct = ct_file(64, 64, "MONOCHROME2");
    for cut in (0..ct.len()).step_by(97) {
        let _ = render_or_placeholder(&ct[..cut], &opts(64));
    }
    assert!(!render_or_placeholder(&ct, &opts(64)).is_placeholder());
}

/// Random byte flips in the compressed pixel data of every codec: a placeholder or an image,
/// never a panic escaping (and no crash of the C codecs on these inputs).
#[test]
fn corrupted_codestreams_do_not_escape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ct = ct_file(64, 64, "MONOCHROME2");
    let encoded = [
        convert(dir.path(), &ct, "fz-jpeg", &["dcmcjpeg", "+e1"]),
        convert(dir.path(), &ct, "fz-rle", &["dcmcrle"]),
        convert(dir.path(), &ct, "fz-jpls", &["dcmcjpls"]),
        convert(dir.path(), &ct, "fz-j2k", &["gdcmconv", "--j2k"]),
        convert(dir.path(), &ct, "fz-deflate", &["dcmconv", "+td"]),
    ];
    let mut lcg = Lcg(9);
    let mut placeholders = 0;
    let mut caught_panics = 0;
    for file in &encoded {
        let started = std::time::Instant::now();
        // Flip bytes in the last part of the file (the pixel data).
        let start = file.len() * 2 / 3;
        for _ in 0..60 {
            let mut mutated = file.clone();
            for _ in 0..1 + lcg.next() % 8 {
                let at = start + (lcg.next() as usize) % (file.len() - start);
                mutated[at] ^= 1 << (lcg.next() % 8);
            }
            let rendered = render_or_placeholder(&mutated, &opts(64));
            // Whatever the damage: a valid PNG of at most the requested size, and a placeholder
            // says why.
            let png = image::load_from_memory(rendered.png())
                .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", transfer_syntax(file)));
            assert!(png.width() <= 64 && png.height() <= 64 && png.width() > 0);
            if let Rendered::Placeholder { reason, .. } = &rendered {
                assert!(!reason.trim().is_empty(), "a placeholder without a reason");
                placeholders += 1;
                if reason.contains("crashed") {
                    caught_panics += 1;
                }
            }
        }
        eprintln!("{}: {:?}", transfer_syntax(file), started.elapsed());
    }
    eprintln!(
        "{placeholders} of 300 corrupted files became placeholders ({caught_panics} after a caught panic)"
    );
    // The flips are made by a fixed generator, so these counts are the same every run: some
    // damage is caught (a decoder error, not a panic that escaped), and not all of it (several
    // codecs decode flipped bits as other pixel values).
    assert!(placeholders > 0 && placeholders < 300, "{placeholders}");
}

#[test]
fn a_codec_that_is_not_built_in_gives_a_named_placeholder() {
    // MPEG-2 Main Profile / Main Level: known to the registry, no decoder.
    let spec = ImageSpec::colour(16, 16, "YBR_PARTIAL_420", vec![0; 16 * 16 * 3]);
    let file = encapsulated(&spec, "1.2.840.10008.1.2.4.100", vec![vec![0u8; 64]]);
    match render_or_placeholder(&file, &ThumbnailOptions::default()) {
        Rendered::Placeholder { reason, png } => {
            assert!(reason.contains("codec missing"), "{reason}");
            assert!(reason.contains("MPEG2"), "{reason}");
            save_sample("placeholder-codec-missing.png", &png);
        }
        Rendered::Image(_) => panic!("MPEG-2 is not decodable here"),
    }
}

/// 12-bit JPEG extended (process 2 & 4) is a known failure of the pure-Rust JPEG decoder:
/// it must become a "cannot render" placeholder (or, should the decoder learn it, match DCMTK).
#[test]
fn jpeg_extended_12_bit_is_handled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ct = ct_file(64, 64, "MONOCHROME2");
    let extended = convert(dir.path(), &ct, "ext12", &["dcmcjpeg", "+ee"]);
    assert_eq!(transfer_syntax(&extended), "1.2.840.10008.1.2.4.51");
    match render_or_placeholder(&extended, &ThumbnailOptions::default()) {
        Rendered::Placeholder { reason, png } => {
            eprintln!("12-bit JPEG extended: {reason}");
            assert!(reason.starts_with("cannot render: "), "{reason}");
            save_sample("placeholder-jpeg12.png", &png);
        }
        Rendered::Image(png) => {
            let oracle = gray(&dcmj2pnm(
                dir.path(),
                &extended,
                "ext12",
                &["+Ww", "40", "400"],
            ));
            let ours = gray(&render_instance(&extended, &opts(64)).expect("render"));
            let (mean, _) = diff(ours.as_raw(), oracle.as_raw());
            assert!(mean <= 3.0, "lossy 12-bit: mean abs diff {mean}");
            drop(png);
        }
    }
}

#[test]
fn placeholders_are_the_requested_size_and_show_text() {
    let png = render_placeholder(
        "MR",
        "cannot render: JPEG-LS Lossless Image Compression codec missing",
        &ThumbnailOptions::default(),
    );
    save_sample("placeholder-text.png", &png);
    let img = gray(&png);
    assert_eq!(img.dimensions(), (256, 256));
    let small = gray(&render_placeholder(
        "SR",
        "Comprehensive SR Storage",
        &opts(96),
    ));
    assert_eq!(small.dimensions(), (96, 96));
    // Different text, different pictures.
    let a = render_placeholder(
        "SR",
        "Comprehensive SR Storage",
        &ThumbnailOptions::default(),
    );
    let b = render_placeholder(
        "KO",
        "Key Object Selection Document Storage",
        &ThumbnailOptions::default(),
    );
    assert_ne!(a, b);
}

/// Compressed pixel data decoded to native samples for DICOMweb equals the original's in every
/// lossless syntax; native pixel data is refused (it is sent as stored).
#[test]
fn compressed_frames_decode_to_the_original_samples() {
    use radport_pipeline::thumbnail::decode_native_frames;
    let dir = tempfile::tempdir().expect("tempdir");
    let original = ct_file(CT_ROWS, CT_COLS, "MONOCHROME2");
    let native = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(&original[..])
        .expect("the original")
        .element(tags::PIXEL_DATA)
        .expect("pixel data")
        .to_bytes()
        .expect("bytes")
        .to_vec();
    assert!(decode_native_frames(&original, &[0]).is_err());
    for (name, args) in [
        ("jpegls", &["dcmcjpls"][..]),
        ("jpegsv1", &["dcmcjpeg", "+e1"]),
        ("rle", &["dcmcrle"]),
        ("j2k", &["gdcmconv", "--j2k"]),
    ] {
        let file = convert(dir.path(), &original, name, args);
        if !decodable(&file) {
            continue;
        }
        let frames = decode_native_frames(&file, &[0]).expect(name);
        assert_eq!(frames.len(), 1);
        assert!(frames[0] == native, "{name}: decoded samples differ");
        assert!(
            matches!(
                decode_native_frames(&file, &[1]),
                Err(ThumbnailError::NoSuchFrame { .. })
            ),
            "{name}"
        );
    }
}

/// A viewer's view: the window given, the picture fitted into the viewport (aspect kept), cut to
/// a region, as JPEG or PNG.
#[test]
fn views_follow_window_region_and_viewport() {
    use radport_pipeline::thumbnail::{
        render_view, ViewFormat, ViewOptions, ViewRegion, ViewWindow, WindowFunction,
    };
    let file = ct_file(CT_ROWS, CT_COLS, "MONOCHROME2");
    let base = ViewOptions {
        frame: None,
        window: None,
        region: None,
        viewport: None,
        format: ViewFormat::Png,
    };
    let png = render_view(&file, &base).expect("native size");
    assert_eq!(png_size(&png), (u32::from(CT_COLS), u32::from(CT_ROWS)));
    // The object's own window, as the thumbnail draws it.
    let thumbnail = render_instance(&file, &opts(u32::from(CT_COLS))).expect("thumbnail");
    assert_eq!(gray(&png).as_raw(), gray(&thumbnail).as_raw());
    let jpeg = render_view(
        &file,
        &ViewOptions {
            viewport: Some((128, 128)),
            format: ViewFormat::Jpeg { quality: 80 },
            ..base
        },
    )
    .expect("JPEG");
    let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).expect("JPEG");
    assert_eq!((img.width(), img.height()), (128, 96));
    for (center, value) in [(-1.0e6, 255u8), (1.0e6, 0)] {
        let png = render_view(
            &file,
            &ViewOptions {
                window: Some(ViewWindow {
                    center,
                    width: 1.0,
                    function: WindowFunction::Linear,
                }),
                ..base
            },
        )
        .expect("windowed");
        assert!(gray(&png).pixels().all(|p| p[0] == value), "{center}");
    }
    let cut = render_view(
        &file,
        &ViewOptions {
            region: Some(ViewRegion {
                x: 10,
                y: 20,
                width: 64,
                height: 32,
            }),
            ..base
        },
    )
    .expect("a region");
    let whole = gray(&png);
    let cut = gray(&cut);
    assert_eq!(cut.dimensions(), (64, 32));
    assert_eq!(cut.get_pixel(0, 0), whole.get_pixel(10, 20));
    assert_eq!(cut.get_pixel(63, 31), whole.get_pixel(73, 51));
}
