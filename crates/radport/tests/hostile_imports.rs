//! End to end: hostile NIfTI, zip and JSON uploads against a real `radport serve` whose address
//! space is limited to 2 GiB (`prlimit --as`), so an allocation at a declared size fails (and
//! aborts the process) instead of succeeding on a machine with memory to spare.
//!
//! Each attack must end its workflow run (or its item) as failed with a clear reason in the run
//! as the API returns it, the server must keep running and answering, its peak resident set
//! must stay small, and a series imported before the attacks must still be listed.
//!
//! The payloads are built here: NIfTI headers by hand, gzip members from the raw deflate stream
//! of a zip entry (the test has no compression crate of its own), zips with the `zip` crate.

use std::io::{Read, Write};
use std::path::Path;

use crate::common::*;
use radport_testkit::nifti::{crc32, gzip_member, gzip_stored, Nii};
use radport_testkit::zip::stored_zip;
use serde_json::{json, Value};

const NIFTIS: &str = "import-niftis-from-data-upload";
const DICOMS: &str = "import-dicoms-from-data-upload";

/// Peak resident set the server may reach, in kB: far above what it needs (tens of MB), far
/// below any of the declared sizes (4 GiB and more).
const MAX_PEAK_RSS_KB: u64 = 400 * 1024;

// --- NIfTI and gzip by hand ----------------------------------------------------------------------

/// A NIfTI-1 file: `dims` (3-D), a datatype, vox_offset `offset` (the data follows the header
/// whatever it says), sform = identity, followed by `data`.
fn nifti1(dims: [i16; 3], datatype: i16, offset: f32, data: &[u8]) -> Vec<u8> {
    let dims = dims.map(|d| d as usize);
    let mut nii = Nii::new(&dims, datatype, data.to_vec()).with_sform([
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ]);
    nii.vox_offset = Some(f64::from(offset));
    nii.bytes()
}

/// The reported 189-byte case: a NIfTI-2 header (uint8) whose dims multiply to 2^64.
fn nifti2_overflowing() -> Vec<u8> {
    let mut nii = Nii::new(&[32768, 32768, 1 << 34], 2, Vec::new());
    nii.version = 2;
    nii.bytes()
}

// --- zips ---------------------------------------------------------------------------------------

/// `ZEROS` bytes of zeros deflated, as a zip of one entry (`name`), and the entry's raw deflate
/// stream.
const ZEROS: u64 = 16 << 20;

fn zeros_zip(path: &Path, name: &str) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(name, o).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..ZEROS >> 20 {
        zip.write_all(&block).unwrap();
    }
    zip.finish().unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut raw = Vec::new();
    archive
        .by_index_raw(0)
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

// --- runs ---------------------------------------------------------------------------------------

/// Uploads `zip` as `name` and runs `workflow` on it with the CLI; returns the finished run.
fn import(server: &Server, workflow: &str, zip: &Path, name: &str) -> Value {
    server.upload(zip, name);
    let file = format!("file={name}");
    let out = server.cli(&["workflow", "run", workflow, "-p", &file, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", output_text(&out)))
}

fn item_error(run: &Value, item: &str) -> String {
    run["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["item"] == item)
        .map(|e| e["error"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no error for {item}: {run}"))
}

/// The run failed, and says `why` in its errors or its log.
fn assert_failed_with(run: &Value, why: &str) {
    assert_eq!(run["state"], "failed", "{run}");
    let said = format!("{} {}", run["errors"], run["log"]);
    assert!(said.contains(why), "expected {why:?} in the run: {run}");
}

/// The server survived: running, answering, small, and the earlier series still listed.
fn assert_unharmed(server: &mut Server, series_uid: &str, after: &str) {
    assert!(
        server.is_running(),
        "the server died after {after}:\n{}",
        server.log()
    );
    let (status, _) = server.get_status("/api/health");
    assert_eq!(status, 200, "after {after}");
    let peak = server.peak_rss_kb();
    assert!(
        peak < MAX_PEAK_RSS_KB,
        "after {after}: peak resident set {peak} kB\n{}",
        server.log()
    );
    let listed = server.series("admin", "");
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["series_instance_uid"] == series_uid),
        "after {after}: the earlier series is gone: {listed}"
    );
}

#[test]
fn hostile_nifti_zip_and_json_uploads_fail_their_runs_and_leave_the_server_running() {
    let mut server = Server::start_limited(&[], 2 << 30);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // A series imported before the attacks.
    let data: Vec<u8> = (0..8 * 8 * 4)
        .flat_map(|i: i16| (i * 3).to_le_bytes())
        .collect();
    let good = dir.join("good.zip");
    zip_of(
        &good,
        &[(
            "Good.nii.gz",
            gzip_stored(&nifti1([8, 8, 4], 4, 352.0, &data)),
        )],
    );
    let run = import(&server, NIFTIS, &good, "good.zip");
    assert_eq!(run["state"], "succeeded", "{run}");
    let series_uid = run["series"][0].as_str().unwrap().to_string();
    assert_unharmed(&mut server, &series_uid, "the good import");

    // 1. NIfTI-2 dims multiplying past 2^64 (was: abort, "memory allocation of 412316860416
    //    bytes failed").
    let zip = dir.join("overflow.zip");
    stored_zip(&zip, &[("Overflow.nii", &nifti2_overflowing())]);
    assert!(std::fs::metadata(&zip).unwrap().len() < 1024);
    let run = import(&server, NIFTIS, &zip, "overflow.zip");
    assert_failed_with(&run, "overflow");
    assert!(
        item_error(&run, "Overflow").contains("Overflow.nii"),
        "{run}"
    );
    assert_unharmed(&mut server, &series_uid, "the overflowing dims");

    // 1b. Every other size field of a NIfTI-1 header lying, one case each in one zip: each case
    //     fails with its reason, none is converted, the server stays small.
    let small: Vec<u8> = vec![7; 8 * 8 * 4 * 2];
    let good_header = nifti1([8, 8, 4], 4, 352.0, &small);
    let patched = |at: usize, bytes: &[u8]| {
        let mut b = good_header.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let lies: Vec<(&str, Vec<u8>, &str)> = vec![
        // sizeof_hdr not 348
        (
            "SizeofHdr",
            patched(0, &4000i32.to_le_bytes()),
            "not a NIfTI",
        ),
        // dim[0] (number of dimensions) past 7, and 0
        ("Ndim8", patched(40, &8i16.to_le_bytes()), "dim"),
        ("Ndim0", patched(40, &0i16.to_le_bytes()), "dim"),
        // a negative extent
        ("NegativeDim", patched(42, &(-8i16).to_le_bytes()), "dim"),
        // 32767³ voxels of int16: far past --import-max-voxels, refused before any allocation
        (
            "HugeDims",
            nifti1([32767, 32767, 32767], 4, 352.0, &small),
            "voxels",
        ),
        // dims asking for more voxels than the file has
        (
            "MoreVoxels",
            nifti1([64, 64, 64], 4, 352.0, &small),
            "truncated",
        ),
        // bitpix that does not match the datatype
        ("Bitpix", patched(72, &64i16.to_le_bytes()), "bitpix"),
        // an unknown datatype
        ("Datatype", patched(70, &999i16.to_le_bytes()), "datatype"),
        // vox_offset inside the header, and not a whole number
        (
            "OffsetInside",
            patched(108, &100f32.to_le_bytes()),
            "vox_offset",
        ),
        (
            "OffsetFraction",
            patched(108, &352.5f32.to_le_bytes()),
            "vox_offset",
        ),
    ];
    let mut entries: Vec<(String, Vec<u8>)> = lies
        .iter()
        .map(|(name, bytes, _)| (format!("{name}.nii"), bytes.clone()))
        .collect();
    // a gzip stream cut off in the middle of the voxels
    let mut cut = gzip_stored(&good_header);
    cut.truncate(cut.len() - 200);
    entries.push(("CutGzip.nii.gz".into(), cut));
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let zip = dir.join("lies.zip");
    stored_zip(&zip, &refs);
    let run = import(&server, NIFTIS, &zip, "lies.zip");
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["series"], json!([]), "nothing converted: {run}");
    for (name, _, why) in lies.iter().chain(&[("CutGzip", Vec::new(), "truncated")]) {
        let e = item_error(&run, name);
        assert!(e.contains(why), "{name}: expected {why:?} in {e:?}");
    }
    assert_unharmed(&mut server, &series_uid, "lying NIfTI headers");

    // 2. A .nii.gz stored in the zip whose vox_offset asks for 4 GiB, and whose gzip stream
    //    does inflate to 4 GiB (was: all of it read into memory).
    let bomb = dir.join("bomb.zip");
    let deflate = zeros_zip(&bomb, "bomb.dcm");
    let zeros_crc = crc32(&vec![0u8; ZEROS as usize]);
    let mut nii_gz = gzip_stored(&nifti1([2, 2, 2], 2, 4294967296.0, &[]));
    let member = gzip_member(&deflate, zeros_crc, ZEROS);
    for _ in 0..(4u64 << 30) / ZEROS {
        nii_gz.extend_from_slice(&member);
    }
    let zip = dir.join("offset.zip");
    stored_zip(&zip, &[("Offset.nii.gz", &nii_gz)]);
    let size = std::fs::metadata(&zip).unwrap().len();
    assert!(size < 8 << 20, "{size} bytes");
    let run = import(&server, NIFTIS, &zip, "offset.zip");
    assert_failed_with(&run, "extensions");
    assert!(
        item_error(&run, "Offset").contains("vox_offset 4294967296"),
        "{run}"
    );
    assert_unharmed(&mut server, &series_uid, "the 4 GiB vox_offset");

    // 3. seg_info.json with 65 535 labels over a 1×1×8192 label map (was: tables of segments ×
    //    slices allocated, address space exhausted); then 2000 labels in a small JSON file.
    let image: Vec<u8> = vec![0; 8192 * 2];
    let labels: Vec<u8> = (0..8192u32)
        .flat_map(|k| ((k % 65535 + 1) as u16).to_le_bytes())
        .collect();
    let seg_info = |n: u32| {
        let list: Vec<String> = (1..=n)
            .map(|v| format!("{{\"label_name\":\"l{v}\",\"label_int\":{v}}}"))
            .collect();
        format!("{{\"algorithm\":\"x\",\"seg_info\":[{}]}}", list.join(",")).into_bytes()
    };
    for (n, why) in [
        (65535, "larger than 1048576 bytes"),
        (2000, "a SEG may have at most 1000 segments"),
    ] {
        let zip = dir.join(format!("seg{n}.zip"));
        zip_of(
            &zip,
            &[
                (
                    "Case.nii.gz",
                    gzip_stored(&nifti1([1, 1, 8192], 4, 352.0, &image)),
                ),
                (
                    "Case_segmentation.nii.gz",
                    gzip_stored(&nifti1([1, 1, 8192], 512, 352.0, &labels)),
                ),
                ("seg_info.json", seg_info(n)),
            ],
        );
        let run = import(&server, NIFTIS, &zip, &format!("seg{n}.zip"));
        assert_failed_with(&run, why);
        assert!(run["log"].to_string().contains("seg_info.json"), "{run}");
        assert_eq!(run["series"], json!([]), "nothing converted: {run}");
        assert_unharmed(&mut server, &series_uid, &format!("{n} labels"));
    }

    // 4. A zip bomb: 16 MiB of zeros deflated ~1000:1.
    let run = import(&server, DICOMS, &bomb, "bomb.zip");
    assert_failed_with(&run, "zip bomb");
    assert!(item_error(&run, "bomb.dcm").contains("zip bomb"), "{run}");
    assert_unharmed(&mut server, &series_uid, "the zip bomb");

    // 4b. Nested: the bomb inside a zip, as `.zip` and as `.dcm`. Imports never open a zip
    //     inside a zip: the first is skipped by its extension, the second is refused as not
    //     DICOM from its first bytes, and the inner deflate stream is never inflated.
    let bomb_bytes = std::fs::read(&bomb).unwrap();
    let zip = dir.join("nested.zip");
    stored_zip(
        &zip,
        &[
            ("nested-inner.zip", &bomb_bytes[..]),
            ("nested-inner.dcm", &bomb_bytes[..]),
        ],
    );
    let run = import(&server, DICOMS, &zip, "nested.zip");
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        item_error(&run, "nested-inner.dcm").contains("not a DICOM file"),
        "{run}"
    );
    assert!(
        run["log"]
            .to_string()
            .contains("skipped 1 entries without the extension"),
        "{run}"
    );
    assert_eq!(run["series"], json!([]), "{run}");
    assert_unharmed(&mut server, &series_uid, "a nested zip bomb");

    // 5. The same entry declaring 1000 bytes (local and central headers): what it inflates is
    //    counted, not what it declares.
    let mut liar = std::fs::read(&bomb).unwrap();
    let patch = |b: &mut Vec<u8>, magic: [u8; 4], at: usize| {
        let p = b.windows(4).position(|w| w == magic).unwrap();
        b[p + at..p + at + 4].copy_from_slice(&1000u32.to_le_bytes());
    };
    patch(&mut liar, [0x50, 0x4b, 0x03, 0x04], 22);
    patch(&mut liar, [0x50, 0x4b, 0x01, 0x02], 24);
    let zip = dir.join("liar.zip");
    std::fs::write(&zip, &liar).unwrap();
    let run = import(&server, DICOMS, &zip, "liar.zip");
    assert_eq!(run["state"], "failed", "{run}");
    let e = item_error(&run, "bomb.dcm");
    assert!(
        e.contains("larger than its declared uncompressed size") || e.contains("zip bomb"),
        "{run}"
    );
    assert_unharmed(&mut server, &series_uid, "the lying declared size");

    // 6. 100 001 entries: refused from the end record, before the zip reader lists them.
    let names: Vec<String> = (0..100_001).map(|n| format!("d/{n}.dcm")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let zip = dir.join("many.zip");
    stored_zip(&zip, &entries);
    let run = import(&server, DICOMS, &zip, "many.zip");
    assert_failed_with(&run, "the zip has 100001 entries; at most 100000");
    assert_unharmed(&mut server, &series_uid, "100 001 entries");

    // 7. Zip slip: names leading out of the folder, absolute names, a symbolic link.
    let zip = dir.join("slip.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for name in ["../../evil.dcm", "/tmp/evil.dcm", "a/../../evil.dcm"] {
            w.start_file(name, o).unwrap();
            w.write_all(b"not imported").unwrap();
        }
        w.add_symlink("link.dcm", "../../../etc/passwd", o).unwrap();
        w.finish().unwrap();
    }
    let run = import(&server, DICOMS, &zip, "slip.zip");
    assert_eq!(run["state"], "failed", "{run}");
    for item in ["../../evil.dcm", "/tmp/evil.dcm", "a/../../evil.dcm"] {
        assert!(item_error(&run, item).contains("unsafe path"), "{run}");
    }
    assert!(
        item_error(&run, "link.dcm").contains("symbolic link"),
        "{run}"
    );
    assert!(!server.data_dir.join("../evil.dcm").exists());
    assert_unharmed(&mut server, &series_uid, "zip slip");

    // Nothing of an attack was logged at info level by name.
    let log = server.log();
    for name in [
        "Overflow.nii",
        "Offset.nii.gz",
        "bomb.dcm",
        "nested-inner",
        "evil.dcm",
        "overflow.zip",
    ] {
        assert!(!log.contains(name), "{name} in the info log:\n{log}");
    }
}
