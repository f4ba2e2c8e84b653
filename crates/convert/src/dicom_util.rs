//! Small helpers: DS formatting, deterministic UIDs, element construction, Part-10 encoding, geometry.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::uids;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

use crate::{ConvertError, Volume};

pub(crate) const IMPLEMENTATION_CLASS_UID: &str = "2.25.248043920575340306548155476383612929917";
pub(crate) const IMPLEMENTATION_VERSION: &str = "RADPORT_CONV_01";
pub(crate) const MANUFACTURER: &str = "radport";
pub(crate) const MODEL: &str = "radport-convert";
pub(crate) const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Namespace of the UUIDv5 UIDs (a fixed random UUID).
const UID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x6b, 0x1f, 0x0e, 0x52, 0x8d, 0x3a, 0x4c, 0x77, 0x9a, 0x2e, 0x51, 0x0c, 0xd4, 0x63, 0xa8, 0x19,
]);

/// `2.25.<decimal of UUIDv5(namespace, name)>`.
pub(crate) fn uid_from(name: &str) -> String {
    let u = uuid::Uuid::new_v5(&UID_NAMESPACE, name.as_bytes());
    format!("2.25.{}", u.as_u128())
}

/// Hex digest-ish short id (for a default Patient ID).
pub(crate) fn short_id(name: &str) -> String {
    let u = uuid::Uuid::new_v5(&UID_NAMESPACE, name.as_bytes());
    u.simple().to_string()[..16].to_uppercase()
}

pub(crate) fn is_valid_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

/// Format a number as a DS string (≤ 16 characters), keeping as much precision as fits.
pub(crate) fn ds(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return "0".into();
    }
    let mut best: Option<(f64, String)> = None;
    let mut consider = |s: String| {
        if s.len() <= 16 {
            if let Ok(p) = s.parse::<f64>() {
                let err = (p - x).abs();
                if best
                    .as_ref()
                    .is_none_or(|(e, b)| err < *e || (err == *e && s.len() < b.len()))
                {
                    best = Some((err, s));
                }
            }
        }
    };
    if x.abs() < 1e16 {
        for prec in (0..=15).rev() {
            let s = format!("{x:.prec$}");
            let s = if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            };
            if s.len() <= 16 {
                consider(s);
                break;
            }
        }
    }
    for prec in (0..=12).rev() {
        let s = format!("{x:.prec$e}");
        if s.len() <= 16 {
            consider(s);
            break;
        }
    }
    let s = best.map(|(_, s)| s).unwrap_or_else(|| "0".into());
    if s.parse::<f64>() == Ok(0.0) {
        "0".into()
    } else {
        s
    }
}

/// Parse back what [`ds`] wrote (the value readers will use).
pub(crate) fn ds_value(x: f64) -> (String, f64) {
    let s = ds(x);
    let v = s.parse().unwrap_or(0.0);
    (s, v)
}

pub(crate) fn ds_multi(xs: &[f64]) -> String {
    xs.iter().map(|&x| ds(x)).collect::<Vec<_>>().join("\\")
}

/// Element builder helpers on an in-memory object.
pub(crate) trait Put {
    fn s(&mut self, tag: Tag, vr: VR, v: &str);
    fn empty(&mut self, tag: Tag, vr: VR);
    fn us(&mut self, tag: Tag, v: &[u16]);
    fn ul(&mut self, tag: Tag, v: &[u32]);
    fn at(&mut self, tag: Tag, v: Tag);
    fn seq(&mut self, tag: Tag, items: Vec<InMemDicomObject>);
}

impl Put for InMemDicomObject {
    fn s(&mut self, tag: Tag, vr: VR, v: &str) {
        self.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }
    fn empty(&mut self, tag: Tag, vr: VR) {
        self.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }
    fn us(&mut self, tag: Tag, v: &[u16]) {
        self.put(DataElement::new(
            tag,
            VR::US,
            PrimitiveValue::U16(v.iter().copied().collect()),
        ));
    }
    fn ul(&mut self, tag: Tag, v: &[u32]) {
        self.put(DataElement::new(
            tag,
            VR::UL,
            PrimitiveValue::U32(v.iter().copied().collect()),
        ));
    }
    fn at(&mut self, tag: Tag, v: Tag) {
        self.put(DataElement::new(
            tag,
            VR::AT,
            PrimitiveValue::Tags([v].into_iter().collect()),
        ));
    }
    fn seq(&mut self, tag: Tag, items: Vec<InMemDicomObject>) {
        self.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
    }
}

/// A code sequence item (Code Value, Coding Scheme Designator, Code Meaning).
pub(crate) fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    use dicom_dictionary_std::tags;
    let mut o = InMemDicomObject::new_empty();
    o.s(tags::CODE_VALUE, VR::SH, value);
    o.s(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    o.s(tags::CODE_MEANING, VR::LO, meaning);
    o
}

/// Encode as a Part-10 file (preamble, meta group, Explicit VR Little Endian data set).
pub(crate) fn to_part10(obj: InMemDicomObject, size_hint: usize) -> Result<Vec<u8>, ConvertError> {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION),
        )
        .map_err(|e| ConvertError::Dicom(e.to_string()))?;
    let mut out = Vec::with_capacity(size_hint + 4096);
    file.write_all(&mut out)
        .map_err(|e| ConvertError::Dicom(e.to_string()))?;
    Ok(out)
}

/// DICOM (LPS) geometry of a volume.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    /// Direction of increasing column index (i), unit.
    pub row_dir: [f64; 3],
    /// Direction of increasing row index (j), unit.
    pub col_dir: [f64; 3],
    pub normal: [f64; 3],
    pub origin: [f64; 3],
    pub kvec: [f64; 3],
    /// Distance between rows = |j vector|.
    pub row_spacing: f64,
    /// Distance between columns = |i vector|.
    pub col_spacing: f64,
    /// Distance between slices along the normal.
    pub slice_spacing: f64,
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

impl Geometry {
    pub fn of(v: &Volume) -> Result<Self, ConvertError> {
        let a = &v.affine;
        // RAS → LPS: negate rows x and y.
        let col = |c: usize| [-a[0][c], -a[1][c], a[2][c]];
        let (ci, cj, ck, o) = (col(0), col(1), col(2), col(3));
        let (si, sj) = (norm(ci), norm(cj));
        if !(si > 1e-9 && sj > 1e-9 && si.is_finite() && sj.is_finite() && norm(ck).is_finite())
            || o.iter().any(|x| !x.is_finite())
        {
            return Err(ConvertError::Geometry(format!(
                "degenerate affine: voxel spacing {si} × {sj} in the image plane"
            )));
        }
        let row_dir = ci.map(|x| x / si);
        let col_dir = cj.map(|x| x / sj);
        let c = dot(row_dir, col_dir);
        if c.abs() > 1e-4 {
            return Err(ConvertError::Geometry(format!(
                "sheared affine: the i and j axes are not orthogonal (cos = {c:.6})"
            )));
        }
        let n = cross(row_dir, col_dir);
        let nn = norm(n);
        let normal = n.map(|x| x / nn);
        let along = dot(ck, normal).abs();
        let slice_spacing = if along > 1e-9 {
            along
        } else if v.dims[2] == 1 {
            1.0
        } else {
            return Err(ConvertError::Geometry(
                "degenerate affine: slices do not advance along the slice normal".into(),
            ));
        };
        Ok(Geometry {
            row_dir,
            col_dir,
            normal,
            origin: o,
            kvec: ck,
            row_spacing: sj,
            col_spacing: si,
            slice_spacing,
        })
    }

    /// Image Position (Patient) of slice k.
    pub fn position(&self, k: usize) -> [f64; 3] {
        let k = k as f64;
        std::array::from_fn(|r| self.origin[r] + k * self.kvec[r])
    }

    pub fn iop(&self) -> String {
        ds_multi(&[
            self.row_dir[0],
            self.row_dir[1],
            self.row_dir[2],
            self.col_dir[0],
            self.col_dir[1],
            self.col_dir[2],
        ])
    }

    pub fn pixel_spacing(&self) -> String {
        ds_multi(&[self.row_spacing, self.col_spacing])
    }

    pub fn slice_location(&self, k: usize) -> f64 {
        dot(self.position(k), self.normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_strings() {
        for x in [
            0.0,
            1.0,
            -1.0,
            0.5,
            1.0 / 3.0,
            -123456.789012345,
            1e-12,
            1.5e-5,
            123456789012345678.0,
            -0.000_000_1,
            65535.0,
        ] {
            let s = ds(x);
            assert!(s.len() <= 16, "{x}: {s}");
            let p: f64 = s.parse().unwrap();
            assert!((p - x).abs() <= x.abs() * 1e-9 + 1e-300, "{x}: {s}");
        }
        assert_eq!(ds(1.0), "1");
        assert_eq!(ds(-0.0), "0");
        assert_eq!(ds(0.25), "0.25");
    }

    #[test]
    fn uids() {
        let a = uid_from("x");
        assert_eq!(a, uid_from("x"));
        assert_ne!(a, uid_from("y"));
        assert!(is_valid_uid(&a) && a.len() <= 64, "{a}");
        assert!(!is_valid_uid("1.02"));
        assert!(!is_valid_uid("1..2"));
    }
}
