//! Inputs found by the fuzz targets (fuzz/, scripts/fuzz.sh) in this crate's layout and JSON
//! logic, kept as tests.

use radport_workflows::fuzzing::nifti_plan;
use radport_workflows::ImportLimits;

fn zip_of(names: &[&str]) -> tempfile::NamedTempFile {
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, &b"not a volume"[..])).collect();
    radport_testkit::zip::stored_zip_file(&entries)
}

/// Found by `upload_layout` (minimised): two entries whose names differ only by a `.` or an
/// empty part (`Case00.nii.gz` and `./Case00.nii.gz`, or `a/b.nii.gz` and `a//b.nii.gz`) are
/// both planned as case `Case00`, path `Case00.nii.gz`: two different volumes converted to
/// series with the same derived UIDs, so one silently replaced (or duplicated) the other.
/// Fixed: the later entry is refused ("the same path as an earlier entry").
#[test]
fn entries_aliasing_one_path_are_not_two_cases() {
    for names in [
        &["Case00.nii.gz", "./Case00.nii.gz"][..],
        &["cases/Case00.nii.gz", "cases//Case00.nii.gz"][..],
    ] {
        let zip = zip_of(names);
        let (_, cases, refused) = nifti_plan(zip.path(), &ImportLimits::default()).unwrap();
        let paths: Vec<&String> = cases.iter().flat_map(|(_, files)| files).collect();
        assert_eq!(
            paths.len(),
            1,
            "{names:?}: cases {cases:?}, refused {refused:?}"
        );
        assert_eq!(refused.len(), 1, "{names:?}: refused {refused:?}");
    }
}

/// The same names without aliasing: one case each.
#[test]
fn distinct_names_are_distinct_cases() {
    let zip = zip_of(&[
        "Case00.nii.gz",
        "Case01.nii.gz",
        "Case00_segmentation.nii.gz",
    ]);
    let (layout, cases, refused) = nifti_plan(zip.path(), &ImportLimits::default()).unwrap();
    assert_eq!(layout, "basic");
    assert_eq!(cases.len(), 2, "{cases:?}");
    assert!(refused.is_empty(), "{refused:?}");
}

/// Found by `upload_layout` (CI, session 26): below a folder that wraps every entry
/// (`upload/::c0001.nii.gz`), a file whose name has `:` as its second byte was reported as a
/// path of its own and taken by the target for a drive letter. The plan reads entries by index
/// and names them below the folder only; what must stay inside the zip is the entry's name, so
/// the fuzzing view now reports the entries' names. A drive letter is still refused wherever it
/// names a part (`C:x` below a folder is one too: the zip crate's `enclosed_name`).
#[test]
fn names_below_a_wrapping_folder_are_read_as_the_zips_entries() {
    let zip = zip_of(&["upload/::c0001.nii.gz", "upload/C:x.nii.gz"]);
    let (_, cases, refused) = nifti_plan(zip.path(), &ImportLimits::default()).unwrap();
    let read: Vec<&str> = cases
        .iter()
        .flat_map(|(_, files)| files)
        .map(String::as_str)
        .collect();
    assert_eq!(read, ["upload/::c0001.nii.gz"], "{cases:?}");
    let refused: Vec<&str> = refused.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(refused, ["upload/C:x.nii.gz"]);

    for unsafe_name in ["C:x.nii.gz", "./C:/x.nii.gz", "./p:x/y.nii.gz"] {
        let zip = zip_of(&[unsafe_name, "Case01.nii.gz"]);
        let (_, cases, refused) = nifti_plan(zip.path(), &ImportLimits::default()).unwrap();
        assert_eq!(cases.len(), 1, "{unsafe_name}: {cases:?}");
        assert_eq!(refused.len(), 1, "{unsafe_name}: {refused:?}");
    }
}
