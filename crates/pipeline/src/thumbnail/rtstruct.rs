//! RT Structure Set (RTSTRUCT) contour overlays.

use std::collections::BTreeMap;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::decode::{self, floats, int, text, Obj};
use super::overlay::{
    cross, dot, frame_numbers, grid_to_output, items, line_width, normalise, palette_colour,
    Canvas, Source, Vec3, BACKGROUND,
};
use super::{target_size, SegSourceRef, ThumbnailError, ThumbnailOptions};

/// RT Structure Set Storage.
pub(crate) const RTSTRUCT_SOP_CLASS: &str = dicom_dictionary_std::uids::RT_STRUCTURE_SET_STORAGE;
/// Fewest millimetres shown around the contours when there is no source image.
const MIN_FIELD_MM: f64 = 20.0;
/// Slice tolerance when neither the source nor the structure set gives a thickness, mm.
const DEFAULT_THICKNESS: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Geometry {
    ClosedPlanar,
    OpenPlanar,
    OpenNonplanar,
    Point,
}

#[derive(Debug)]
struct Contour {
    colour: [u8; 3],
    frame_of_reference: Option<String>,
    geometry: Geometry,
    points: Vec<Vec3>,
    /// Contour Image Sequence: (Referenced SOP Instance UID, Referenced Frame Numbers).
    images: Vec<(String, Vec<i64>)>,
}

/// See [`super::render_rtstruct_overlay`].
pub(crate) fn render(
    rtstruct: &[u8],
    source: Option<&[u8]>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    let obj = decode::parse(rtstruct)?;
    let source = source.map(|file| Source::render(file, opts)).transpose()?;
    render_object(&obj, source, opts)
}

pub(crate) fn render_object(
    obj: &Obj,
    source: Option<Source>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    decode::guard("drawing the structure set", || {
        let contours = read(obj)?;
        let width = line_width(opts.side());
        match source {
            Some(source) => {
                let plane = source.plane.ok_or_else(|| {
                    ThumbnailError::Invalid(
                        "the source image has no patient geometry (Image Position, Image \
                         Orientation, Pixel Spacing)"
                            .into(),
                    )
                })?;
                let tolerance = source.thickness.unwrap_or(DEFAULT_THICKNESS) / 2.0;
                let mut canvas = source.canvas.clone();
                let output = (canvas.width, canvas.height);
                let grid = (source.cols, source.rows);
                for contour in &contours {
                    let on_slice = if contour.images.is_empty() {
                        let same_frame = match (
                            contour.frame_of_reference.as_deref(),
                            source.frame_of_reference.as_deref(),
                        ) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        };
                        let mean = contour
                            .points
                            .iter()
                            .map(|p| plane.distance(*p))
                            .sum::<f64>()
                            / contour.points.len() as f64;
                        same_frame && mean.abs() <= tolerance
                    } else {
                        contour
                            .images
                            .iter()
                            .any(|(uid, frames)| source.is_referenced(uid, frames))
                    };
                    if on_slice {
                        let to_output = |p: Vec3| {
                            let (c, r) = plane.pixel_of(p);
                            grid_to_output(c, r, output, grid)
                        };
                        draw(&mut canvas, contour, to_output, width);
                    }
                }
                canvas.png()
            }
            None => {
                let Some((normal, slices)) = slices(&contours) else {
                    return Err(ThumbnailError::NothingToDraw(
                        "the structure set has no contours".into(),
                    ));
                };
                let middle = &slices[slices.len() / 2];
                // In-plane axes as a viewer shows them: axial x right, y down; coronal x right,
                // z up; sagittal y right, z up.
                let (u, v) = axes(normal);
                let project = |p: Vec3| (dot(p, u), dot(p, v));
                let (mut lo, mut hi) = ((f64::MAX, f64::MAX), (f64::MIN, f64::MIN));
                for p in contours.iter().flat_map(|c| &c.points) {
                    let (a, b) = project(*p);
                    lo = (lo.0.min(a), lo.1.min(b));
                    hi = (hi.0.max(a), hi.1.max(b));
                }
                // The extent of all contours, plus a margin, at least MIN_FIELD_MM across.
                let pad = |lo: f64, hi: f64| {
                    let size = (hi - lo).max(MIN_FIELD_MM * 0.8);
                    let centre = (lo + hi) / 2.0;
                    (centre - size * 0.625, size * 1.25)
                };
                let (x0, w_mm) = pad(lo.0, hi.0);
                let (y0, h_mm) = pad(lo.1, hi.1);
                let (w, h) = target_size(
                    (w_mm * 100.0).round().max(1.0) as u32,
                    (h_mm * 100.0).round().max(1.0) as u32,
                    None,
                    opts.side(),
                );
                let mut canvas = Canvas::filled(w, h, BACKGROUND);
                let scale = (f64::from(w) / w_mm, f64::from(h) / h_mm);
                for i in &middle.contours {
                    let to_output = |p: Vec3| {
                        let (a, b) = project(p);
                        ((a - x0) * scale.0, (b - y0) * scale.1)
                    };
                    draw(&mut canvas, &contours[*i], to_output, width);
                }
                canvas.png()
            }
        }
    })
}

/// See [`super::rtstruct_source_reference`].
pub(crate) fn source_reference(rtstruct: &[u8]) -> Option<SegSourceRef> {
    let obj = decode::parse(rtstruct).ok()?;
    decode::guard("reading the structure set", || {
        let contours = read(&obj)?;
        let Some((_, slices)) = slices(&contours) else {
            return Ok(None);
        };
        let middle = &slices[slices.len() / 2];
        let Some(uid) = middle
            .contours
            .iter()
            .find_map(|i| contours[*i].images.first().map(|(uid, _)| uid.clone()))
        else {
            return Ok(None);
        };
        Ok(
            referenced_series(&obj, &uid).map(|series_uid| SegSourceRef {
                series_uid,
                sop_instance_uid: uid,
            }),
        )
    })
    .ok()
    .flatten()
}

/// Whether `obj` is an RT Structure Set (by SOP Class, else by Modality).
pub(crate) fn is_rtstruct(obj: &Obj) -> bool {
    let description = decode::describe(obj);
    match description.sop_class_uid.as_deref() {
        Some(uid) => uid == RTSTRUCT_SOP_CLASS,
        None => description.modality.as_deref() == Some("RTSTRUCT"),
    }
}

fn read(obj: &Obj) -> Result<Vec<Contour>, ThumbnailError> {
    if !is_rtstruct(obj) {
        return Err(ThumbnailError::Unsupported(format!(
            "{} as a structure set",
            decode::describe(obj).sop_class_label()
        )));
    }
    let frames_of_reference: BTreeMap<i64, String> = items(obj, tags::STRUCTURE_SET_ROI_SEQUENCE)
        .iter()
        .filter_map(|roi| {
            Some((
                int(roi, tags::ROI_NUMBER)?,
                text(roi, tags::REFERENCED_FRAME_OF_REFERENCE_UID)?,
            ))
        })
        .collect();
    let mut out = Vec::new();
    for (n, roi) in items(obj, tags::ROI_CONTOUR_SEQUENCE).iter().enumerate() {
        let number = int(roi, tags::REFERENCED_ROI_NUMBER);
        let colour = roi
            .get(tags::ROI_DISPLAY_COLOR)
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .filter(|v| v.len() == 3)
            .map(|v| [0, 1, 2].map(|i| v[i].clamp(0, 255) as u8))
            .unwrap_or_else(|| palette_colour(number.unwrap_or(n as i64 + 1)));
        let frame_of_reference = number.and_then(|n| frames_of_reference.get(&n).cloned());
        for item in items(roi, tags::CONTOUR_SEQUENCE) {
            let geometry = match text(item, tags::CONTOUR_GEOMETRIC_TYPE).as_deref() {
                Some("CLOSED_PLANAR") | None => Geometry::ClosedPlanar,
                Some("OPEN_PLANAR") => Geometry::OpenPlanar,
                Some("OPEN_NONPLANAR") => Geometry::OpenNonplanar,
                Some("POINT") => Geometry::Point,
                Some(_) => continue,
            };
            let Some(data) = item.get(tags::CONTOUR_DATA).and_then(floats) else {
                continue;
            };
            let points: Vec<Vec3> = data.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
            if points.is_empty() {
                continue;
            }
            let images = items(item, tags::CONTOUR_IMAGE_SEQUENCE)
                .iter()
                .filter_map(|r| {
                    Some((
                        text(r, tags::REFERENCED_SOP_INSTANCE_UID)?,
                        frame_numbers(r),
                    ))
                })
                .collect();
            out.push(Contour {
                colour,
                frame_of_reference: frame_of_reference.clone(),
                geometry,
                points,
                images,
            });
        }
    }
    Ok(out)
}

/// Draws a contour, mapping its points with `to_output` to output coordinates.
fn draw(
    canvas: &mut Canvas,
    contour: &Contour,
    to_output: impl Fn(Vec3) -> (f64, f64),
    width: f64,
) {
    let points: Vec<(f64, f64)> = contour.points.iter().map(|p| to_output(*p)).collect();
    match contour.geometry {
        Geometry::Point => {
            let arm = (width * 3.0).max(3.0);
            for (x, y) in points {
                canvas.line((x - arm, y), (x + arm, y), width, contour.colour);
                canvas.line((x, y - arm), (x, y + arm), width, contour.colour);
            }
        }
        geometry => {
            for pair in points.windows(2) {
                canvas.line(pair[0], pair[1], width, contour.colour);
            }
            if geometry == Geometry::ClosedPlanar && points.len() > 2 {
                canvas.line(points[points.len() - 1], points[0], width, contour.colour);
            }
            if points.len() == 1 {
                canvas.line(points[0], points[0], width, contour.colour);
            }
        }
    }
}

/// The contours grouped by slice.
struct ContourSlice {
    contours: Vec<usize>,
}

/// The contoured slices, ordered along the normal of the contours' planes, with that normal;
/// `None` when there is no contour. Contours referencing the same image form a slice; those
/// referencing none are grouped by position (to 0.01 mm).
fn slices(contours: &[Contour]) -> Option<(Vec3, Vec<ContourSlice>)> {
    if contours.is_empty() {
        return None;
    }
    let normal = contours
        .iter()
        .find_map(|c| plane_normal(&c.points))
        .map(|n| {
            // Point it along the largest positive axis, for a stable order.
            let i = (0..3)
                .max_by(|a, b| n[*a].abs().total_cmp(&n[*b].abs()))
                .unwrap_or(2);
            if n[i] < 0.0 {
                [-n[0], -n[1], -n[2]]
            } else {
                n
            }
        })
        .unwrap_or([0.0, 0.0, 1.0]);
    #[derive(PartialEq)]
    enum Key {
        Image(String, Vec<i64>),
        Position(i64),
    }
    struct Group {
        key: Key,
        contours: Vec<usize>,
        positions: Vec<f64>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for (i, contour) in contours.iter().enumerate() {
        let position = contour.points.iter().map(|p| dot(*p, normal)).sum::<f64>()
            / contour.points.len() as f64;
        let key = match contour.images.first() {
            Some((uid, frames)) => Key::Image(uid.clone(), frames.clone()),
            None => Key::Position((position * 100.0).round() as i64),
        };
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => {
                g.contours.push(i);
                g.positions.push(position);
            }
            None => groups.push(Group {
                key,
                contours: vec![i],
                positions: vec![position],
            }),
        }
    }
    let mean = |g: &Group| g.positions.iter().sum::<f64>() / g.positions.len() as f64;
    groups.sort_by(|a, b| {
        mean(a)
            .total_cmp(&mean(b))
            .then(a.contours[0].cmp(&b.contours[0]))
    });
    Some((
        normal,
        groups
            .into_iter()
            .map(|g| ContourSlice {
                contours: g.contours,
            })
            .collect(),
    ))
}

/// The unit normal of a polygon's plane (Newell's method), if the points span a plane.
fn plane_normal(points: &[Vec3]) -> Option<Vec3> {
    if points.len() < 3 {
        return None;
    }
    let mut n = [0.0; 3];
    for (i, a) in points.iter().enumerate() {
        let b = points[(i + 1) % points.len()];
        n[0] += (a[1] - b[1]) * (a[2] + b[2]);
        n[1] += (a[2] - b[2]) * (a[0] + b[0]);
        n[2] += (a[0] - b[0]) * (a[1] + b[1]);
    }
    // Zero (no plane) for collinear points.
    normalise(n)
}

/// Display axes (right, down) for a plane with normal `n`.
fn axes(n: Vec3) -> (Vec3, Vec3) {
    let (ax, ay, az) = (n[0].abs(), n[1].abs(), n[2].abs());
    let (u, v) = if az >= ax && az >= ay {
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) // axial
    } else if ay >= ax {
        ([1.0, 0.0, 0.0], [0.0, 0.0, -1.0]) // coronal
    } else {
        ([0.0, 1.0, 0.0], [0.0, 0.0, -1.0]) // sagittal
    };
    // Make u, v exactly in the plane (oblique planes).
    let v = normalise(cross(n, cross(v, n))).unwrap_or(v);
    let u = normalise(cross(v, n)).map_or(u, |w| {
        if dot(w, u) < 0.0 {
            [-w[0], -w[1], -w[2]]
        } else {
            w
        }
    });
    (u, v)
}

/// Referenced Frame of Reference → RT Referenced Study → RT Referenced Series: the series whose
/// Contour Image Sequence names `uid`, else the only series.
fn referenced_series(obj: &InMemDicomObject, uid: &str) -> Option<String> {
    let series: Vec<&InMemDicomObject> = items(obj, tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)
        .iter()
        .flat_map(|f| items(f, tags::RT_REFERENCED_STUDY_SEQUENCE))
        .flat_map(|s| items(s, tags::RT_REFERENCED_SERIES_SEQUENCE))
        .collect();
    let found = series.iter().copied().find(|s| {
        items(s, tags::CONTOUR_IMAGE_SEQUENCE)
            .iter()
            .any(|i| text(i, tags::REFERENCED_SOP_INSTANCE_UID).as_deref() == Some(uid))
    });
    let found = found.or_else(|| (series.len() == 1).then(|| series[0]))?;
    text(found, tags::SERIES_INSTANCE_UID)
}
