//! End to end: hostile bytes over DIMSE against a real `radport serve`.
//!
//! dicom-rs allocates (and zero-fills) every value at its declared length before reading it, and
//! recurses into nested sequences. A few hundred bytes declaring a 4 GB element, or sequences
//! nested thousands deep, must cost the server what was sent, not what was declared: the
//! instance is refused (0xC000), the command set rejected, and the server goes on serving.
//!
//! Memory is checked through the server process's peak resident set (`VmHWM` in
//! `/proc/<pid>/status`): a correctness check that no declared-length allocation happened, not a
//! speed target.

use std::time::{Duration, Instant};

use crate::common::*;
use dicom_core::header::Header;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use radport_testkit::{sop_uid, SeriesSpec};

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";

/// Peak resident memory the server may reach in these tests, in kB. Far above what it needs
/// (tens of MB), far below one 4 GB allocation.
const MAX_PEAK_RSS_KB: u64 = 200 * 1024;

/// A hostile instance is answered well within this (a declared-length allocation of 4 GB takes
/// tens of seconds to zero-fill, when it does not kill the process).
const QUICK: Duration = Duration::from_secs(10);

/// A length no sender has the bytes for.
const HUGE: u32 = 0xFFFF_FFF0;

fn spec(seed: &str) -> SeriesSpec {
    SeriesSpec {
        count: 1,
        uid_seed: seed.into(),
        ..Default::default()
    }
}

fn encode(obj: &InMemDicomObject, implicit: bool) -> Vec<u8> {
    let ts = if implicit {
        IMPLICIT_VR_LITTLE_ENDIAN.erased()
    } else {
        EXPLICIT_VR_LITTLE_ENDIAN.erased()
    };
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, &ts).unwrap();
    out
}

/// A good CT slice as data-set bytes.
fn good_dataset(seed: &str, implicit: bool) -> Vec<u8> {
    encode(&radport_testkit::ct_slice(&spec(seed), 0), implicit)
}

/// The elements of a CT slice that come before `tag`, encoded: a plausible start of a data set.
fn elements_before(seed: &str, tag: Tag, implicit: bool) -> Vec<u8> {
    let slice = radport_testkit::ct_slice(&spec(seed), 0);
    let mut part = InMemDicomObject::new_empty();
    for element in slice.iter().filter(|e| e.tag() < tag) {
        part.put(element.clone());
    }
    encode(&part, implicit)
}

/// Explicit VR little endian header with a 4-byte length.
fn long_header(group: u16, element: u16, vr: &[u8; 2], len: u32) -> Vec<u8> {
    let mut out = group.to_le_bytes().to_vec();
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// Implicit VR little endian header.
fn implicit_header(group: u16, element: u16, len: u32) -> Vec<u8> {
    let mut out = group.to_le_bytes().to_vec();
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// Peak resident set of the server process, in kB.
fn peak_rss_kb(server: &Server) -> u64 {
    let pid = server.child.as_ref().expect("server running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn assert_memory_stayed_small(server: &Server) {
    let peak = peak_rss_kb(server);
    assert!(
        peak < MAX_PEAK_RSS_KB,
        "the server's peak resident set reached {peak} kB\n{}",
        server.log()
    );
}

/// One C-STORE that must fail with 0xC000 without delay.
fn refused_quickly(server: &Server, client: &mut RawClient, sop: &str, dataset: &[u8]) {
    let started = Instant::now();
    let status = client.store(sop, dataset);
    let took = started.elapsed();
    assert_eq!(status, 0xC000, "cannot understand: 0x{status:04X}");
    assert!(took < QUICK, "answered after {took:?}\n{}", server.log());
}

#[test]
fn lengths_beyond_the_data_set_are_refused_without_allocating_them() {
    let server = Server::start(&[]);

    // Explicit VR: a private OB element before Pixel Data declares ~4 GB, 16 bytes follow.
    let mut client = RawClient::connect(server.dicom_port, "kp-hostile", "kp-admin").unwrap();
    let mut dataset = elements_before("81", Tag(0x0029, 0x0000), false);
    dataset.extend_from_slice(&[0x29, 0x00, 0x10, 0x00, b'L', b'O', 12, 0]);
    dataset.extend_from_slice(b"RADPORT TEST");
    dataset.extend_from_slice(&long_header(0x0029, 0x1010, b"OB", HUGE));
    dataset.extend_from_slice(&[0xAB; 16]);
    refused_quickly(&server, &mut client, &sop_uid(&spec("81"), 0), &dataset);
    // Same association, a good instance.
    let good = spec("82");
    assert_eq!(
        client.store(&sop_uid(&good, 0), &good_dataset("82", false)),
        0x0000
    );
    client.release();

    // Implicit VR: Patient Name itself declares ~4 GB (4-byte lengths for every element).
    let mut client = RawClient::connect_with(
        server.dicom_port,
        "kp-hostile",
        "kp-admin",
        CT_IMAGE_STORAGE,
        IMPLICIT_VR_LE,
    )
    .unwrap();
    let mut dataset = elements_before("83", tags::PATIENT_NAME, true);
    dataset.extend_from_slice(&implicit_header(0x0010, 0x0010, HUGE));
    dataset.extend_from_slice(b"Doe^John");
    refused_quickly(&server, &mut client, &sop_uid(&spec("83"), 0), &dataset);
    let good = spec("84");
    assert_eq!(
        client.store(&sop_uid(&good, 0), &good_dataset("84", true)),
        0x0000
    );
    client.release();

    assert_eq!(server.instance_total("admin"), 2);
    assert_eq!(
        server.archived_instances().len(),
        2,
        "refused instances leave no file"
    );
    assert_memory_stayed_small(&server);
}

#[test]
fn sequences_nested_5000_deep_are_refused() {
    let server = Server::start(&[]);
    let mut client = RawClient::connect(server.dicom_port, "kp-hostile", "kp-admin").unwrap();
    let mut dataset = elements_before("85", Tag(0x0040, 0xA730), false);
    for _ in 0..5000 {
        // (0040,A730) Content Sequence, undefined length, holding an item of undefined length.
        dataset.extend_from_slice(&long_header(0x0040, 0xA730, b"SQ", u32::MAX));
        dataset.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..5000 {
        dataset.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        dataset.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    refused_quickly(&server, &mut client, &sop_uid(&spec("85"), 0), &dataset);
    // The server did not lose its stack: same association, a good instance.
    let good = spec("86");
    assert_eq!(
        client.store(&sop_uid(&good, 0), &good_dataset("86", false)),
        0x0000
    );
    client.release();
    assert_eq!(server.instance_total("admin"), 1);
    assert_eq!(server.archived_instances().len(), 1);
    assert_memory_stayed_small(&server);
}

#[test]
fn a_command_set_with_a_huge_declared_length_is_refused() {
    let server = Server::start(&[]);
    let mut association = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("kp-hostile")
        .called_ae_title("kp-admin")
        .with_presentation_context(CT_IMAGE_STORAGE, vec![EXPLICIT_VR_LE])
        .read_timeout(Duration::from_secs(60))
        .establish(format!("127.0.0.1:{}", server.dicom_port))
        .expect("association");
    let context_id = association.presentation_contexts()[0].id;
    // (0000,1030) Move Originator Application Entity Title, declaring ~4 GB, 8 bytes follow.
    let mut extra = implicit_header(0x0000, 0x1030, HUGE);
    extra.extend_from_slice(b"STORESCU");
    let command = c_store_rq_with(1, CT_IMAGE_STORAGE, &sop_uid(&spec("87"), 0), &extra);
    let started = Instant::now();
    association
        .send(&dicom_ul::Pdu::PData {
            data: vec![dicom_ul::pdu::PDataValue {
                presentation_context_id: context_id,
                value_type: dicom_ul::pdu::PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .expect("send command");
    // The server aborts the association (an A-ABORT, or the connection just closes).
    match association.receive() {
        Ok(dicom_ul::Pdu::AbortRQ { .. }) | Err(_) => {}
        Ok(other) => panic!("expected the association to be aborted, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took < QUICK, "aborted after {took:?}\n{}", server.log());
    drop(association);
    assert!(
        server.log().contains("aborting association"),
        "{}",
        server.log()
    );

    // New associations are accepted and served.
    let mut client = RawClient::connect(server.dicom_port, "kp-hostile", "kp-admin").unwrap();
    let good = spec("88");
    assert_eq!(
        client.store(&sop_uid(&good, 0), &good_dataset("88", false)),
        0x0000
    );
    client.release();
    assert_eq!(server.instance_total("admin"), 1);
    assert_memory_stayed_small(&server);
}
