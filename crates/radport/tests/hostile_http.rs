//! End to end: nothing sent over HTTP takes radport down or grows it without bound. Each test
//! runs `radport serve` under `prlimit --as` (1 GiB), asserts the server still answers and
//! that its peak resident set stayed under a stated bound.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine;
use radport_testkit::{series_uid, write_series, SeriesSpec};

const GIB: u64 = 1 << 30;

fn spec(seed: &str, count: usize, side: u16) -> SeriesSpec {
    SeriesSpec {
        count,
        rows: side,
        columns: side,
        uid_seed: seed.into(),
        ..Default::default()
    }
}

/// Raises this test process's soft open-files limit to its hard limit (thousands of sockets).
fn raise_own_open_files() {
    let hard = std::fs::read_to_string(format!("/proc/{}/limits", std::process::id()))
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        })
        .unwrap_or_else(|| "4096".into());
    let out = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .output()
        .expect("prlimit runs");
    assert!(out.status.success(), "{}", output_text(&out));
}

fn healthy(server: &mut Server) {
    assert!(server.is_running(), "the server died:\n{}", server.log());
    let r = reqwest::blocking::Client::new()
        .get(server.url("/api/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .expect("health answers");
    assert!(r.status().is_success(), "health: {}", r.status());
}

fn rss_below(server: &Server, mib: u64) {
    if let Some(child) = server.child.as_ref() {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("VmPeak")
                || line.starts_with("VmHWM")
                || line.starts_with("Threads")
            {
                eprintln!("server {line}");
            }
        }
    }
    let kb = server.peak_rss_kb();
    assert!(kb > 0, "peak RSS readable");
    assert!(
        kb < mib * 1024,
        "peak RSS {} MiB is over {mib} MiB",
        kb / 1024
    );
}

fn send_series(server: &Server, seed: &str, count: usize, side: u16) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(seed, count, side);
    write_series(tmp.path(), &s).unwrap();
    let started = Instant::now();
    let out = server.dcmsend("kp-hostile", "kp-admin", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "dcmsend took {:?}",
        started.elapsed()
    );
    series_uid(&s)
}

fn metadata(name: &str) -> String {
    format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    )
}

/// `POST /api/uploads`: (status, location, stored path, body).
fn create(server: &Server, length: u64, name: &str) -> (u16, String, String, String) {
    let r = reqwest::blocking::Client::new()
        .post(server.url("/api/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", metadata(name))
        .send()
        .unwrap();
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (location, path) = (header("location"), header("radport-file-path"));
    (
        r.status().as_u16(),
        location,
        path,
        r.text().unwrap_or_default(),
    )
}

fn patch(server: &Server, location: &str, at: u64, body: Vec<u8>) -> u16 {
    reqwest::blocking::Client::new()
        .patch(server.url(location))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", at.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .timeout(Duration::from_secs(60))
        .body(body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn offset(server: &Server, location: &str) -> (u16, Option<u64>) {
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

fn bytes_of(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Reads a raw HTTP answer's status line, or `None` if the connection closed first; panics
/// if nothing happens `within`.
fn status_line(stream: &mut TcpStream, within: Duration) -> Option<String> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => None,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("no answer and no close within {within:?}")
        }
        Err(_) => None,
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .map(str::to_string),
    }
}

#[test]
fn slow_http_connections_leave_health_and_dimse_working() {
    raise_own_open_files();
    let mut server = Server::start_limited(&["--http-header-timeout", "6"], GIB);
    // 2 000 connections that send half a request line and stall.
    let mut slow = Vec::new();
    for _ in 0..2000 {
        let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaa")
            .unwrap();
        slow.push(s);
    }
    let opened = Instant::now();
    // A fresh client is answered at once; DIMSE stores meanwhile.
    let started = Instant::now();
    healthy(&mut server);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    send_series(&server, "801", 5, 64);
    assert_eq!(server.instance_total("admin"), 5);
    // The header timeout closes every stalled connection.
    let waited = opened.elapsed();
    if waited < Duration::from_secs(7) {
        std::thread::sleep(Duration::from_secs(7) - waited);
    }
    let mut answered = 0;
    for s in &mut slow {
        if let Some(line) = status_line(s, Duration::from_secs(5)) {
            // hyper may answer 408 before closing; never a page.
            assert!(line.contains("408"), "{line}");
            answered += 1;
        }
    }
    eprintln!("{answered} of 2000 stalled connections got a 408 before closing");
    drop(slow);
    healthy(&mut server);
    rss_below(&server, 250);
}

#[test]
fn stalled_and_oversized_bodies_are_cut() {
    let mut server = Server::start_limited(&["--http-body-timeout", "1"], GIB);
    // A JSON body that stops arriving.
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    s.write_all(
        b"POST /api/projects HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"name\":",
    )
    .unwrap();
    let started = Instant::now();
    let line = status_line(&mut s, Duration::from_secs(10));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut after {took:?}"
    );
    if let Some(line) = line {
        assert!(line.contains(" 400") || line.contains(" 408"), "{line}");
    }
    // A tus PATCH that stops arriving keeps what came and frees the connection.
    let (status, location, _, _) = create(&server, 1000, "stalled.bin");
    assert_eq!(status, 201);
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    write!(
        s,
        "PATCH {location} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: 1000\r\n\r\n"
    )
    .unwrap();
    s.write_all(&[7u8; 300]).unwrap();
    // The connection stays open (no close from the client): only the server's body timeout
    // can end this request.
    server.wait_for(10, "the stalled chunk to be kept", || {
        (offset(&server, &location) == (200, Some(300))).then_some(())
    });
    assert_eq!(patch(&server, &location, 300, vec![8u8; 700]), 204);
    let mut expected = vec![7u8; 300];
    expected.extend_from_slice(&[8u8; 700]);
    assert_eq!(server.get_bytes("/api/files/stalled.bin"), expected);
    drop(s);
    // JSON bodies are capped (1 MiB by default).
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let r = reqwest::blocking::Client::new()
        .post(server.url("/api/projects"))
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    healthy(&mut server);
    rss_below(&server, 200);
}

#[test]
fn two_patches_at_one_offset_one_wins_and_the_file_is_its_bytes() {
    let mut server = Server::start_limited(&[], GIB);
    let len = 4 << 20;
    let (status, location, _, _) = create(&server, len as u64, "race.bin");
    assert_eq!(status, 201);
    let bodies = [bytes_of(len, 1), bytes_of(len, 2)];
    // Both send their headers and half their body, then both the rest: the two chunks are
    // stored at the same offset at the same time.
    let mut streams: Vec<TcpStream> = bodies
        .iter()
        .map(|body| {
            let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
            write!(
                s,
                "PATCH {location} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n\
                 Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n\
                 Content-Length: {len}\r\n\r\n"
            )
            .unwrap();
            s.write_all(&body[..len / 2]).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .iter_mut()
            .zip(&bodies)
            .map(|(s, body)| {
                scope.spawn(move || {
                    s.write_all(&body[len / 2..]).unwrap();
                    status_line(s, Duration::from_secs(30)).unwrap_or_default()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<usize> = (0..2).filter(|&i| answers[i].contains(" 204")).collect();
    let lost: Vec<usize> = (0..2).filter(|&i| answers[i].contains(" 409")).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{answers:?}");
    assert_eq!(offset(&server, &location), (200, Some(len as u64)));
    assert!(
        server.get_bytes("/api/files/race.bin") == bodies[won[0]],
        "the file is the winner's bytes"
    );
    // No chunk is left behind.
    let id = location.rsplit('/').next().unwrap();
    let parts = server.data_dir.join("archive/upload-parts").join(id);
    server.wait_for(10, "the chunks to be deleted", || {
        std::fs::read_dir(&parts)
            .map(|d| d.count() == 0)
            .unwrap_or(true)
            .then_some(())
    });
    healthy(&mut server);
    rss_below(&server, 200);
}

#[test]
fn same_name_uploads_are_both_kept() {
    let mut server = Server::start_limited(&[], GIB);
    let a = bytes_of(100_000, 3);
    let b = bytes_of(150_000, 4);
    let (s1, loc1, path1, _) = create(&server, a.len() as u64, "study/scan.zip");
    let (s2, loc2, path2, _) = create(&server, b.len() as u64, "study/scan.zip");
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(path1, "study/scan.zip");
    assert_eq!(path2, "study/scan-2.zip");
    // The second completes first: it does not overwrite the first.
    assert_eq!(patch(&server, &loc2, 0, b.clone()), 204);
    assert_eq!(patch(&server, &loc1, 0, a.clone()), 204);
    assert_eq!(server.get_bytes(&format!("/api/files/{path1}")), a);
    assert_eq!(server.get_bytes(&format!("/api/files/{path2}")), b);
    // The CLI names the path it got.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("c.zip");
    std::fs::write(&file, bytes_of(1000, 5)).unwrap();
    let out = server.cli(&["upload", file.to_str().unwrap(), "--as", "study/scan.zip"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("as study/scan-3.zip"),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        server.get_bytes("/api/files/study/scan-3.zip"),
        bytes_of(1000, 5)
    );
    assert_eq!(server.get_bytes(&format!("/api/files/{path1}")), a);
    // Names that would mislead are refused.
    for bad in ["a/\u{202E}piz.exe", "../up.zip", "tab\there.zip"] {
        assert_eq!(create(&server, 10, bad).0, 400, "{bad:?}");
    }
    healthy(&mut server);
    rss_below(&server, 200);
}

#[test]
fn an_upload_expiring_during_assembly_is_not_swept() {
    // 0.0001 h = 0.36 s without a new chunk; the sweeper runs every 0.1 s.
    let mut server = Server::start_limited(&["--upload-expiry-hours", "0.0001"], GIB);
    // Chunks 0.12 s apart, more than 0.6 s in all: alive, since expiry counts from the last
    // chunk, not from the creation. (Each gap leaves 0.24 s for the request itself on a
    // loaded machine.)
    let created = Instant::now();
    let (status, location, _, _) = create(&server, 6000, "paced.bin");
    assert_eq!(status, 201);
    for i in 0..6u64 {
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            patch(&server, &location, i * 1000, vec![i as u8; 1000]),
            204,
            "chunk {i}, {:?} after the creation",
            created.elapsed()
        );
    }
    assert!(created.elapsed() > Duration::from_millis(600));
    assert_eq!(offset(&server, &location), (200, Some(6000)));

    // One large chunk: its assembly takes longer than the expiry (measured below; 128 MiB
    // took 0.49 s on a fast day, too close to the 0.46 s it must outlast).
    let len: usize = 256 << 20;
    let body = bytes_of(len, 9);
    let mut hasher = blake3::Hasher::new();
    hasher.update(&body);
    let expected = hasher.finalize();
    // Created right before its PATCH: 0.36 s idle would expire it.
    let (status, location, _, _) = create(&server, len as u64, "large.bin");
    assert_eq!(status, 201);
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    write!(
        s,
        "PATCH {location} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    s.write_all(&body)
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    drop(body);
    let sent = Instant::now();
    let line = status_line(&mut s, Duration::from_secs(60)).unwrap_or_default();
    let answered = sent.elapsed();
    assert!(line.contains(" 204"), "{line}\n{}", server.log());
    let id = location.rsplit('/').next().unwrap();
    let log = server.log();
    // Seconds of the day of the first log line with `what` about this upload.
    let at = |what: &str| -> f64 {
        let line = log
            .lines()
            .find(|l| l.contains(what) && l.contains(id))
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"));
        let time = line
            .split('T')
            .nth(1)
            .and_then(|t| t.split('Z').next())
            .expect("log time");
        time.split(':')
            .map(|part| part.parse::<f64>().expect("number"))
            .fold(0.0, |acc, part| acc * 60.0 + part)
    };
    let assembly = Duration::from_secs_f64(at("upload complete") - at("assembling upload"));
    eprintln!("assembly of 256 MiB took {assembly:?}; answered {answered:?} after sending");
    assert!(
        assembly > Duration::from_millis(500),
        "the assembly ({assembly:?}) must outlast expiry + sweep interval (0.46 s) for this \
         test to mean anything"
    );
    let r = reqwest::blocking::get(server.url("/api/files/large.bin")).unwrap();
    assert_eq!(r.status(), 200);
    let mut hasher = blake3::Hasher::new();
    let mut reader = r;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        hasher.update(&buf[..n]);
    }
    assert_eq!(total, len);
    assert_eq!(hasher.finalize(), expected);
    healthy(&mut server);
    rss_below(&server, 200);
}

#[test]
fn the_total_quota_answers_413() {
    let mut server = Server::start_limited(&["--max-upload-total", "1000000"], GIB);
    let (status, location, _, _) = create(&server, 600_000, "first.bin");
    assert_eq!(status, 201);
    let (status, _, _, body) = create(&server, 500_000, "second.bin");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("full"), "{body}");
    // Terminating the first frees its share.
    let t = reqwest::blocking::Client::new()
        .delete(server.url(&location))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .unwrap();
    assert_eq!(t.status(), 204);
    assert_eq!(create(&server, 500_000, "second.bin").0, 201);
    // Empty files count 64 KiB each: the quota bounds the number of uploads too.
    let mut empties = 0;
    loop {
        let (status, _, _, body) = create(&server, 0, &format!("empty-{empties}.bin"));
        if status == 413 {
            break;
        }
        assert_eq!(status, 201, "{body}");
        empties += 1;
        assert!(empties <= 7, "more empty uploads than the quota holds");
    }
    assert_eq!(empties, 7, "500 000 bytes left hold 7 uploads of 64 KiB");
    healthy(&mut server);
    rss_below(&server, 200);
}

#[test]
fn slow_series_downloads_leave_c_store_working() {
    raise_own_open_files();
    let mut server = Server::start_limited(&[], GIB);
    // 24 slices of 512 x 512 x 2 bytes: 12 MiB, far more than the socket buffers hold.
    let uid = send_series(&server, "811", 24, 512);
    // 512 downloads whose clients read a little and then nothing.
    let mut readers = Vec::new();
    for _ in 0..512 {
        let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
        write!(
            s,
            "GET /api/series/{uid}/download HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        readers.push(s);
    }
    for s in readers.iter_mut().step_by(8) {
        let line = status_line(s, Duration::from_secs(30)).unwrap_or_default();
        assert!(line.contains(" 200"), "{line}");
    }
    std::thread::sleep(Duration::from_secs(1));
    // C-STORE keeps working, and so does the API.
    send_series(&server, "812", 10, 256);
    assert_eq!(server.instance_total("admin"), 34);
    healthy(&mut server);
    // Not reqwest's 30 s default: on a loaded machine (the whole suite runs at once) the 12 MiB
    // can take longer beside 512 stalled downloads; what counts is that it completes.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let r = client
        .get(server.url(&format!("/api/series/{uid}/download")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"{uid}.zip\"; filename*=UTF-8''{uid}.zip")
    );
    let zip_bytes = r
        .bytes()
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    assert_eq!(zip.len(), 24);
    for i in 0..zip.len() {
        let name = zip.by_index(i).unwrap().name().unwrap().to_string();
        assert!(
            name.starts_with(&format!("{uid}/")) && !name.contains(".."),
            "{name}"
        );
    }
    drop(readers);
    healthy(&mut server);
    rss_below(&server, 300);
}

#[test]
fn content_disposition_of_a_hostile_name_is_sanitised() {
    let mut server = Server::start_limited(&[], GIB);
    let name = "x\";y=1; filename*=evil Ünï.zip";
    let (status, location, path, _) = create(&server, 3, name);
    assert_eq!(status, 201);
    assert_eq!(patch(&server, &location, 0, b"abc".to_vec()), 204);
    let r = reqwest::blocking::get(server.url(&format!("/api/files/{path}"))).unwrap();
    assert_eq!(r.status(), 200);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    // One filename and one filename*, nothing the name could add.
    assert_eq!(disposition.matches("filename=").count(), 1, "{disposition}");
    assert_eq!(
        disposition.matches("filename*=").count(),
        1,
        "{disposition}"
    );
    assert_eq!(disposition.matches('"').count(), 2, "{disposition}");
    assert_eq!(disposition.matches(';').count(), 2, "{disposition}");
    assert!(
        disposition.ends_with("filename*=UTF-8''x__y%3D1_%20filename_%3Devil%20%C3%9Cn%C3%AF.zip"),
        "{disposition}"
    );
    assert_eq!(r.bytes().unwrap().as_ref(), b"abc");
    // A database-level failure is never shown: an unknown upload is a plain 404.
    let (status, body) = server.get_status("/api/workflow-runs/nope");
    assert_eq!(status, 404, "{body}");
    healthy(&mut server);
    rss_below(&server, 200);
}

/// DNS rebinding: a page on another domain that points its name at this server gets nothing;
/// IP addresses, localhost and the configured names are answered.
#[test]
fn requests_for_a_host_the_server_is_not_known_by_are_refused() {
    let server = Server::start(&["--allowed-hosts", "radport.test"]);
    let status_for = |host: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
        write!(
            s,
            "GET /api/projects HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        status_line(&mut s, Duration::from_secs(10)).unwrap_or_default()
    };
    for refused in [
        "attacker.example",
        "attacker.example:8080",
        "radport.test.attacker.example",
    ] {
        let line = status_for(refused);
        assert!(line.contains(" 421"), "{refused}: {line}");
    }
    for answered in [
        format!("127.0.0.1:{}", server.http_port),
        "localhost".to_string(),
        "radport.test:8080".to_string(),
    ] {
        let line = status_for(&answered);
        assert!(line.contains(" 200"), "{answered}: {line}");
    }
}
