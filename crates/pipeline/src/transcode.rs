//! Converting a stored instance to another transfer syntax, for a retrieving peer that accepts
//! none in the stored one (the DIMSE C-GET/C-MOVE fallback; `radport serve` plugs this into
//! `radport_dimse` as its `Transcoder`). Encapsulated pixel data is decoded with the same
//! codecs as thumbnails; native data sets are re-encoded. The file is walked by the prescan
//! before dicom-rs parses it, and a panic in a codec is an error, not a crash. The caller
//! bounds the size of what it converts.

use std::panic::{catch_unwind, AssertUnwindSafe};

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// The data set of `file` (a Part-10 file, with or without its preamble) encoded in
/// `transfer_syntax_uid`.
pub fn transcode_data_set(file: &[u8], transfer_syntax_uid: &str) -> Result<Vec<u8>, String> {
    let body = if file.len() >= 132 && &file[128..132] == b"DICM" {
        &file[128..]
    } else if file.starts_with(b"DICM") {
        file
    } else {
        return Err("not a Part-10 file".into());
    };
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax_uid)
        .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax_uid}"))?;
    radport_prescan::check_file(body).map_err(|e| format!("malformed stored file: {e}"))?;
    let converted = catch_unwind(AssertUnwindSafe(|| {
        let mut obj = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .from_reader(body)
            .map_err(|e| format!("cannot parse the stored file: {e}"))?;
        obj.transcode(ts)
            .map_err(|e| format!("cannot convert to {transfer_syntax_uid}: {e}"))?;
        let mut out = Vec::with_capacity(file.len());
        obj.write_dataset_with_ts(&mut out, ts)
            .map_err(|e| format!("cannot encode in {transfer_syntax_uid}: {e}"))?;
        Ok(out)
    }));
    match converted {
        Ok(result) => result,
        Err(_) => Err("the codec panicked".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_to_implicit_and_garbage() {
        let spec = radport_testkit::SeriesSpec::default();
        let dir = tempfile::tempdir().unwrap();
        let files = radport_testkit::write_series(dir.path(), &spec).unwrap();
        let file = std::fs::read(&files[0]).unwrap();
        let implicit = transcode_data_set(&file, "1.2.840.10008.1.2").unwrap();
        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(
            &implicit[..],
            TransferSyntaxRegistry.get("1.2.840.10008.1.2").unwrap(),
        )
        .unwrap();
        assert!(obj.element(dicom_dictionary_std::tags::PIXEL_DATA).is_ok());
        assert!(transcode_data_set(b"nonsense", "1.2.840.10008.1.2").is_err());
    }
}
