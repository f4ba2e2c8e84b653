//! DICOM TLS on its own port (`--dicom-tls-port`), driven by DCMTK's `storescu +tls` and
//! `echoscu +tls`: instances stored over TLS, client certificates checked when a client CA is
//! configured, and peers without TLS or without a trusted certificate turned away.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use radport_testkit::{write_series, SeriesSpec};

/// A throw-away CA with a server and a client certificate (`scripts/test-certs.sh`).
fn certificates(dir: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-certs.sh");
    let made = Command::new("bash").arg(script).arg(dir).output().unwrap();
    assert!(made.status.success(), "{}", output_text(&made));
    dir.to_path_buf()
}

fn tls_server(certs: &Path, client_ca: Option<&Path>) -> (Server, u16) {
    let port = free_port();
    let (cert, key) = (certs.join("server.crt"), certs.join("server.key"));
    let port_text = port.to_string();
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--dicom-tls-port",
        port_text.as_str(),
    ];
    if let Some(ca) = client_ca {
        args.extend(["--dicom-tls-client-ca", ca.to_str().unwrap()]);
    }
    let server = Server::start(&args);
    server.wait_for(30, "the DICOM TLS port", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    (server, port)
}

/// A DCMTK tool against `port` with `tls` options.
fn dcmtk_tool(tool: &str, port: u16, tls: &[&str], files: &[PathBuf]) -> Output {
    Command::new(dcmtk(tool))
        .args(["-v", "-aet", "kp-tls", "-aec", "kp-admin"])
        .args(tls)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files)
        .output()
        .unwrap()
}

fn path(p: PathBuf) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn dicom_tls_stores_and_checks_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = certificates(&tmp.path().join("certs"));
    let stranger = certificates(&tmp.path().join("stranger"));
    let (server, port) = tls_server(&certs, Some(&certs.join("ca.crt")));
    let spec = SeriesSpec {
        count: 2,
        rows: 16,
        columns: 16,
        uid_seed: "981".into(),
        ..Default::default()
    };
    let files = write_series(&tmp.path().join("dicom"), &spec).unwrap();
    let (ca, key, cert) = (
        path(certs.join("ca.crt")),
        path(certs.join("client.key")),
        path(certs.join("client.crt")),
    );

    // A client certificate of the CA: stored over TLS, with the command the upload wizard
    // shows (a folder scanned for *.dcm).
    assert!(files
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "dcm")));
    let sent = dcmtk_tool(
        "storescu",
        port,
        &["+tls", &key, &cert, "+cf", &ca, "+sd", "+sp", "*.dcm", "+r"],
        &[tmp.path().join("dicom")],
    );
    assert!(sent.status.success(), "{}", output_text(&sent));
    assert_eq!(server.archived_instances().len(), 2);
    assert!(
        server.log().contains("association accepted"),
        "{}",
        server.log()
    );

    // Refused: a certificate of another CA, no certificate, and no TLS at all.
    let others = [
        (
            "another CA's client certificate",
            vec![
                "+tls".to_string(),
                path(stranger.join("client.key")),
                path(stranger.join("client.crt")),
                "+cf".into(),
                ca.clone(),
            ],
        ),
        (
            "no client certificate",
            vec!["+tla".into(), "+cf".into(), ca.clone()],
        ),
        ("plain TCP", vec![]),
    ];
    for (what, tls) in others {
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        let echo = dcmtk_tool("echoscu", port, &tls, &[]);
        assert!(!echo.status.success(), "{what}: {}", output_text(&echo));
    }
    // The client does not trust a server whose CA it does not know.
    let stranger_ca = path(stranger.join("ca.crt"));
    let echo = dcmtk_tool(
        "echoscu",
        port,
        &["+tls", &key, &cert, "+cf", &stranger_ca],
        &[],
    );
    assert!(!echo.status.success(), "{}", output_text(&echo));
    assert_eq!(server.archived_instances().len(), 2, "nothing else stored");

    // The plain port is unchanged.
    let plain = dcmtk_tool("echoscu", server.dicom_port, &[], &[]);
    assert!(plain.status.success(), "{}", output_text(&plain));
}

#[test]
fn dicom_tls_without_a_client_ca_takes_any_tls_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = certificates(&tmp.path().join("certs"));
    let (server, port) = tls_server(&certs, None);
    let spec = SeriesSpec {
        count: 3,
        rows: 16,
        columns: 16,
        uid_seed: "982".into(),
        ..Default::default()
    };
    let files = write_series(&tmp.path().join("dicom"), &spec).unwrap();
    let ca = path(certs.join("ca.crt"));
    let sent = dcmtk_tool("storescu", port, &["+tla", "+cf", &ca], &files);
    assert!(sent.status.success(), "{}", output_text(&sent));
    assert_eq!(server.archived_instances().len(), 3);
    let echo = dcmtk_tool("echoscu", port, &[], &[]);
    assert!(!echo.status.success(), "plain TCP on the TLS port");

    // An A-ASSOCIATE-RQ that announces 4 GiB, inside TLS: refused from its header, before
    // its body is read (the connection is closed while the peer still sends).
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-no_ign_eof",
            "-CAfile",
            &ca,
            "-connect",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut sent = 0usize;
        if stdin
            .write_all(&[0x01, 0x00, 0xff, 0xff, 0xff, 0xff])
            .is_ok()
        {
            let chunk = vec![0u8; 64 * 1024];
            while sent < 64 << 20 && stdin.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
        }
        sent
    });
    let closed = server.wait_for(20, "the oversized request to be refused", || {
        client.try_wait().unwrap()
    });
    let sent = writer.join().unwrap();
    assert!(
        sent < 64 << 20,
        "the server read all {sent} bytes (exit {closed:?})"
    );
    server.wait_for_log(10, "DICOM TLS association not established", 1);
    let again = dcmtk_tool("echoscu", port, &["+tla", "+cf", &ca], &[]);
    assert!(again.status.success(), "{}", output_text(&again));
}
