//! Zips for the import tests, entries stored (not deflated): quick to write, and their bytes
//! stay where a test can find or patch them.

use std::io::Write;
use std::path::Path;

/// Writes a zip of `entries` (name, bytes), stored, to `path` (Zip64 where sizes need it).
pub fn stored_zip<N: AsRef<str>, B: AsRef<[u8]>>(path: &Path, entries: &[(N, B)]) {
    let file = std::fs::File::create(path).expect("create the zip file");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, bytes) in entries {
        zip.start_file(name.as_ref(), options).expect("zip entry");
        zip.write_all(bytes.as_ref()).expect("zip data");
    }
    zip.finish().expect("finish the zip");
}

/// [`stored_zip`] into a temporary file (removed on drop).
pub fn stored_zip_file<N: AsRef<str>, B: AsRef<[u8]>>(
    entries: &[(N, B)],
) -> tempfile::NamedTempFile {
    let tmp = tempfile::NamedTempFile::new().expect("temporary file");
    stored_zip(tmp.path(), entries);
    tmp
}
