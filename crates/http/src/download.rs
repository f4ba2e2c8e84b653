//! Downloads: stored files streamed to clients under a few read permits, series as zips built
//! piece by piece, and the names files get (UIDs from the wire checked before they name a zip
//! entry or a `Content-Disposition`).

use std::sync::Arc;

use radport_archive::{Archive, ArchiveError};

use crate::error::without_file_names;

/// Downloads (series zips, instances, uploaded files) read stored files through a small
/// number of permits, taken for each piece read and given back before the piece is sent.
///
/// A download never holds a thread or a permit while its client is slow to read: it reads
/// the next piece only when the connection asks for it. So the archive's blocking threads,
/// which local writes of received instances need, are used by at most `concurrent_reads`
/// downloads at any moment, however many slow clients there are.
#[derive(Clone, Debug)]
pub struct Downloads {
    reads: Arc<tokio::sync::Semaphore>,
}

impl Downloads {
    /// At most `concurrent_reads` pieces of stored files read at once for downloads.
    pub fn new(concurrent_reads: usize) -> Self {
        Self {
            reads: Arc::new(tokio::sync::Semaphore::new(concurrent_reads.max(1))),
        }
    }

    /// A stream of a stored object's pieces, each read under a permit.
    pub(crate) fn throttled(
        &self,
        stream: futures::stream::BoxStream<'static, Result<bytes::Bytes, ArchiveError>>,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
        let reads = self.reads.clone();
        futures::stream::unfold((stream, reads), |(mut stream, reads)| async move {
            let item = {
                let _permit = reads.acquire().await.ok();
                futures::StreamExt::next(&mut stream).await
            }?;
            Some((item.map_err(read_failed), (stream, reads)))
        })
    }
}

impl Default for Downloads {
    fn default() -> Self {
        Self::new(16)
    }
}

fn read_failed(e: ArchiveError) -> std::io::Error {
    tracing::warn!(
        error = %without_file_names(&e.to_string()),
        "reading a stored file for a download failed"
    );
    std::io::Error::other("reading a stored file failed")
}

/// True for a DICOM UID: 1 to 64 characters, dot-separated components of digits.
pub fn is_dicom_uid(uid: &str) -> bool {
    (1..=64).contains(&uid.len())
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// A UID as it may appear in a file name: itself if it is a valid UID, else a stand-in
/// derived from it (UIDs come from the wire; `..`, `/` or control characters must not reach
/// a zip entry name or a `Content-Disposition`).
pub fn uid_for_file_name(uid: &str) -> String {
    if is_dicom_uid(uid) {
        uid.to_string()
    } else {
        format!("invalid-uid-{:016x}", fnv1a(uid.as_bytes()))
    }
}

/// `attachment` with a file name safe to save anywhere: the last path part, without control,
/// format (bidi) or path characters, at most 200 bytes; an ASCII `filename` for old clients
/// and the UTF-8 name as RFC 6266 / RFC 5987 `filename*`.
pub fn attachment(filename: &str) -> String {
    let last = filename.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut safe = String::new();
    for c in last.chars() {
        if c.is_control() || is_format_char(c) {
            continue;
        }
        let c = if matches!(c, ':' | '"' | '*' | '?' | '<' | '>' | '|' | ';' | '%') {
            '_'
        } else {
            c
        };
        if safe.len() + c.len_utf8() > 200 {
            break;
        }
        safe.push(c);
    }
    let safe = safe.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let safe = if safe.is_empty() { "download" } else { safe };
    let ascii: String = safe
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '(' | ')' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in safe.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Unicode format characters that reorder or hide text (bidi overrides, zero-width marks).
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// The bytes the zip writer produced and the download has not sent yet.
#[derive(Clone, Default)]
struct ZipOutput(Arc<std::sync::Mutex<Vec<u8>>>);

impl ZipOutput {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn take(&self) -> bytes::Bytes {
        bytes::Bytes::from(std::mem::take(&mut *self.lock()))
    }
}

impl std::io::Write for ZipOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sent to the client once this much zip output is ready.
const ZIP_PIECE: usize = 32 * 1024;

/// A series zip being produced: the zip writer runs on the async side, one stored piece at a
/// time and only when the client asks for more (CRC and copying only, no blocking I/O), so a
/// slow client holds no thread and at most one piece of memory.
struct SeriesZip {
    zip: Option<zip::ZipWriter<zip::write::StreamWriter<ZipOutput>>>,
    out: ZipOutput,
    files: std::vec::IntoIter<(String, String)>,
    current: Option<futures::stream::BoxStream<'static, Result<bytes::Bytes, ArchiveError>>>,
    archive: Archive,
    downloads: Downloads,
}

impl SeriesZip {
    async fn next_piece(&mut self) -> Option<Result<bytes::Bytes, std::io::Error>> {
        use std::io::Write;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        loop {
            if self.out.len() >= ZIP_PIECE {
                return Some(Ok(self.out.take()));
            }
            let Some(zip) = self.zip.as_mut() else {
                return (self.out.len() > 0).then(|| Ok(self.out.take()));
            };
            if let Some(stream) = self.current.as_mut() {
                let next = {
                    let _permit = self.downloads.reads.acquire().await.ok();
                    futures::StreamExt::next(stream).await
                };
                match next {
                    Some(Ok(bytes)) => {
                        if let Err(e) = zip.write_all(&bytes) {
                            return Some(Err(e));
                        }
                    }
                    Some(Err(e)) => return Some(Err(read_failed(e))),
                    None => self.current = None,
                }
                continue;
            }
            match self.files.next() {
                Some((name, key)) => {
                    let opened = {
                        let _permit = self.downloads.reads.acquire().await.ok();
                        self.archive.get_stream(&key).await
                    };
                    let stream = match opened {
                        Ok((_, stream)) => stream,
                        Err(e) => return Some(Err(read_failed(e))),
                    };
                    if let Err(e) = zip.start_file(name, options) {
                        return Some(Err(std::io::Error::other(e)));
                    }
                    self.current = Some(stream);
                }
                None => {
                    if let Some(zip) = self.zip.take() {
                        if let Err(e) = zip.finish() {
                            return Some(Err(std::io::Error::other(e)));
                        }
                    }
                }
            }
        }
    }
}

/// The zip entry names of a series' instances: `<series>/<number>_<sop>.dcm`, UIDs checked
/// (see [`uid_for_file_name`]) and every name unique.
fn zip_entry_names(series_uid: &str, instances: &[radport_catalog::InstanceRow]) -> Vec<String> {
    let series = uid_for_file_name(series_uid);
    let mut seen = std::collections::HashSet::new();
    instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let number = inst.instance_number.unwrap_or(i as i64);
            let sop = uid_for_file_name(&inst.sop_instance_uid);
            let mut name = format!("{series}/{number:05}_{sop}.dcm");
            if !seen.insert(name.clone()) {
                name = format!("{series}/{number:05}_{sop}_{i}.dcm");
                seen.insert(name.clone());
            }
            name
        })
        .collect()
}

/// A fast, stable 64-bit hash for ETags and stand-in names (not for security).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The body of a series download: every stored file of `instances` in a zip (see
/// [`zip_entry_names`]), produced piece by piece as the client reads.
pub(crate) fn series_zip(
    series_uid: &str,
    instances: &[radport_catalog::InstanceRow],
    archive: Archive,
    downloads: Downloads,
) -> axum::body::Body {
    let names = zip_entry_names(series_uid, instances);
    let files: Vec<(String, String)> = names
        .into_iter()
        .zip(instances.iter().map(|inst| inst.object_key.clone()))
        .collect();
    let out = ZipOutput::default();
    let zip = SeriesZip {
        zip: Some(zip::ZipWriter::new_stream(out.clone())),
        out,
        files: files.into_iter(),
        current: None,
        archive,
        downloads,
    };
    let stream = futures::stream::unfold(zip, |mut zip| async move {
        zip.next_piece().await.map(|item| (item, zip))
    });
    axum::body::Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_checked_before_they_name_files() {
        assert!(is_dicom_uid("1.2.840.10008.5.1.4.1.1.2"));
        for bad in [
            "",
            "..",
            "1..2",
            ".1",
            "1.",
            "1.2/../3",
            "1.2\r\n",
            &"1".repeat(65),
        ] {
            assert!(!is_dicom_uid(bad), "{bad:?}");
            let name = uid_for_file_name(bad);
            assert!(name.starts_with("invalid-uid-"), "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        }
        assert_eq!(uid_for_file_name("1.2.3"), "1.2.3");
        // Distinct bad UIDs stay distinct.
        assert_ne!(uid_for_file_name("../a"), uid_for_file_name("../b"));
    }

    #[test]
    fn content_disposition_is_sanitised() {
        assert_eq!(
            attachment("1.2.3.zip"),
            "attachment; filename=\"1.2.3.zip\"; filename*=UTF-8''1.2.3.zip"
        );
        let hostile = attachment("../../etc/pa\"ss\r\nSet-Cookie: x=1;\u{202E}gpj.exe");
        assert!(!hostile.contains(['\r', '\n', '\u{202E}']), "{hostile}");
        assert!(!hostile.contains(".."), "{hostile}");
        let (ascii, _) = hostile.split_once("; filename*=").unwrap();
        assert_eq!(ascii.matches('"').count(), 2, "{hostile}");
        assert!(
            !ascii.contains(';') || ascii.starts_with("attachment;"),
            "{hostile}"
        );
        assert!(HeaderValueCheck::ok(&hostile));
        let unicode = attachment("Müller Ödem.zip");
        assert!(
            unicode.contains("filename*=UTF-8''M%C3%BCller%20%C3%96dem.zip"),
            "{unicode}"
        );
        assert!(
            unicode.contains("filename=\"M_ller _dem.zip\""),
            "{unicode}"
        );
        assert!(attachment("...").contains("filename=\"download\""));
        assert!(attachment(&"a".repeat(1000)).len() < 700);
    }

    /// A header value must be visible ASCII (and tabs/spaces).
    struct HeaderValueCheck;
    impl HeaderValueCheck {
        fn ok(v: &str) -> bool {
            axum::http::HeaderValue::from_str(v).is_ok() && v.is_ascii()
        }
    }

    #[test]
    fn zip_entry_names_are_safe_and_unique() {
        let row = |sop: &str, n: Option<i64>| radport_catalog::InstanceRow {
            sop_instance_uid: sop.to_string(),
            series_instance_uid: String::new(),
            instance_number: n,
            sop_class_uid: String::new(),
            transfer_syntax_uid: String::new(),
            size: 0,
            checksum: String::new(),
            rows: None,
            columns: None,
            number_of_frames: None,
            received_at: String::new(),
            object_key: String::new(),
        };
        let names = zip_entry_names(
            "1.2.3",
            &[
                row("1.2.3.1", Some(1)),
                row("../../evil", Some(2)),
                row("1.2.3.1", Some(1)),
            ],
        );
        assert_eq!(names[0], "1.2.3/00001_1.2.3.1.dcm");
        assert!(
            names[1].starts_with("1.2.3/00002_invalid-uid-"),
            "{}",
            names[1]
        );
        assert_eq!(names[2], "1.2.3/00001_1.2.3.1_2.dcm");
        let names = zip_entry_names("../x", &[row("1.1", None)]);
        assert!(names[0].starts_with("invalid-uid-") && !names[0].contains(".."));
    }
}
