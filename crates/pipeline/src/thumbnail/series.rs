//! Choosing the instance that represents an image series.

use serde_json::Value;

const IMAGE_POSITION_PATIENT: &str = "00200032";
const IMAGE_ORIENTATION_PATIENT: &str = "00200037";
const INSTANCE_NUMBER: &str = "00200013";

/// Index of the instance to show for an image series: the middle one by position along the slice
/// normal (ImagePositionPatient · (row × column direction cosines of ImageOrientationPatient)),
/// else by InstanceNumber, else the middle of the input order. "Middle" of n is the element at
/// n / 2 after sorting; ties keep InstanceNumber order, then input order.
///
/// Input: each instance's DICOM JSON (PS3.18 F.2: keys like "00200032" holding
/// `{"vr": "DS", "Value": [..]}`, numbers or numeric strings), as stored in the catalog.
/// Positions are used only when every instance has one and an orientation is known (the
/// instance's own, else the first one found in the series); InstanceNumber only when every
/// instance has one. `None` only for an empty input.
pub fn middle_instance(instances: &[Value]) -> Option<usize> {
    let n = instances.len();
    if n == 0 {
        return None;
    }
    let instance_numbers: Option<Vec<f64>> = instances
        .iter()
        .map(|v| numbers(v, INSTANCE_NUMBER).and_then(|v| v.first().copied()))
        .collect();
    let series_normal = instances
        .iter()
        .find_map(|v| numbers(v, IMAGE_ORIENTATION_PATIENT).and_then(|o| normal(&o)));
    let positions: Option<Vec<f64>> = series_normal.and_then(|series_normal| {
        instances
            .iter()
            .map(|v| {
                let p = numbers(v, IMAGE_POSITION_PATIENT).filter(|p| p.len() >= 3)?;
                let nrm = numbers(v, IMAGE_ORIENTATION_PATIENT)
                    .and_then(|o| normal(&o))
                    .unwrap_or(series_normal);
                Some(p[0] * nrm[0] + p[1] * nrm[1] + p[2] * nrm[2])
            })
            .collect()
    });
    let mut order: Vec<usize> = (0..n).collect();
    let by_number = |a: &usize, b: &usize| match &instance_numbers {
        Some(num) => num[*a].total_cmp(&num[*b]),
        None => std::cmp::Ordering::Equal,
    };
    match (&positions, &instance_numbers) {
        (Some(pos), _) => {
            order.sort_by(|a, b| pos[*a].total_cmp(&pos[*b]).then_with(|| by_number(a, b)))
        }
        (None, Some(_)) => order.sort_by(by_number),
        (None, None) => {}
    }
    order.get(n / 2).copied()
}

/// The numeric values of attribute `key` (also tolerating lower-case keys and numeric strings).
fn numbers(instance: &Value, key: &str) -> Option<Vec<f64>> {
    let attr = instance
        .get(key)
        .or_else(|| instance.get(key.to_ascii_lowercase().as_str()))?;
    let values = attr.get("Value")?.as_array()?;
    let parsed: Option<Vec<f64>> = values
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .collect();
    parsed.filter(|v| !v.is_empty() && v.iter().all(|x| x.is_finite()))
}

/// Unit slice normal from the six direction cosines.
fn normal(orientation: &[f64]) -> Option<[f64; 3]> {
    if orientation.len() < 6 {
        return None;
    }
    let (r, c) = (&orientation[0..3], &orientation[3..6]);
    let n = [
        r[1] * c[2] - r[2] * c[1],
        r[2] * c[0] - r[0] * c[2],
        r[0] * c[1] - r[1] * c[0],
    ];
    let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    (len > 1e-6).then(|| [n[0] / len, n[1] / len, n[2] / len])
}
