//! Test helpers: DICOM files written with dicom-object, DCMTK / GDCM as converters and oracle.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::value::{PixelFragmentSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use image::{GrayImage, RgbImage};

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const SC_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.7";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// A DCMTK or GDCM tool, by full path (a pip-installed pynetdicom may shadow DCMTK names on PATH).
pub fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    let package = if name.starts_with("gdcm") {
        "libgdcm-tools"
    } else {
        "dcmtk"
    };
    assert!(
        path.exists(),
        "{} is missing: apt-get install {package}",
        path.display()
    );
    path
}

/// Runs a tool, panicking with its output on failure.
pub fn run(name: &str, args: &[&str]) {
    let out = Command::new(tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Converts `input` with a DCMTK/GDCM tool, returning the new file's bytes.
pub fn convert(dir: &Path, input: &[u8], name: &str, args: &[&str]) -> Vec<u8> {
    let src = dir.join(format!("{name}-in.dcm"));
    let dst = dir.join(format!("{name}-out.dcm"));
    std::fs::write(&src, input).expect("write input");
    let mut all: Vec<&str> = args.to_vec();
    let (s, d) = (src.to_str().expect("utf8"), dst.to_str().expect("utf8"));
    let tool_name = all.remove(0);
    all.push(s);
    all.push(d);
    run(tool_name, &all);
    std::fs::read(&dst).expect("read output")
}

/// DCMTK's rendering of `input` as PNG bytes (`extra` are dcmj2pnm options such as `+Ww 40 400`).
pub fn dcmj2pnm(dir: &Path, input: &[u8], name: &str, extra: &[&str]) -> Vec<u8> {
    let src = dir.join(format!("{name}-oracle.dcm"));
    let dst = dir.join(format!("{name}-oracle.png"));
    std::fs::write(&src, input).expect("write input");
    let mut args: Vec<&str> = extra.to_vec();
    args.push("--write-png");
    args.push(src.to_str().expect("utf8"));
    args.push(dst.to_str().expect("utf8"));
    run("dcmj2pnm", &args);
    std::fs::read(&dst).expect("read oracle png")
}

/// The transfer syntax UID of a Part-10 file.
pub fn transfer_syntax(file: &[u8]) -> String {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(&file[128..])
        .expect("parse");
    obj.meta().transfer_syntax().to_owned()
}

/// Whether this build has the codec for the file's transfer syntax (JPEG-LS and JPEG 2000 are
/// behind the crate features `jpegls` and `jpeg2000`).
pub fn decodable(file: &[u8]) -> bool {
    match transfer_syntax(file).as_str() {
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => cfg!(feature = "jpegls"),
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => cfg!(feature = "jpeg2000"),
        _ => true,
    }
}

/// A text attribute of a Part-10 file.
pub fn attribute(file: &[u8], tag: Tag) -> Option<String> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(&file[128..])
        .expect("parse");
    let v = obj.get(tag)?.to_str().ok()?.trim().to_owned();
    Some(v)
}

/// Where sample thumbnails are kept for people to look at: `target/thumbnail-samples/`.
pub fn save_sample(name: &str, png: &[u8]) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("thumbnail-samples");
    std::fs::create_dir_all(&dir).expect("create samples dir");
    std::fs::write(dir.join(name), png).expect("write sample");
}

pub fn gray(png: &[u8]) -> GrayImage {
    let img = image::load_from_memory(png).expect("valid PNG");
    assert!(
        matches!(img.color(), image::ColorType::L8),
        "expected a grey PNG, got {:?}",
        img.color()
    );
    img.to_luma8()
}

pub fn rgb(png: &[u8]) -> RgbImage {
    let img = image::load_from_memory(png).expect("valid PNG");
    assert!(
        matches!(img.color(), image::ColorType::Rgb8),
        "expected an RGB PNG, got {:?}",
        img.color()
    );
    img.to_rgb8()
}

pub fn png_size(png: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(png).expect("valid PNG");
    (img.width(), img.height())
}

/// Mean and maximum absolute difference of two equally sized byte buffers.
pub fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len(), "sizes differ");
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.len().max(1) as f64, max)
}

/// A deterministic pseudo-random sequence.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
}

/// Description of an image to write.
pub struct ImageSpec {
    pub sop_class: &'static str,
    pub modality: &'static str,
    pub rows: u16,
    pub cols: u16,
    pub samples_per_pixel: u16,
    pub photometric: &'static str,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub planar: Option<u16>,
    pub frames: Option<u32>,
    /// Pixel Data bytes, little endian.
    pub pixels: Vec<u8>,
}

impl ImageSpec {
    pub fn mono16(rows: u16, cols: u16, values: &[u16], bits_stored: u16) -> Self {
        Self {
            sop_class: CT_IMAGE_STORAGE,
            modality: "CT",
            rows,
            cols,
            samples_per_pixel: 1,
            photometric: "MONOCHROME2",
            bits_allocated: 16,
            bits_stored,
            signed: false,
            planar: None,
            frames: None,
            pixels: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn mono8(rows: u16, cols: u16, values: Vec<u8>) -> Self {
        Self {
            sop_class: SC_IMAGE_STORAGE,
            modality: "OT",
            rows,
            cols,
            samples_per_pixel: 1,
            photometric: "MONOCHROME2",
            bits_allocated: 8,
            bits_stored: 8,
            signed: false,
            planar: None,
            frames: None,
            pixels: values,
        }
    }

    pub fn colour(rows: u16, cols: u16, photometric: &'static str, pixels: Vec<u8>) -> Self {
        Self {
            sop_class: SC_IMAGE_STORAGE,
            modality: "OT",
            rows,
            cols,
            samples_per_pixel: 3,
            photometric,
            bits_allocated: 8,
            bits_stored: 8,
            signed: false,
            planar: Some(0),
            frames: None,
            pixels,
        }
    }

    pub fn object(&self) -> InMemDicomObject {
        let mut obj = base_object(self.sop_class, self.modality, "1");
        obj.put(us(tags::ROWS, self.rows));
        obj.put(us(tags::COLUMNS, self.cols));
        obj.put(us(tags::SAMPLES_PER_PIXEL, self.samples_per_pixel));
        obj.put(cs(tags::PHOTOMETRIC_INTERPRETATION, self.photometric));
        obj.put(us(tags::BITS_ALLOCATED, self.bits_allocated));
        obj.put(us(tags::BITS_STORED, self.bits_stored));
        obj.put(us(tags::HIGH_BIT, self.bits_stored.saturating_sub(1)));
        obj.put(us(tags::PIXEL_REPRESENTATION, u16::from(self.signed)));
        if let Some(p) = self.planar {
            obj.put(us(tags::PLANAR_CONFIGURATION, p));
        }
        if let Some(f) = self.frames {
            obj.put(DataElement::new(
                tags::NUMBER_OF_FRAMES,
                VR::IS,
                PrimitiveValue::from(f.to_string()),
            ));
        }
        let mut bytes = self.pixels.clone();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let vr = if self.bits_allocated > 8 {
            VR::OW
        } else {
            VR::OB
        };
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            vr,
            PrimitiveValue::from(bytes),
        ));
        obj
    }

    pub fn file(&self, extra: Vec<InMemElement>) -> Vec<u8> {
        let mut obj = self.object();
        for e in extra {
            obj.put(e);
        }
        part10(obj, EXPLICIT_VR_LE)
    }
}

pub fn base_object(sop_class: &str, modality: &str, instance: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(ui(tags::SOP_CLASS_UID, sop_class));
    obj.put(ui(
        tags::SOP_INSTANCE_UID,
        &format!("2.25.1234567{instance}"),
    ));
    obj.put(ui(tags::STUDY_INSTANCE_UID, "2.25.99887766"));
    obj.put(ui(tags::SERIES_INSTANCE_UID, "2.25.99887767"));
    obj.put(cs(tags::MODALITY, modality));
    obj.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from("Thumb^Test"),
    ));
    obj.put(DataElement::new(
        tags::PATIENT_ID,
        VR::LO,
        PrimitiveValue::from("THUMB1"),
    ));
    obj.put(DataElement::new(
        tags::INSTANCE_NUMBER,
        VR::IS,
        PrimitiveValue::from(instance),
    ));
    obj
}

pub fn part10(obj: InMemDicomObject, ts: &str) -> Vec<u8> {
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
        .expect("meta");
    let mut out = Vec::new();
    file.write_all(&mut out).expect("write");
    out
}

/// A file whose Pixel Data is encapsulated (one fragment per frame) in transfer syntax `ts`.
pub fn encapsulated(spec: &ImageSpec, ts: &str, fragments: Vec<Vec<u8>>) -> Vec<u8> {
    let mut obj = spec.object();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(Vec::<u32>::new(), fragments),
    ));
    part10(obj, ts)
}

pub fn us(tag: Tag, v: u16) -> InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

pub fn cs(tag: Tag, v: &str) -> InMemElement {
    DataElement::new(tag, VR::CS, PrimitiveValue::from(v))
}

pub fn ui(tag: Tag, v: &str) -> InMemElement {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(v))
}

pub fn ds(tag: Tag, v: &str) -> InMemElement {
    DataElement::new(tag, VR::DS, PrimitiveValue::from(v))
}

/// The synthetic CT slice: 12 bits stored, Rescale -1024/1. Air (stored 0) around a soft-tissue
/// body with mild noise, a horizontal ramp band that crosses the whole 40/400 window, a bright disc
/// (200 HU) left of centre and a small bone disc (1000 HU) to the right; a bright marker square in
/// the top-left corner of the body (for orientation checks).
pub fn ct_values(rows: u16, cols: u16) -> Vec<u16> {
    let (r, c) = (f64::from(rows), f64::from(cols));
    let mut lcg = Lcg(7);
    let mut out = Vec::with_capacity(usize::from(rows) * usize::from(cols));
    for y in 0..rows {
        for x in 0..cols {
            let (fy, fx) = (f64::from(y), f64::from(x));
            let noise = (lcg.next() % 21) as i32 - 10;
            let body = ((fx - c / 2.0) / (c * 0.45)).powi(2)
                + ((fy - r / 2.0) / (r * 0.45)).powi(2)
                <= 1.0;
            let hu: i32 = if (fy - r * 0.55).hypot(fx - c * 0.33) < r * 0.2 {
                200
            } else if (fy - r * 0.55).hypot(fx - c * 0.75) < r * 0.08 {
                1000
            } else if fy >= r * 0.08 && fy < r * 0.2 {
                // ramp from -250 to +330 HU across the width
                -250 + (580.0 * fx / c) as i32
            } else if fy < r * 0.06 && fx < c * 0.06 {
                3000
            } else if body {
                30 + noise
            } else {
                -1024
            };
            out.push((hu + 1024).clamp(0, 4095) as u16);
        }
    }
    out
}

/// The CT slice as a Part-10 file (Explicit VR LE) with Window 40/400.
pub fn ct_file(rows: u16, cols: u16, photometric: &'static str) -> Vec<u8> {
    let mut spec = ImageSpec::mono16(rows, cols, &ct_values(rows, cols), 12);
    spec.photometric = photometric;
    spec.file(vec![
        ds(tags::RESCALE_INTERCEPT, "-1024"),
        ds(tags::RESCALE_SLOPE, "1"),
        ds(tags::WINDOW_CENTER, "40"),
        ds(tags::WINDOW_WIDTH, "400"),
        ds(tags::PIXEL_SPACING, "0.7\\0.7"),
    ])
}
