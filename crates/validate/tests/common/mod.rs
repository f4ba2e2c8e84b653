#![allow(dead_code)]
//! Test helpers: a valid-ish CT instance built with dicom-object, dciodvfy runner.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::path::Path;
use std::process::Command;

pub const CT_CLASS: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const STUDY: &str = "1.2.826.0.1.3680043.8.498.1";
pub const SERIES: &str = "1.2.826.0.1.3680043.8.498.1.2";
pub const FOR: &str = "1.2.826.0.1.3680043.8.498.1.3";

pub fn put_str(o: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
    o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

pub fn strs(v: &[&str]) -> PrimitiveValue {
    PrimitiveValue::Strs(v.iter().map(|s| s.to_string()).collect::<Vec<_>>().into())
}

pub fn sop_uid(i: usize) -> String {
    format!("1.2.826.0.1.3680043.8.498.1.2.{}", i + 1)
}

/// A CT Image instance that dciodvfy accepts without errors (rows × columns of 16-bit pixels).
pub fn ct(i: usize, rows: u16, cols: u16) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put_str(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    o.put(DataElement::new(
        tags::IMAGE_TYPE,
        VR::CS,
        strs(&["ORIGINAL", "PRIMARY", "AXIAL"]),
    ));
    put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, CT_CLASS);
    put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &sop_uid(i));
    put_str(&mut o, tags::STUDY_DATE, VR::DA, "20240102");
    put_str(&mut o, tags::CONTENT_DATE, VR::DA, "20240102");
    put_str(&mut o, tags::STUDY_TIME, VR::TM, "101010");
    put_str(&mut o, tags::CONTENT_TIME, VR::TM, "101010.5");
    put_str(&mut o, tags::ACCESSION_NUMBER, VR::SH, "ACC1");
    put_str(&mut o, tags::MODALITY, VR::CS, "CT");
    put_str(&mut o, tags::MANUFACTURER, VR::LO, "radport");
    put_str(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put_str(&mut o, tags::PATIENT_NAME, VR::PN, "Doe^John");
    put_str(&mut o, tags::PATIENT_ID, VR::LO, "PID1");
    put_str(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, "19700101");
    put_str(&mut o, tags::PATIENT_SEX, VR::CS, "M");
    put_str(&mut o, tags::SLICE_THICKNESS, VR::DS, "1.0");
    put_str(&mut o, tags::KVP, VR::DS, "120");
    put_str(&mut o, tags::PATIENT_POSITION, VR::CS, "HFS");
    put_str(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, STUDY);
    put_str(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, SERIES);
    put_str(&mut o, tags::STUDY_ID, VR::SH, "1");
    put_str(&mut o, tags::SERIES_NUMBER, VR::IS, "1");
    put_str(&mut o, tags::ACQUISITION_NUMBER, VR::IS, "1");
    put_str(&mut o, tags::INSTANCE_NUMBER, VR::IS, &(i + 1).to_string());
    o.put(DataElement::new(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        strs(&["-100", "-100", &i.to_string()]),
    ));
    o.put(DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        strs(&["1", "0", "0", "0", "1", "0"]),
    ));
    put_str(&mut o, tags::FRAME_OF_REFERENCE_UID, VR::UI, FOR);
    put_str(&mut o, tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
    o.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    put_str(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    o.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(rows),
    ));
    o.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(cols),
    ));
    o.put(DataElement::new(
        tags::PIXEL_SPACING,
        VR::DS,
        strs(&["0.5", "0.5"]),
    ));
    o.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    ));
    o.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(12u16),
    ));
    o.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(11u16),
    ));
    o.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    put_str(&mut o, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    put_str(&mut o, tags::RESCALE_SLOPE, VR::DS, "1");
    put_str(&mut o, tags::RESCALE_TYPE, VR::LO, "HU");
    let n = rows as usize * cols as usize;
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![0u16; n].into()),
    ));
    o
}

/// A Referenced Series Sequence item (Series Instance UID + Referenced Instance Sequence), used by
/// the Related Series Sequence of General Series? No: used by the Common Instance Reference module.
pub fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

pub fn to_bytes(o: InMemDicomObject) -> Vec<u8> {
    let class = o
        .get(tags::SOP_CLASS_UID)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let inst = o
        .get(tags::SOP_INSTANCE_UID)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let f = o
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid(class)
                .media_storage_sop_instance_uid(inst),
        )
        .expect("meta");
    let mut out = Vec::new();
    f.write_all(&mut out).expect("write");
    out
}

/// Runs dciodvfy on bytes; returns its (stderr + stdout) lines.
pub fn dciodvfy(bytes: &[u8], dir: &Path, name: &str) -> Option<Vec<String>> {
    let bin = Path::new("/usr/bin/dciodvfy");
    if !bin.exists() {
        // The README's test command installs it (scripts/install-deps.sh): a missing oracle
        // is a failure, not a skip.
        panic!("dciodvfy not installed (apt-get install dicom3tools, or scripts/install-deps.sh)");
    }
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let out = Command::new(bin).arg(&p).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<String> = text.lines().map(|l| l.to_string()).collect();
    assert_dciodvfy_judged(&lines, out.status, name);
    Some(lines)
}

/// dciodvfy really judged the file: it named the IOD it checked against (a line of its own,
/// before any finding), did not fail to find one, and exited 0 exactly when it printed no
/// error. Without this, "no Error lines" would pass on a dciodvfy that printed nothing.
pub fn assert_dciodvfy_judged(lines: &[String], status: std::process::ExitStatus, name: &str) {
    assert!(
        lines.iter().any(|l| !l.trim().is_empty()
            && !l.starts_with("Error")
            && !l.starts_with("Warning")
            && !l.contains(" - ")),
        "{name}: dciodvfy named no IOD: {lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Information Object Not found")),
        "{name}: dciodvfy found no IOD: {lines:#?}"
    );
    let errors = lines.iter().any(|l| l.starts_with("Error"));
    assert_eq!(
        status.success(),
        !errors,
        "{name}: dciodvfy exited {status} with error lines: {errors}"
    );
}

/// The real-writer fixtures (highdicom, pydicom), written once per test process by
/// `tests/fixtures/make_fixtures.py` into a directory of the process's own (the target directory
/// may be shared by concurrent runs); those of earlier runs are removed after an hour.
pub fn fixtures() -> &'static Path {
    use std::path::PathBuf;
    use std::sync::OnceLock;
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        radport_testkit::python::run_fixture_script(
            &Path::new(env!("CARGO_TARGET_TMPDIR")).join("validate-fixtures"),
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_fixtures.py"),
            "highdicom",
        )
        .0
    })
}

/// A file of pydicom's test data: those shipped inside the pydicom wheel, or, with
/// `pip install pydicom-data`, the larger set that package adds. Panics when not available.
pub fn pydicom_file(name: &str) -> Option<std::path::PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, warnings\nwarnings.simplefilter('ignore')\nfrom pydicom.data import get_testdata_file\nprint(get_testdata_file(sys.argv[1]) or '')",
            name,
        ])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if p.is_empty() || p == "None" {
        panic!(
            "pydicom test file {name} not available (pip install pydicom-data, or \
             scripts/install-deps.sh)"
        );
    }
    Some(p.into())
}

/// Validates a file with both tools: ours, and dciodvfy's output lines if it is installed.
pub fn both_tools(path: &Path) -> (radport_validate::InstanceValidation, Option<Vec<String>>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ours = radport_validate::validate_file(&bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let theirs = dciodvfy(&bytes, dir.path(), "f.dcm");
    (ours, theirs)
}

/// dciodvfy's error lines (deduplicated, sorted).
pub fn dciodvfy_errors(lines: &[String]) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = lines
        .iter()
        .filter(|l| l.starts_with("Error"))
        .cloned()
        .collect();
    set.into_iter().collect()
}
