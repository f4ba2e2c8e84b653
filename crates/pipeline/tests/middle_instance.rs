//! Choosing the representative instance of a series from catalog DICOM JSON.

use radport_pipeline::thumbnail::middle_instance;
use serde_json::{json, Value};

fn instance(
    position: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
    number: Option<i64>,
) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("00080060".into(), json!({"vr": "CS", "Value": ["MR"]}));
    if let Some(p) = position {
        obj.insert("00200032".into(), json!({"vr": "DS", "Value": p}));
    }
    if let Some(o) = orientation {
        obj.insert("00200037".into(), json!({"vr": "DS", "Value": o}));
    }
    if let Some(n) = number {
        obj.insert("00200013".into(), json!({"vr": "IS", "Value": [n]}));
    }
    Value::Object(obj)
}

/// An oblique stack: row direction (0.8, 0.6, 0), column direction (0, 0, -1), normal
/// (-0.6, 0.8, 0). Slice k sits at origin + 3k·normal, shifted within its plane along the column
/// direction by a varying amount, so that sorting by z (or by x, or by InstanceNumber, which is
/// scrambled on purpose) would pick another slice.
fn oblique_stack() -> (Vec<Value>, usize) {
    let row = [0.8, 0.6, 0.0];
    let col = [0.0, 0.0, -1.0];
    let normal = [-0.6, 0.8, 0.0];
    let orientation = [row[0], row[1], row[2], col[0], col[1], col[2]];
    let shifts = [40.0, -25.0, 10.0, 55.0, -60.0, 5.0, 30.0];
    let numbers = [7, 3, 1, 6, 2, 5, 4];
    // Input order: a shuffle of slice indexes 0..7.
    let order = [4usize, 0, 6, 2, 5, 1, 3];
    let mut instances = Vec::new();
    let mut expected = usize::MAX;
    for (input_index, &k) in order.iter().enumerate() {
        let d = 3.0 * k as f64;
        let s = shifts[k];
        let p = [
            10.0 + d * normal[0] + s * col[0] + 0.5 * s * row[0],
            -20.0 + d * normal[1] + s * col[1] + 0.5 * s * row[1],
            100.0 + d * normal[2] + s * col[2] + 0.5 * s * row[2],
        ];
        instances.push(instance(Some(p), Some(orientation), Some(numbers[k])));
        if k == 3 {
            expected = input_index;
        }
    }
    (instances, expected)
}

#[test]
fn middle_by_position_along_an_oblique_normal() {
    let (instances, expected) = oblique_stack();
    assert_eq!(middle_instance(&instances), Some(expected));
    // Sanity: neither z order nor InstanceNumber order gives that answer.
    let by_z = {
        let mut idx: Vec<usize> = (0..instances.len()).collect();
        idx.sort_by(|a, b| {
            let z = |i: usize| instances[i]["00200032"]["Value"][2].as_f64().unwrap_or(0.0);
            z(*a).total_cmp(&z(*b))
        });
        idx[idx.len() / 2]
    };
    assert_ne!(by_z, expected);
    let mut no_positions: Vec<Value> = instances.clone();
    for v in &mut no_positions {
        v.as_object_mut().map(|o| o.remove("00200032"));
    }
    assert_ne!(middle_instance(&no_positions), Some(expected));
}

#[test]
fn positions_as_strings_and_orientation_from_another_instance() {
    let (mut instances, expected) = oblique_stack();
    for (i, v) in instances.iter_mut().enumerate() {
        let obj = v.as_object_mut().expect("object");
        // DS values as strings, as some writers produce.
        let p: Vec<Value> = obj["00200032"]["Value"]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| Value::String(format!("{:.4}", x.as_f64().unwrap_or(0.0))))
            .collect();
        obj.insert("00200032".into(), json!({"vr": "DS", "Value": p}));
        // Only the first instance keeps its orientation.
        if i > 0 {
            obj.remove("00200037");
        }
    }
    assert_eq!(middle_instance(&instances), Some(expected));
}

#[test]
fn without_positions_by_instance_number() {
    let numbers: [i32; 5] = [5, 1, 4, 2, 3];
    let instances: Vec<Value> = numbers
        .iter()
        .map(|n| instance(None, None, Some(i64::from(*n))))
        .collect();
    // Sorted by number: 1 2 3 4 5 -> the middle is number 3, at input index 4.
    assert_eq!(middle_instance(&instances), Some(4));

    // Positions without any orientation: also by InstanceNumber.
    let instances: Vec<Value> = numbers
        .iter()
        .map(|n| instance(Some([0.0, 0.0, -f64::from(*n)]), None, Some(i64::from(*n))))
        .collect();
    assert_eq!(middle_instance(&instances), Some(4));
}

#[test]
fn without_anything_the_middle_of_the_input() {
    let instances: Vec<Value> = (0..6).map(|_| instance(None, None, None)).collect();
    assert_eq!(middle_instance(&instances), Some(3));
    // One instance lacking its number: input order.
    let mut some = vec![
        instance(None, None, Some(9)),
        instance(None, None, Some(1)),
        instance(None, None, None),
    ];
    assert_eq!(middle_instance(&some), Some(1));
    some.truncate(1);
    assert_eq!(middle_instance(&some), Some(0));
    assert_eq!(middle_instance(&[]), None);
    // Not even objects: still an index, no panic.
    assert_eq!(
        middle_instance(&[json!(null), json!([1, 2]), json!("x")]),
        Some(1)
    );
}
