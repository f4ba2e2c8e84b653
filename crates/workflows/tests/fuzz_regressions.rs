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
