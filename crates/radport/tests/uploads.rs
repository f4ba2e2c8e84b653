//! End to end: resumable uploads (tus 1.0) and the files API, with the CLI and raw HTTP.

use std::io::Write;
use std::net::TcpStream;

use crate::common::*;
use base64::Engine;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn create(server: &Server, length: usize, filename: &str) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .post(server.url("/api/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .header(
            "Upload-Metadata",
            format!(
                "filename {}",
                base64::engine::general_purpose::STANDARD.encode(filename)
            ),
        )
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location)
}

pub(crate) fn offset(server: &Server, location: &str) -> (u16, Option<u64>) {
    let r = reqwest::blocking::Client::new()
        .head(server.url(location))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .unwrap();
    let o = r
        .headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (r.status().as_u16(), o)
}

pub(crate) fn patch(server: &Server, location: &str, at: u64, body: &[u8]) -> u16 {
    reqwest::blocking::Client::new()
        .patch(server.url(location))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", at.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(body.to_vec())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn cli_upload_list_download_delete() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = random_bytes(20 * 1024 * 1024 + 123, 7);
    let file = tmp.path().join("scan.zip");
    std::fs::write(&file, &data).unwrap();

    let out = server.cli(&["upload", file.to_str().unwrap(), "--as", "study/scan.zip"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let list = server.get_json("/api/files");
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "study/scan.zip")
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(item["size"], data.len() as u64);
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "chunks are not listed"
    );
    assert_eq!(server.get_bytes("/api/files/study/scan.zip"), data);

    let out = server.cli(&["files", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("study/scan.zip"));
    let got = tmp.path().join("back.zip");
    let out = server.cli(&[
        "files",
        "get",
        "study/scan.zip",
        "-o",
        got.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(std::fs::read(&got).unwrap(), data);
    let out = server.cli(&["files", "rm", "study/scan.zip"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        server.get_json("/api/files")["items"],
        serde_json::json!([])
    );
    let (status, _) = server.get_status("/api/files/study/scan.zip");
    assert_eq!(status, 404);
}

#[test]
fn an_upload_cut_off_resumes_where_it_stopped() {
    let server = Server::start(&[]);
    let data = random_bytes(3 * 1024 * 1024, 11);
    let (status, location) = create(&server, data.len(), "resume.bin");
    assert_eq!(status, 201);
    assert!(location.starts_with("/api/uploads/"));

    // A PATCH whose connection drops half-way.
    let half = data.len() / 2;
    {
        let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
        write!(
            s,
            "PATCH {location} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
             Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .unwrap();
        s.write_all(&data[..half]).unwrap();
        s.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let kept = server.wait_for(10, "the partial chunk to be kept", || {
        match offset(&server, &location) {
            (200, Some(o)) if o > 0 => Some(o),
            _ => None,
        }
    });
    assert!(kept as usize <= half, "at most what was sent: {kept}");
    // A PATCH at the wrong offset is refused; at the right one it completes the file.
    assert_eq!(patch(&server, &location, 0, &data[..10]), 409);
    assert_eq!(patch(&server, &location, kept, &data[kept as usize..]), 204);
    assert_eq!(offset(&server, &location), (200, Some(data.len() as u64)));
    assert_eq!(server.get_bytes("/api/files/resume.bin"), data);
}

/// The client sends the last chunk in full and goes away without waiting for the answer
/// (assembling a large file takes a while): the file is assembled all the same.
#[test]
fn the_last_chunk_completes_the_file_even_if_the_client_leaves() {
    let server = Server::start(&[]);
    let data = random_bytes(24 * 1024 * 1024, 12);
    let (status, location) = create(&server, data.len(), "leaver.bin");
    assert_eq!(status, 201);
    {
        let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
        write!(
            s,
            "PATCH {location} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
             Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .unwrap();
        s.write_all(&data).unwrap();
        s.flush().unwrap();
        // Closed here, before any answer.
    }
    server.wait_for(30, "the file to be assembled", || {
        let listed = server.get_json("/api/files");
        listed["items"]
            .as_array()?
            .iter()
            .any(|f| f["path"] == "leaver.bin")
            .then_some(())
    });
    assert_eq!(offset(&server, &location), (200, Some(data.len() as u64)));
    assert_eq!(server.get_bytes("/api/files/leaver.bin"), data);
}

#[test]
fn uploads_refuse_what_they_must() {
    let server = Server::start(&["--max-upload-size", "1000"]);
    let c = reqwest::blocking::Client::new();
    let no_tus = c
        .post(server.url("/api/uploads"))
        .header("Upload-Length", "10")
        .send()
        .unwrap();
    assert_eq!(no_tus.status(), 412);
    let no_length = c
        .post(server.url("/api/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .unwrap();
    assert_eq!(no_length.status(), 400);
    assert_eq!(create(&server, 2000, "big.bin").0, 413);
    for escaping in ["../../etc/passwd", "a/../../b", "/", "x\\y"] {
        assert_eq!(create(&server, 10, escaping).0, 400, "{escaping}");
    }
    let (status, _) = server.get_status("/api/files/..%2F..%2Fcatalog.db");
    assert!(status == 400 || status == 404, "{status}");
    // Too many bytes for the announced length.
    let (_, location) = create(&server, 10, "ten.bin");
    assert_eq!(patch(&server, &location, 0, &[1u8; 11]), 400);
    // Termination.
    let t = c
        .delete(server.url(&location))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .unwrap();
    assert_eq!(t.status(), 204);
    assert_eq!(offset(&server, &location).0, 404);
    let options = c
        .request(reqwest::Method::OPTIONS, server.url("/api/uploads"))
        .send()
        .unwrap();
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    assert_eq!(options.headers()["tus-max-size"], "1000");
    assert!(options.headers()["tus-extension"]
        .to_str()
        .unwrap()
        .contains("termination"));
}

#[test]
fn incomplete_uploads_expire() {
    // 0.0005 h = 1.8 s.
    let server = Server::start(&["--upload-expiry-hours", "0.0005"]);
    let (_, location) = create(&server, 100, "late.bin");
    assert_eq!(patch(&server, &location, 0, &[5u8; 40]), 204);
    let id = location.rsplit('/').next().unwrap().to_string();
    let parts = server.data_dir.join("archive/upload-parts").join(&id);
    assert!(parts.exists());
    server.wait_for(15, "the expired upload to be swept", || {
        (offset(&server, &location).0 == 404 && !parts.exists()).then_some(())
    });
    // The sweeper logs once the sweep returned, just after the deletions seen above.
    server.wait_for_log(15, "expired incomplete uploads deleted", 1);
}
