//! The tus headers of `POST/PATCH /api/uploads` (crates/http/src/uploads.rs): `Upload-Offset`,
//! `Upload-Length`, `Content-Length` (`header_i64`), `Upload-Metadata` (`metadata_filename`),
//! and the path the file is then stored at (`upload_path`, and `numbered` when it is taken).
//!
//! Input: lines of `<o|l|c|m><value>` for Upload-Offset, Upload-Length, Content-Length and
//! Upload-Metadata (a value that is no valid header value is dropped, as hyper would).
//!
//! Contract: no panic; a number is accepted only if it is one, non-negative; a path that is
//! accepted stays inside the uploads area (relative, no `.`/`..`/empty parts, no backslash,
//! `#` or control character, parts of at most 255 bytes, 1024 in all), and so does every
//! numbered variant `create` may store the file at.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use radport_http::uploads::{header_i64, metadata_filename, numbered, upload_path};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

/// What `create` makes sure of before storing anything under `uploads/<path>`; `lengths`:
/// whether to hold it to the length limits too.
fn assert_inside_uploads(path: &str, from: &str, lengths: bool) {
    let why = if path.is_empty() {
        Some("empty")
    } else if lengths && path.len() > 1024 {
        Some("longer than 1024 bytes")
    } else if path
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        Some("an empty, '.' or '..' part")
    } else if path
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == '#')
    {
        Some("a control character, backslash or '#'")
    } else if lengths && path.split('/').any(|p| p.len() > 255) {
        Some("a part longer than 255 bytes")
    } else {
        None
    };
    if let Some(why) = why {
        panic!("{from} gives the upload path {path:?}: {why}");
    }
    if lengths {
        assert_eq!(
            upload_path(path).as_deref(),
            Some(path),
            "{from} gives a path that upload_path itself refuses or changes"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&kind, value)) = line.split_first() else {
            continue;
        };
        let name = match kind {
            b'o' => "upload-offset",
            b'l' => "upload-length",
            b'c' => "content-length",
            b'm' => "upload-metadata",
            _ => continue,
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }

    for name in ["upload-offset", "upload-length", "content-length"] {
        let parsed = header_i64(&headers, name);
        match (headers.get(name), parsed) {
            (None, Ok(None)) => {}
            (None, other) => panic!("{name} absent, read as {other:?}"),
            (Some(_), Ok(None)) => panic!("{name} present, read as absent"),
            (Some(value), Ok(Some(n))) => {
                assert!(n >= 0, "{name}: {n}");
                let text = value.to_str().expect("a number is text");
                assert_eq!(text.trim().parse::<i64>().ok(), Some(n), "{name}: {text:?}");
            }
            (Some(_), Err(_)) => {}
        }
    }

    // `create` refuses metadata over 4096 bytes before parsing it.
    let metadata = headers
        .get("upload-metadata")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if metadata.len() > 4096 {
        return;
    }
    let Ok(Some(filename)) = metadata_filename(metadata) else {
        return;
    };
    let Some(path) = upload_path(&filename) else {
        return;
    };
    assert_inside_uploads(&path, "upload_path", true);
    for n in [1, 2, 9, 10, 99, 999] {
        // Found by this target: a part of 254 bytes got "-2", and folders that leave no room
        // for "-N" gave a longer path (both fixed; crates/http/tests/fuzz_regressions.rs).
        let Some(candidate) = numbered(&path, n) else {
            let folders = path.rfind('/').map_or(0, |i| i + 1);
            assert!(
                folders + format!("-{}", n + 1).len() >= 1024,
                "numbered({n}) gives no name though there is room"
            );
            continue;
        };
        assert_ne!(candidate, path, "numbered({n}) gives the same path");
        assert_inside_uploads(&candidate, &format!("numbered(_, {n})"), true);
    }
});
