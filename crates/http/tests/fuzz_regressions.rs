//! Inputs found by the fuzz targets (fuzz/, scripts/fuzz.sh) in this crate's parsers, kept as
//! tests.

use radport_http::uploads::{numbered, upload_path};

/// Found by `tus_headers`: `Upload-Metadata: filename <base64 of a 254-byte name>` is a valid
/// upload path, and when that name is taken `create` tries `numbered(path, 1)`, 256 bytes in
/// its last part (the same with a path of 1023 bytes: 1025 in all). Such a candidate is stored
/// without being checked again: a part over 255 bytes cannot be a file on the local archive
/// (ENAMETOOLONG), so the upload failed with a server error instead of a numbered name.
/// Fixed: `numbered` shortens the stem to make room for the number.
#[test]
fn numbered_names_stay_within_the_length_limits() {
    let long_part = format!("scan-{}.zip", "a".repeat(245));
    let deep = format!("{}abcdefgh.nii.gz", "study/".repeat(168));
    assert_eq!((long_part.len(), deep.len()), (254, 1023));
    for name in [long_part, deep] {
        let path = upload_path(&name).expect("a valid upload path");
        for n in [1, 9, 99, 999] {
            let candidate = numbered(&path, n).expect("room for the number");
            assert_eq!(
                upload_path(&candidate).as_deref(),
                Some(candidate.as_str()),
                "numbered(_, {n}) of a {}-byte path",
                path.len()
            );
        }
    }
}

/// The names the fuzz target starts from stay valid when numbered.
#[test]
fn ordinary_names_are_numbered_within_the_limits() {
    for name in [
        "scan.zip",
        "study/case.nii.gz",
        ".hidden",
        "x.TAR.GZ",
        "README",
    ] {
        let path = upload_path(name).unwrap();
        for n in [1, 9, 99, 999] {
            let candidate = numbered(&path, n).expect("room for the number");
            assert_eq!(upload_path(&candidate).as_deref(), Some(candidate.as_str()));
        }
    }
}

/// Found by `tus_headers` after the fix above: folders that leave fewer bytes than "-N" needs
/// within the 1024 (`study/` × 170, then `abc`: 1023 bytes) still gave a candidate that was
/// too long (`numbered(path, 999)`: 1025 bytes). Fixed: no candidate then (the name stays
/// taken: 409), and every candidate given is within the limits.
#[test]
fn numbered_names_under_deep_folders_stay_within_the_limits() {
    let path = format!("{}abc", "study/".repeat(170));
    assert_eq!(upload_path(&path).as_deref(), Some(path.as_str()));
    let mut given = 0;
    for n in [1, 9, 99, 999] {
        let Some(candidate) = numbered(&path, n) else {
            continue;
        };
        given += 1;
        assert_eq!(
            upload_path(&candidate).as_deref(),
            Some(candidate.as_str()),
            "numbered(_, {n}): {} bytes",
            candidate.len()
        );
    }
    // "-2" and "-10" fit in the 1024 (1021 bytes of folders), "-100" and "-1000" do not.
    assert_eq!(given, 2);
}
