//! End to end: hostile peers on the DIMSE port of a real `radport serve`.
//!
//! Every PDU length is checked from its header before its body is waited for: an
//! A-ASSOCIATE-RQ may declare at most 128 KiB, a P-DATA-TF the maximum PDU length we announced,
//! anything else a few bytes. Connections that do not complete their association request are
//! closed after the ARTIM timeout, associations that stall (also half-way through a PDU) after
//! the idle timeout, idle connections cannot hold association slots, and one address gets at
//! most `--max-associations-per-peer` associations.
//!
//! After each attack the server must still answer `/api/health`, store a series sent by the
//! real `dcmsend`, and have stayed small (peak resident set, `VmHWM`), while running under a
//! 1 GiB address-space limit; and the hostile client must have had a clear answer: an
//! A-ABORT, an A-ASSOCIATE-RJ, or a closed connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, PDataValue, PDataValueType,
    PresentationContextProposed, UserVariableItem,
};
use dicom_ul::Pdu;
use radport_testkit::{write_series, SeriesSpec};

/// Address space the server runs in.
const ADDRESS_SPACE: u64 = 1 << 30;

/// Peak resident set the server may reach, in kB: it needs a few tens of MB; one PDU buffered
/// at its declared 4 GiB would have gone far past this (the issue measured +514 MB).
const MAX_PEAK_RSS_KB: u64 = 150 * 1024;

/// Hostile input is answered within this.
const QUICK: Duration = Duration::from_secs(5);

/// The announced maximum PDU length (the default).
const MAX_PDU: u32 = 262_144;

// ---------------------------------------------------------------------------------------------
// Raw PDUs

fn header(pdu_type: u8, length: u32) -> Vec<u8> {
    let mut h = vec![pdu_type, 0];
    h.extend_from_slice(&length.to_be_bytes());
    h
}

/// A well-formed A-ASSOCIATE-RQ proposing CT Image Storage in Explicit VR Little Endian.
fn associate_rq(calling: &str, called: &str) -> Vec<u8> {
    let pdu = Pdu::AssociationRQ(dicom_ul::pdu::AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: called.into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: CT_IMAGE_STORAGE.into(),
            transfer_syntaxes: vec![EXPLICIT_VR_LE.into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16_384)],
    });
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, &pdu).expect("encode RQ");
    out
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", server.dicom_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// What the server answered on a raw connection.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A-ABORT with (source, reason).
    Abort(u8, u8),
    /// A-ASSOCIATE-RJ with (result, source, reason).
    Reject(u8, u8, u8),
    /// A-ASSOCIATE-AC.
    Accept,
    /// Another PDU type.
    Other(u8),
    /// EOF or reset before any PDU.
    Closed,
    /// Nothing within the read timeout.
    Silent,
}

fn read_answer(s: &mut TcpStream) -> Answer {
    let mut h = [0u8; 6];
    if let Err(e) = s.read_exact(&mut h) {
        return match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Answer::Silent,
            _ => Answer::Closed,
        };
    }
    let length = u32::from_be_bytes([h[2], h[3], h[4], h[5]]) as usize;
    let mut body = vec![0u8; length.min(64 * 1024)];
    if s.read_exact(&mut body).is_err() {
        return Answer::Closed;
    }
    match (h[0], body.as_slice()) {
        (7, [_, _, source, reason, ..]) => Answer::Abort(*source, *reason),
        (3, [_, result, source, reason, ..]) => Answer::Reject(*result, *source, *reason),
        (2, _) => Answer::Accept,
        (t, _) => Answer::Other(t),
    }
}

/// After the answer the server closes the connection.
fn assert_closed_after(s: &mut TcpStream, server: &Server) {
    let mut rest = [0u8; 64];
    match s.read(&mut rest) {
        Ok(0) => {}
        Err(e)
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!(
            "connection still open after the answer: {other:?}\n{}",
            server.log()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The checks after every attack

fn dcmsend_with(server: &Server, extra: &[&str], dir: &std::path::Path) -> Output {
    Command::new(dcmtk("dcmsend"))
        .arg("127.0.0.1")
        .arg(server.dicom_port.to_string())
        .args(["--aetitle", "kp-after", "--call", "kp-admin"])
        .args(extra)
        .args(["--scan-directories", "--scan-pattern", "*.dcm", "--recurse"])
        .arg(dir)
        .output()
        .expect("dcmsend runs")
}

/// The server is healthy, stores what a real `dcmsend` sends (two instances, counted into
/// `total`), and stayed small.
fn assert_still_serving(server: &mut Server, seed: &str, total: &mut i64) {
    *total += 2;
    assert!(
        server.is_running(),
        "the server process is gone\n{}",
        server.log()
    );
    assert_eq!(
        server.get_json("/api/health")["status"],
        "ok",
        "{}",
        server.log()
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = SeriesSpec {
        count: 2,
        uid_seed: seed.into(),
        ..Default::default()
    };
    write_series(dir.path(), &spec).unwrap();
    let out = server.dcmsend("kp-after", "kp-admin", dir.path());
    assert!(
        out.status.success(),
        "{}\n{}",
        output_text(&out),
        server.log()
    );
    assert_eq!(server.instance_total("admin"), *total);
    assert_memory_small(server);
}

fn assert_memory_small(server: &Server) {
    let peak = server.peak_rss_kb();
    assert!(
        peak > 0 && peak < MAX_PEAK_RSS_KB,
        "the server's peak resident set reached {peak} kB\n{}",
        server.log()
    );
}

/// A client association (dicom-ul) whose socket we can then write raw bytes to.
fn associate(server: &Server) -> dicom_ul::ClientAssociation<TcpStream> {
    dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("kp-hostile")
        .called_ae_title("kp-admin")
        .with_presentation_context(CT_IMAGE_STORAGE, vec![EXPLICIT_VR_LE])
        .read_timeout(Duration::from_secs(20))
        .establish(format!("127.0.0.1:{}", server.dicom_port))
        .expect("association")
}

fn expect_abort(
    association: &mut dicom_ul::ClientAssociation<TcpStream>,
    reason: AbortRQServiceProviderReason,
    server: &Server,
) {
    let started = Instant::now();
    match association.receive() {
        Ok(Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(r),
        }) => assert_eq!(r, reason, "{}", server.log()),
        other => panic!("expected an A-ABORT, got {other:?}\n{}", server.log()),
    }
    assert!(started.elapsed() < QUICK, "{:?}", started.elapsed());
}

fn status_of(pdu: Pdu) -> u16 {
    let Pdu::PData { data } = pdu else {
        panic!("expected P-DATA, got {pdu:?}");
    };
    let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(
        std::io::Cursor::new(&data[0].data),
        &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .expect("response command");
    obj.element(dicom_dictionary_std::tags::STATUS)
        .expect("status")
        .to_int::<u16>()
        .expect("status value")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn oversized_and_malformed_pdus_are_refused_from_their_headers() {
    let mut server = Server::start_limited(&[], ADDRESS_SPACE);
    let mut total = 0;

    // An A-ASSOCIATE-RQ declaring 4 GiB: header and a little body, socket kept open.
    let mut s = connect(&server);
    s.write_all(&header(1, u32::MAX)).unwrap();
    s.write_all(&associate_rq("kp-hostile", "kp-admin")[6..])
        .unwrap();
    s.write_all(&[0x55; 4000]).unwrap();
    let started = Instant::now();
    assert_eq!(read_answer(&mut s), Answer::Abort(2, 6), "{}", server.log());
    assert!(started.elapsed() < QUICK);
    assert_closed_after(&mut s, &server);
    // Just over the 128 KiB cap is refused the same way.
    let mut s = connect(&server);
    s.write_all(&header(1, 128 * 1024 + 1)).unwrap();
    assert_eq!(read_answer(&mut s), Answer::Abort(2, 6));
    assert_still_serving(&mut server, "901", &mut total);

    // Wrong first PDUs: an unknown type, and what only an acceptor or a released peer sends —
    // A-ASSOCIATE-AC / -RJ, A-RELEASE-RP — and an A-RELEASE-RQ declaring 4 GiB.
    for (first, expected) in [
        (header(0x09, 10), Answer::Abort(2, 1)),
        (header(0x02, 200), Answer::Abort(2, 2)),
        (header(0x03, 4), Answer::Abort(2, 2)),
        (header(0x06, 4), Answer::Abort(2, 2)),
        (header(0x05, u32::MAX), Answer::Abort(2, 2)),
        (header(0x04, u32::MAX), Answer::Abort(2, 2)),
    ] {
        let mut s = connect(&server);
        s.write_all(&[&first[..], &[0; 4]].concat()).unwrap();
        assert_eq!(read_answer(&mut s), expected, "first PDU {first:02X?}");
        assert_closed_after(&mut s, &server);
    }

    // An A-ASSOCIATE-RQ whose items run past its end: the application context item declares
    // 0xFFFF bytes, 10 follow. Answered with an A-ABORT (invalid PDU parameter), then closed.
    let rq = associate_rq("kp-hostile", "kp-admin");
    let mut bad = header(1, 68 + 4 + 10);
    bad.extend_from_slice(&rq[6..6 + 68]);
    bad.extend_from_slice(&[0x10, 0, 0xFF, 0xFF]);
    bad.extend_from_slice(b"1.2.840.10");
    let mut s = connect(&server);
    s.write_all(&bad).unwrap();
    assert_eq!(read_answer(&mut s), Answer::Abort(2, 6), "{}", server.log());
    assert_closed_after(&mut s, &server);
    // Garbage of the declared length with no items at all.
    let mut s = connect(&server);
    s.write_all(&header(1, 200)).unwrap();
    s.write_all(&[0xEE; 200]).unwrap();
    assert_eq!(read_answer(&mut s), Answer::Abort(2, 6), "{}", server.log());
    assert_closed_after(&mut s, &server);
    assert_still_serving(&mut server, "902", &mut total);

    // Inside an association: a P-DATA-TF declaring one byte more than announced …
    let mut association = associate(&server);
    association
        .inner_stream()
        .write_all(&header(4, MAX_PDU + 1))
        .unwrap();
    association.inner_stream().write_all(&[0; 1000]).unwrap();
    expect_abort(
        &mut association,
        AbortRQServiceProviderReason::InvalidPduParameter,
        &server,
    );
    // … or 1 GiB, an A-RELEASE-RQ declaring 4 GiB, an unknown PDU type, an A-ASSOCIATE-AC.
    for (raw, reason) in [
        (
            header(4, 1 << 30),
            AbortRQServiceProviderReason::InvalidPduParameter,
        ),
        (
            header(5, u32::MAX),
            AbortRQServiceProviderReason::InvalidPduParameter,
        ),
        (
            header(0x0A, 4),
            AbortRQServiceProviderReason::UnrecognizedPdu,
        ),
        (
            header(0x02, 4),
            AbortRQServiceProviderReason::InvalidPduParameter,
        ),
    ] {
        let mut association = associate(&server);
        association
            .inner_stream()
            .write_all(&[&raw[..], &[0; 4]].concat())
            .unwrap();
        expect_abort(&mut association, reason, &server);
    }

    // A P-DATA-TF of exactly the announced length is fine: a C-STORE whose first data PDU
    // is 262 144 bytes long (PDV item header 6, value 262 138), the rest in small PDUs.
    let big = SeriesSpec {
        count: 1,
        rows: 512,
        columns: 512,
        uid_seed: "903".into(),
        ..Default::default()
    };
    let mut dataset = Vec::new();
    radport_testkit::ct_slice(&big, 0)
        .write_dataset_with_ts(
            &mut dataset,
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
    let mut association = associate(&server);
    let context = association.presentation_contexts()[0].id;
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context,
                value_type: PDataValueType::Command,
                is_last: true,
                data: c_store_rq_with(1, CT_IMAGE_STORAGE, &radport_testkit::sop_uid(&big, 0), &[]),
            }],
        })
        .unwrap();
    let first = (MAX_PDU - 6) as usize;
    let mut pdu = header(4, MAX_PDU);
    pdu.extend_from_slice(&(first as u32 + 2).to_be_bytes());
    pdu.extend_from_slice(&[context, 0x00]);
    pdu.extend_from_slice(&dataset[..first]);
    association.inner_stream().write_all(&pdu).unwrap();
    let rest: Vec<&[u8]> = dataset[first..].chunks(16_000).collect();
    for (i, chunk) in rest.iter().enumerate() {
        association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context,
                    value_type: PDataValueType::Data,
                    is_last: i + 1 == rest.len(),
                    data: chunk.to_vec(),
                }],
            })
            .unwrap();
    }
    assert_eq!(status_of(association.receive().unwrap()), 0x0000);
    let _ = association.release();
    total += 1;

    // Real DCMTK with large slices, so that it fills PDUs to what we announced, proposing
    // 16 KiB and 128 KiB as its own maximum.
    for (i, max) in ["16384", "131072"].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SeriesSpec {
            count: 3,
            rows: 512,
            columns: 512,
            uid_seed: format!("91{i}"),
            ..Default::default()
        };
        write_series(dir.path(), &spec).unwrap();
        let out = dcmsend_with(&server, &["--max-pdu", max], dir.path());
        assert!(
            out.status.success(),
            "{}\n{}",
            output_text(&out),
            server.log()
        );
        total += 3;
    }
    assert_still_serving(&mut server, "904", &mut total);
    assert!(
        server.log().contains("PDU over its limit"),
        "{}",
        server.log()
    );
}

#[test]
fn stalled_connections_and_associations_are_cut_off() {
    let mut server = Server::start_limited(
        &[
            "--artim-timeout",
            "1",
            "--dicom-idle-timeout",
            "1.5",
            "--max-associations",
            "3",
            "--max-associations-per-peer",
            "2",
        ],
        ADDRESS_SPACE,
    );
    let mut total = 0;

    // Silent, half a header, a header and part of the request: all closed after ARTIM.
    let rq = associate_rq("kp-slow", "kp-admin");
    let mut streams = Vec::new();
    for sent in [&[][..], &rq[..3], &rq[..20]] {
        let mut s = connect(&server);
        s.write_all(sent).unwrap();
        streams.push((Instant::now(), s));
    }
    for (opened, mut s) in streams {
        assert_eq!(read_answer(&mut s), Answer::Closed, "{}", server.log());
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(4),
            "closed after {after:?}"
        );
    }
    assert!(server.log().contains("ARTIM"), "{}", server.log());

    // An association that stops half-way through a PDU is aborted after the idle timeout and
    // gives its slot back.
    let mut held = associate(&server);
    held.inner_stream().write_all(&header(4, 1000)).unwrap();
    held.inner_stream().write_all(&[0; 100]).unwrap();
    let started = Instant::now();
    match held.receive() {
        Ok(Pdu::AbortRQ { .. }) | Err(_) => {}
        other => panic!("expected an abort, got {other:?}"),
    }
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1400) && after < Duration::from_secs(5),
        "aborted after {after:?}"
    );
    assert!(server.log().contains("idle timeout"), "{}", server.log());
    drop(held);

    assert_still_serving(&mut server, "921", &mut total);

    // A server announcing a smaller maximum PDU, and a per-peer cap of 2 (idle timeout back to
    // its default, so that held associations stay).
    server.restart_with(&[
        "--max-pdu",
        "16384",
        "--max-associations",
        "3",
        "--max-associations-per-peer",
        "2",
    ]);
    // DCMTK keeps to the smaller maximum; one byte more is refused.
    let dir = tempfile::tempdir().unwrap();
    let spec = SeriesSpec {
        count: 2,
        rows: 256,
        columns: 256,
        uid_seed: "922".into(),
        ..Default::default()
    };
    write_series(dir.path(), &spec).unwrap();
    let out = dcmsend_with(&server, &[], dir.path());
    assert!(
        out.status.success(),
        "{}\n{}",
        output_text(&out),
        server.log()
    );
    total += 2;
    let mut association = associate(&server);
    association
        .inner_stream()
        .write_all(&header(4, 16_385))
        .unwrap();
    expect_abort(
        &mut association,
        AbortRQServiceProviderReason::InvalidPduParameter,
        &server,
    );
    // The aborted association's slot comes back once its connection is closed (the receiver
    // logs the association's end after freeing it).
    let ended = server.log_count("association ended");
    drop(association);
    server.wait_for_log(30, "association ended", ended + 1);

    // Two associations from 127.0.0.1 are held; the third is refused transiently (local
    // limit exceeded), though the overall limit (3) is not reached.
    let first = RawClient::connect(server.dicom_port, "kp-hold1", "kp-admin").unwrap();
    let second = RawClient::connect(server.dicom_port, "kp-hold2", "kp-admin").unwrap();
    let mut s = connect(&server);
    s.write_all(&rq).unwrap();
    assert_eq!(
        read_answer(&mut s),
        Answer::Reject(2, 3, 2),
        "{}",
        server.log()
    );
    assert_closed_after(&mut s, &server);
    let out = Command::new(dcmtk("echoscu"))
        .args(["-aet", "kp-third", "-aec", "kp-admin", "127.0.0.1"])
        .arg(server.dicom_port.to_string())
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("Local Limit Exceeded"), "{text}");
    assert!(
        server
            .log()
            .contains("too many associations from this address"),
        "{}",
        server.log()
    );
    // A released association gives its slot back.
    let ended = server.log_count("association ended");
    first.release();
    server.wait_for_log(30, "association ended", ended + 1);
    assert_still_serving(&mut server, "923", &mut total);
    second.release();
}

#[test]
fn idle_connections_cannot_lock_the_port() {
    // A long ARTIM: what lets dcmsend in is the pending-connection limit, not the timeout.
    let mut server = Server::start_limited(&["--artim-timeout", "60"], ADDRESS_SPACE);
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(&server)).collect();
    // dcmsend comes once the idle connections fill the pending limit (the server starts
    // closing the oldest, and says so).
    server.wait_for(30, "the pending limit to be reached", || {
        server
            .log()
            .contains("too many pending connections")
            .then_some(())
    });
    let started = Instant::now();
    assert_still_serving(&mut server, "931", &mut 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The server holds at most its pending limit (128) of them; the rest were closed.
    let pid = server.child.as_ref().unwrap().id();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds < 128 + 40, "{fds} open descriptors");
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        if read_answer(&mut s) == Answer::Closed {
            closed += 1;
        }
    }
    assert!(
        closed >= 200 - 128,
        "only {closed} idle connections were closed"
    );
    assert!(
        server.log().contains("too many pending connections"),
        "{}",
        server.log()
    );
    assert_memory_small(&server);
}
