//! What the SEG and RTSTRUCT overlays share: the source image drawn exactly as
//! [`super::render_instance`] draws it (then turned RGB), patient geometry, colours, blending.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::decode::{self, floats, frame_attr, int, text, Obj};
use super::{resize, target_size, tone, ThumbnailError, ThumbnailOptions};

/// Grey level of the background when there is no source image.
pub(crate) const BACKGROUND: u8 = 32;
/// Opacity of segment fills.
pub(crate) const FILL_ALPHA: f32 = 0.5;

/// A segment or ROI colour for which the object gives none, by its number (1-based): a set of
/// well-separated colours (after Sasha Trubetskoy's "20 distinct colours"), repeated.
const PALETTE: [[u8; 3]; 16] = [
    [230, 25, 75],   // red
    [60, 180, 75],   // green
    [255, 225, 25],  // yellow
    [0, 130, 200],   // blue
    [245, 130, 48],  // orange
    [145, 30, 180],  // purple
    [70, 240, 240],  // cyan
    [240, 50, 230],  // magenta
    [210, 245, 60],  // lime
    [250, 190, 212], // pink
    [0, 128, 128],   // teal
    [220, 190, 255], // lavender
    [170, 110, 40],  // brown
    [128, 0, 0],     // maroon
    [170, 255, 195], // mint
    [128, 128, 0],   // olive
];

pub(crate) fn palette_colour(number: i64) -> [u8; 3] {
    let i = (number - 1).rem_euclid(PALETTE.len() as i64) as usize;
    PALETTE[i]
}

/// An RGB picture, row by row.
#[derive(Debug, Clone)]
pub(crate) struct Canvas {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Canvas {
    pub fn filled(width: u32, height: u32, grey: u8) -> Self {
        Self {
            width,
            height,
            data: vec![grey; width as usize * height as usize * 3],
        }
    }

    fn from_display(picture: tone::Display8) -> Self {
        let data = if picture.rgb {
            picture.data
        } else {
            picture.data.iter().flat_map(|v| [*v, *v, *v]).collect()
        };
        Self {
            width: picture.width,
            height: picture.height,
            data,
        }
    }

    /// Mixes `colour` into pixel (x, y) with opacity `alpha` (0..=1).
    pub fn blend(&mut self, x: u32, y: u32, colour: [u8; 3], alpha: f32) {
        if x >= self.width || y >= self.height || alpha <= 0.0 {
            return;
        }
        let alpha = alpha.min(1.0);
        let at = (y as usize * self.width as usize + x as usize) * 3;
        for (c, target) in self.data[at..at + 3].iter_mut().zip(colour) {
            let mixed = f32::from(*c) * (1.0 - alpha) + f32::from(target) * alpha;
            *c = mixed.round().clamp(0.0, 255.0) as u8;
        }
    }

    /// Paints the pixels within `half` of the point (x, y) (continuous coordinates, pixel
    /// centres at +0.5).
    fn stamp(&mut self, x: f64, y: f64, half: f64, colour: [u8; 3]) {
        let x0 = (x - half - 0.5).ceil().max(0.0);
        let x1 = (x + half - 0.5).floor().min(f64::from(self.width) - 1.0);
        let y0 = (y - half - 0.5).ceil().max(0.0);
        let y1 = (y + half - 0.5).floor().min(f64::from(self.height) - 1.0);
        if !(x0 <= x1 && y0 <= y1) {
            return;
        }
        for py in y0 as u32..=y1 as u32 {
            for px in x0 as u32..=x1 as u32 {
                let at = (py as usize * self.width as usize + px as usize) * 3;
                self.data[at..at + 3].copy_from_slice(&colour);
            }
        }
    }

    /// A line `width` pixels wide from `a` to `b` (continuous coordinates).
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), width: f64, colour: [u8; 3]) {
        let finite = |p: (f64, f64)| p.0.is_finite() && p.1.is_finite();
        if !finite(a) || !finite(b) {
            return;
        }
        // Only the part on the canvas (and no loop over millions of steps for far-off points).
        let margin = width + 1.0;
        let Some((a, b)) = clip(
            a,
            b,
            (-margin, -margin),
            (
                f64::from(self.width) + margin,
                f64::from(self.height) + margin,
            ),
        ) else {
            return;
        };
        let length = (b.0 - a.0).hypot(b.1 - a.1);
        let steps = (length * 2.0).ceil().max(1.0) as usize;
        let half = width / 2.0;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            self.stamp(a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t, half, colour);
        }
    }

    pub fn png(&self) -> Result<Vec<u8>, ThumbnailError> {
        super::png_bytes(
            &self.data,
            self.width,
            self.height,
            image::ExtendedColorType::Rgb8,
        )
    }
}

/// The part of segment a–b inside the rectangle lo–hi (Liang–Barsky), if any.
fn clip(
    a: (f64, f64),
    b: (f64, f64),
    lo: (f64, f64),
    hi: (f64, f64),
) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - lo.0),
        (dx, hi.0 - a.0),
        (-dy, a.1 - lo.1),
        (dy, hi.1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some((
        (a.0 + dx * t0, a.1 + dy * t0),
        (a.0 + dx * t1, a.1 + dy * t1),
    ))
}

/// Width of overlay lines for a thumbnail whose longest side is `side`.
pub(crate) fn line_width(side: u32) -> f64 {
    f64::from((side / 128).max(1))
}

// ---- geometry -----------------------------------------------------------------------------------

pub(crate) type Vec3 = [f64; 3];

pub(crate) fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub(crate) fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn normalise(a: Vec3) -> Option<Vec3> {
    let n = dot(a, a).sqrt();
    (n.is_finite() && n > 1e-9).then(|| [a[0] / n, a[1] / n, a[2] / n])
}

/// An image plane in patient coordinates (mm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plane {
    /// Centre of the first transmitted pixel (Image Position (Patient)).
    pub origin: Vec3,
    /// Direction of increasing column index (first triplet of Image Orientation (Patient)).
    pub row_dir: Vec3,
    /// Direction of increasing row index (second triplet).
    pub col_dir: Vec3,
    /// Distance between the centres of adjacent rows, mm (first value of Pixel Spacing).
    pub row_spacing: f64,
    /// Distance between the centres of adjacent columns, mm (second value of Pixel Spacing).
    pub col_spacing: f64,
}

impl Plane {
    /// The plane of frame `frame` (0-based) of `obj`: top-level attributes, else the Plane
    /// Position / Plane Orientation / Pixel Measures functional groups.
    pub fn of_frame(obj: &InMemDicomObject, frame: u32) -> Option<Plane> {
        let origin = frame_attr(
            obj,
            frame,
            tags::PLANE_POSITION_SEQUENCE,
            tags::IMAGE_POSITION_PATIENT,
        )
        .and_then(floats)
        .filter(|v| v.len() >= 3)?;
        let orientation = frame_attr(
            obj,
            frame,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        )
        .and_then(floats)
        .filter(|v| v.len() >= 6)?;
        let spacing = frame_attr(
            obj,
            frame,
            tags::PIXEL_MEASURES_SEQUENCE,
            tags::PIXEL_SPACING,
        )
        .and_then(floats)
        .filter(|v| v.len() >= 2 && v[0] > 0.0 && v[1] > 0.0)?;
        let row_dir = normalise([orientation[0], orientation[1], orientation[2]])?;
        let col_dir = normalise([orientation[3], orientation[4], orientation[5]])?;
        // Orthogonal enough to be a plane.
        if dot(row_dir, col_dir).abs() > 0.01 {
            return None;
        }
        Some(Plane {
            origin: [origin[0], origin[1], origin[2]],
            row_dir,
            col_dir,
            row_spacing: spacing[0],
            col_spacing: spacing[1],
        })
    }

    pub fn normal(&self) -> Vec3 {
        cross(self.row_dir, self.col_dir)
    }

    /// (column, row) of a patient point, pixel centres at whole numbers.
    pub fn pixel_of(&self, p: Vec3) -> (f64, f64) {
        let d = sub(p, self.origin);
        (
            dot(d, self.row_dir) / self.col_spacing,
            dot(d, self.col_dir) / self.row_spacing,
        )
    }

    /// The patient point at (column, row).
    pub fn patient_of(&self, col: f64, row: f64) -> Vec3 {
        let (x, y) = (col * self.col_spacing, row * self.row_spacing);
        [
            self.origin[0] + self.row_dir[0] * x + self.col_dir[0] * y,
            self.origin[1] + self.row_dir[1] * x + self.col_dir[1] * y,
            self.origin[2] + self.row_dir[2] * x + self.col_dir[2] * y,
        ]
    }

    /// Signed distance of `p` from the plane along its normal, mm.
    pub fn distance(&self, p: Vec3) -> f64 {
        dot(sub(p, self.origin), self.normal())
    }

    /// Whether `other` is parallel to this plane.
    pub fn parallel(&self, other: &Plane) -> bool {
        dot(self.normal(), other.normal()).abs() > 0.999
    }
}

/// Slice thickness of frame `frame`, else the spacing between slices.
pub(crate) fn slice_thickness(obj: &InMemDicomObject, frame: u32) -> Option<f64> {
    [tags::SLICE_THICKNESS, tags::SPACING_BETWEEN_SLICES]
        .into_iter()
        .find_map(|tag| {
            frame_attr(obj, frame, tags::PIXEL_MEASURES_SEQUENCE, tag)
                .and_then(floats)
                .and_then(|v| v.first().copied())
                .filter(|t| *t > 0.0)
        })
}

// ---- the source image ---------------------------------------------------------------------------

/// The source image as [`super::render_instance`] draws it, in RGB, with what the overlays need
/// to line up with it.
pub(crate) struct Source {
    pub sop_instance_uid: Option<String>,
    /// 0-based index of the frame drawn.
    pub frame: u32,
    /// Whether the source has more than one frame (then references must name the frame).
    pub multi_frame: bool,
    pub rows: u32,
    pub cols: u32,
    pub plane: Option<Plane>,
    pub thickness: Option<f64>,
    pub frame_of_reference: Option<String>,
    /// The picture, at the thumbnail's size.
    pub canvas: Canvas,
}

impl Source {
    pub fn render(file: &[u8], opts: &ThumbnailOptions) -> Result<Source, ThumbnailError> {
        let obj = decode::parse(file)?;
        Self::render_object(&obj, opts)
    }

    pub fn render_object(obj: &Obj, opts: &ThumbnailOptions) -> Result<Source, ThumbnailError> {
        Self::render_frame(obj, None, opts)
    }

    /// [`Source::render_object`] for frame `frame` (0-based) of a multi-frame image instead of
    /// its middle one (`None`).
    pub fn render_frame(
        obj: &Obj,
        frame: Option<u32>,
        opts: &ThumbnailOptions,
    ) -> Result<Source, ThumbnailError> {
        decode::guard("rendering the source image", || {
            let frame = decode::frame(obj, frame)?;
            let params = tone::ToneParams::from_object(obj, frame.index)?;
            let picture = tone::to_display(&frame, &params)?;
            let (width, height) =
                target_size(picture.width, picture.height, frame.aspect, opts.side());
            let picture = resize(picture, width, height)?;
            let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
            Ok(Source {
                sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID).or_else(|| {
                    let uid = obj.meta().media_storage_sop_instance_uid();
                    let uid = uid.trim_end_matches(['\0', ' ']);
                    (!uid.is_empty()).then(|| uid.to_owned())
                }),
                frame: frame.index,
                multi_frame: frames > 1,
                rows: frame.rows,
                cols: frame.cols,
                plane: Plane::of_frame(obj, frame.index),
                thickness: slice_thickness(obj, frame.index),
                frame_of_reference: text(obj, tags::FRAME_OF_REFERENCE_UID),
                canvas: Canvas::from_display(picture),
            })
        })
    }

    /// Whether a reference (SOP Instance UID, Referenced Frame Numbers) names the frame drawn.
    pub fn is_referenced(&self, uid: &str, frame_numbers: &[i64]) -> bool {
        self.sop_instance_uid.as_deref() == Some(uid)
            && (!self.multi_frame
                || frame_numbers.is_empty()
                || frame_numbers.contains(&(i64::from(self.frame) + 1)))
    }

    /// Maps output pixel centres to (column, row) of the source's pixel grid (centres at whole
    /// numbers).
    pub fn output_to_pixel(&self, x: u32, y: u32) -> (f64, f64) {
        output_to_grid(
            x,
            y,
            (self.canvas.width, self.canvas.height),
            (self.cols, self.rows),
        )
    }
}

/// (column, row) in a `grid` (columns, rows) stretched over an `output` (width, height), for the
/// centre of output pixel (x, y); pixel centres of the grid at whole numbers.
pub(crate) fn output_to_grid(x: u32, y: u32, output: (u32, u32), grid: (u32, u32)) -> (f64, f64) {
    (
        (f64::from(x) + 0.5) * f64::from(grid.0) / f64::from(output.0) - 0.5,
        (f64::from(y) + 0.5) * f64::from(grid.1) / f64::from(output.1) - 0.5,
    )
}

/// The inverse of [`output_to_grid`] for continuous positions: output coordinates (pixel
/// centres at +0.5) of a grid position.
pub(crate) fn grid_to_output(
    col: f64,
    row: f64,
    output: (u32, u32),
    grid: (u32, u32),
) -> (f64, f64) {
    (
        (col + 0.5) * f64::from(output.0) / f64::from(grid.0),
        (row + 0.5) * f64::from(output.1) / f64::from(grid.1),
    )
}

// ---- references ---------------------------------------------------------------------------------

/// The items of sequence `tag`, or none.
pub(crate) fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

/// Referenced Frame Numbers of a reference item.
pub(crate) fn frame_numbers(item: &InMemDicomObject) -> Vec<i64> {
    item.get(tags::REFERENCED_FRAME_NUMBER)
        .and_then(|e| e.to_multi_int::<i64>().ok())
        .unwrap_or_default()
}

/// The first item of (Referenced Series Sequence, and the same under Studies Containing Other
/// Referenced Instances Sequence) whose Referenced Instance Sequence names `uid`, else the only
/// series referenced: its Series Instance UID.
pub(crate) fn series_of(obj: &InMemDicomObject, uid: &str) -> Option<String> {
    let mut series: Vec<&InMemDicomObject> = items(obj, tags::REFERENCED_SERIES_SEQUENCE)
        .iter()
        .collect();
    for study in items(
        obj,
        tags::STUDIES_CONTAINING_OTHER_REFERENCED_INSTANCES_SEQUENCE,
    ) {
        series.extend(items(study, tags::REFERENCED_SERIES_SEQUENCE));
    }
    let holds = |s: &InMemDicomObject| {
        [
            tags::REFERENCED_INSTANCE_SEQUENCE,
            tags::REFERENCED_IMAGE_SEQUENCE,
        ]
        .iter()
        .flat_map(|t| items(s, *t))
        .any(|i| text(i, tags::REFERENCED_SOP_INSTANCE_UID).as_deref() == Some(uid))
    };
    let found = series.iter().find(|s| holds(s)).copied();
    let found = found.or_else(|| (series.len() == 1).then(|| series[0]))?;
    text(found, tags::SERIES_INSTANCE_UID)
}

// ---- colour -------------------------------------------------------------------------------------

/// sRGB of a DICOM CIELab value (PS3.3 C.10.7.1.1: L* 0..100 and a*, b* −128..127 scaled to
/// 0..0xFFFF), clipped to the gamut.
///
/// The reference white is D65, as used by the common writers (highdicom, dcmqi, PixelMed's
/// `ColorUtilities`, 3D Slicer), so that a colour they derived from sRGB comes back as that
/// sRGB colour.
pub(crate) fn cielab_to_srgb(value: [u16; 3]) -> [u8; 3] {
    let l = f64::from(value[0]) * 100.0 / 65535.0;
    let a = f64::from(value[1]) * 255.0 / 65535.0 - 128.0;
    let b = f64::from(value[2]) * 255.0 / 65535.0 - 128.0;
    // Lab -> XYZ (D65 white: 95.047, 100, 108.883).
    let fy = (l + 16.0) / 116.0;
    let fx = a / 500.0 + fy;
    let fz = fy - b / 200.0;
    let inverse = |t: f64| {
        let t3 = t * t * t;
        if t3 > 216.0 / 24389.0 {
            t3
        } else {
            (t - 16.0 / 116.0) * 108.0 / 841.0
        }
    };
    let (x, y, z) = (0.950_47 * inverse(fx), inverse(fy), 1.088_83 * inverse(fz));
    // XYZ -> linear sRGB -> sRGB.
    let linear = [
        3.240_6 * x - 1.537_2 * y - 0.498_6 * z,
        -0.968_9 * x + 1.875_8 * y + 0.041_5 * z,
        0.055_7 * x - 0.204_0 * y + 1.057_0 * z,
    ];
    let gamma = |c: f64| {
        let c = if c > 0.003_130_8 {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        } else {
            12.92 * c
        };
        (c * 255.0).round().clamp(0.0, 255.0) as u8
    };
    [gamma(linear[0]), gamma(linear[1]), gamma(linear[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cielab_of_primaries_comes_back() {
        // Values highdicom writes for CIELabColor.from_rgb(...).
        assert_eq!(cielab_to_srgb([34886, 53484, 50172]), [255, 0, 0]);
        // White and black.
        assert_eq!(cielab_to_srgb([65535, 32896, 32896]), [255, 255, 255]);
        assert_eq!(cielab_to_srgb([0, 32896, 32896]), [0, 0, 0]);
    }

    #[test]
    fn plane_maps_both_ways() {
        let plane = Plane {
            origin: [-10.0, -20.0, 100.0],
            row_dir: [1.0, 0.0, 0.0],
            col_dir: [0.0, 1.0, 0.0],
            row_spacing: 0.8,
            col_spacing: 0.6,
        };
        let p = plane.patient_of(10.0, 5.0);
        assert_eq!(p, [-4.0, -16.0, 100.0]);
        let (c, r) = plane.pixel_of(p);
        assert!((c - 10.0).abs() < 1e-9 && (r - 5.0).abs() < 1e-9);
        assert!((plane.distance([0.0, 0.0, 102.5]) - 2.5).abs() < 1e-9);
    }

    #[test]
    fn lines_stay_on_the_canvas() {
        let mut canvas = Canvas::filled(16, 8, 0);
        canvas.line((-1e12, 3.0), (1e12, 3.0), 2.0, [0, 255, 0]);
        canvas.line((f64::NAN, 0.0), (3.0, 3.0), 2.0, [0, 255, 0]);
        let green = |x: usize, y: usize| canvas.data[(y * 16 + x) * 3 + 1] == 255;
        assert!(green(0, 2) && green(15, 3));
        assert!(!green(5, 0) && !green(5, 6));
    }
}
