//! End to end: `GET /api/series/{uid}/instances/{sop}/rendered`, the frames of the series page's
//! slice viewer, drawn by the pipeline's renderer that `radport serve` plugs into the API.

use crate::common::*;
use radport_testkit::{
    multi_frame_sop_uid, series_uid, sop_uid, write_multi_frame, write_series, SeriesSpec,
};
use serde_json::Value;

fn get(server: &Server, path: &str) -> reqwest::blocking::Response {
    reqwest::blocking::get(server.url(path)).expect("GET")
}

fn png_of(r: reqwest::blocking::Response) -> image::GrayImage {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    image::load_from_memory(&r.bytes().unwrap())
        .expect("a PNG")
        .to_luma8()
}

fn error_of(r: reqwest::blocking::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = r.json().expect("JSON");
    body["error"]
        .as_str()
        .expect("an error message")
        .to_string()
}

/// Pixels brighter than the background (the disc, whose radius changes along the series).
fn bright(image: &image::GrayImage) -> usize {
    image.pixels().filter(|p| p[0] > 100).count()
}

#[test]
fn rendered_frames_of_a_series() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // 128 columns × 64 rows, square pixels: a 2:1 picture.
    let spec = SeriesSpec {
        count: 5,
        rows: 64,
        columns: 128,
        uid_seed: "811".into(),
        ..Default::default()
    };
    write_series(tmp.path(), &spec).unwrap();
    assert!(server
        .dcmsend("kp-preview", "kp-admin", tmp.path())
        .status
        .success());
    let series = series_uid(&spec);
    let url = |i: usize, query: &str| {
        format!(
            "/api/series/{series}/instances/{}/rendered{query}",
            sop_uid(&spec, i)
        )
    };

    // The size asked for, on the longest side; windowed like the thumbnail.
    let r = get(&server, &url(0, "?size=200"));
    assert_eq!(r.headers()["cache-control"], "private, max-age=3600");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let first = png_of(r);
    assert_eq!((first.width(), first.height()), (200, 100));
    assert!(first.get_pixel(100, 50)[0] > 140, "the disc in the centre");
    assert!(first.get_pixel(2, 2)[0] < 10, "air is black");
    // Default size 512; frame 1 is the only frame of a single-frame instance.
    let default = png_of(get(&server, &url(0, "")));
    assert_eq!((default.width(), default.height()), (512, 256));
    assert_eq!(png_of(get(&server, &url(0, "?frame=1&size=200"))), first);
    // Another slice is another picture: the disc grows along the series.
    let last = png_of(get(&server, &url(4, "?size=200")));
    assert!(
        bright(&last) > bright(&first) + 100,
        "slice 5 ({}) vs slice 1 ({})",
        bright(&last),
        bright(&first)
    );

    // Caching: the same frame revalidates to 304; another size or slice has another tag.
    let again = reqwest::blocking::Client::new()
        .get(server.url(&url(0, "?size=200")))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    for other in [url(0, "?size=201"), url(1, "?size=200")] {
        assert_ne!(
            get(&server, &other).headers()["etag"].to_str().unwrap(),
            etag
        );
    }

    // Out of bounds: a clear 400.
    for (query, words) in [
        ("?frame=2", "frame must be between 1 and 1"),
        ("?frame=0", "frame must be between 1 and 1"),
        ("?size=8", "size must be between 16 and 2048"),
        ("?size=4096", "size must be between 16 and 2048"),
        ("?size=big", "frame and size are positive integers"),
        ("?frame=-1", "frame and size are positive integers"),
    ] {
        let message = error_of(get(&server, &url(0, query)), 400);
        assert!(message.contains(words), "{query}: {message}");
    }
    // Unknown instance, unknown series, an instance of another series: 404 with a reason.
    let message = error_of(
        get(
            &server,
            &format!("/api/series/{series}/instances/1.2.3.4/rendered"),
        ),
        404,
    );
    assert!(message.contains("1.2.3.4"), "{message}");
    let message = error_of(
        get(
            &server,
            &format!("/api/series/1.2.3/instances/{}/rendered", sop_uid(&spec, 0)),
        ),
        404,
    );
    assert!(message.contains("1.2.3"), "{message}");
}

#[test]
fn rendered_frames_of_a_multi_frame_instance() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let spec = SeriesSpec {
        count: 3,
        uid_seed: "812".into(),
        ..Default::default()
    };
    // One instance holding the three slices as frames.
    write_multi_frame(&tmp.path().join("mf"), &spec).unwrap();
    let sop = multi_frame_sop_uid(&spec);
    assert!(server
        .dcmsend("kp-preview", "kp-admin", &tmp.path().join("mf"))
        .status
        .success());
    let path = format!(
        "/api/series/{}/instances/{sop}/rendered?size=64",
        series_uid(&spec)
    );

    // Without a frame: the middle one, as the thumbnail shows it.
    let middle = png_of(get(&server, &path));
    assert_eq!(png_of(get(&server, &format!("{path}&frame=2"))), middle);
    assert!(error_of(get(&server, &format!("{path}&frame=4")), 400).contains("between 1 and 3"));
    // Every frame can be stepped through: each is its own slice.
    let frames: Vec<_> = (1..=3)
        .map(|f| png_of(get(&server, &format!("{path}&frame={f}"))))
        .collect();
    assert_eq!(frames[1], middle);
    assert_ne!(frames[0], frames[1], "frame 1 is not the middle one");
    assert_ne!(frames[2], frames[1], "frame 3 is not the middle one");
    assert_ne!(frames[0], frames[2]);
}

fn rgb_of(r: reqwest::blocking::Response) -> image::RgbImage {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    image::load_from_memory(&r.bytes().unwrap())
        .expect("a PNG")
        .to_rgb8()
}

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()[name].to_str().unwrap().to_string()
}

/// A segmentation's frames are its source slices, listed in slice order by `/segmentation` and
/// each drawn by `/rendered` over the CT slice it references: alone on dark (and revalidated
/// every time) while that CT is not in the archive, over it (and cached) once it arrives.
#[test]
fn rendered_segmentation_frames_over_their_source_slices() {
    use radport_testkit::seg::seg_square;
    use radport_testkit::{seg_series_uid, seg_sop_uid, write_seg, SegSpec};

    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let ct = SeriesSpec {
        count: 5,
        uid_seed: "813".into(),
        ..Default::default()
    };
    // Frames on slices 3, 1 and 4, in that order.
    let seg = SegSpec {
        source: ct.clone(),
        slices: vec![3, 1, 4],
        claimed_frames: None,
        uid_seed: "814".into(),
    };
    write_seg(&tmp.path().join("seg"), &seg).unwrap();
    assert!(server
        .dcmsend("kp-preview", "kp-admin", &tmp.path().join("seg"))
        .status
        .success());
    let base = format!(
        "/api/series/{}/instances/{}",
        seg_series_uid(&seg),
        seg_sop_uid(&seg)
    );
    let listing = format!("{base}/segmentation");

    // Before the CT: the slices along z, their sources not stored.
    let r = get(&server, &listing);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), "private, no-cache");
    let waiting_tag = header(&r, "etag");
    let body: Value = r.json().unwrap();
    assert_eq!(body["number_of_frames"], 3);
    assert_eq!(body["segments"][0]["label"], "Square");
    assert_eq!(body["segments"][0]["colour"], "#e6194b");
    let slices = body["slices"].as_array().unwrap();
    let frames: Vec<u64> = slices
        .iter()
        .map(|s| s["frame"].as_u64().unwrap())
        .collect();
    assert_eq!(frames, vec![2, 1, 3], "by position: slices 1, 3, 4");
    for (slice, k) in slices.iter().zip([1, 3, 4]) {
        assert_eq!(slice["source"]["sop_instance_uid"], sop_uid(&ct, k));
        assert_eq!(slice["source"]["series_instance_uid"], series_uid(&ct));
        assert_eq!(slice["source"]["stored"], false);
        assert!(slice["source"]["instance_number"].is_null());
        assert_eq!(slice["position"], k as f64);
    }
    // The square of slice 1 (frame 2), and the middle of the CT's disc.
    let ((r0, r1), (c0, c1)) = seg_square(&seg, 1);
    let inside = (((c0 + c1) / 2) as u32, ((r0 + r1) / 2) as u32);
    let centre = (32, 32);
    let frame2 = format!("{base}/rendered?frame=2&size=64");
    let r = get(&server, &frame2);
    assert_eq!(header(&r, "cache-control"), "private, no-cache");
    let alone_tag = header(&r, "etag");
    let alone = rgb_of(r);
    let p = alone.get_pixel(inside.0, inside.1).0;
    assert!(p[0] > p[1] + 50, "the segment in colour: {p:?}");
    assert_eq!(
        alone.get_pixel(centre.0, centre.1).0,
        [32, 32, 32],
        "on dark"
    );

    // The CT arrives: the slices are drawn over it.
    write_series(&tmp.path().join("ct"), &ct).unwrap();
    assert!(server
        .dcmsend("kp-preview", "kp-admin", &tmp.path().join("ct"))
        .status
        .success());
    let r = get(&server, &listing);
    assert_eq!(header(&r, "cache-control"), "private, max-age=3600");
    assert_ne!(header(&r, "etag"), waiting_tag);
    let body: Value = r.json().unwrap();
    for (slice, k) in body["slices"].as_array().unwrap().iter().zip([1, 3, 4]) {
        assert_eq!(slice["source"]["stored"], true);
        assert_eq!(slice["source"]["instance_number"], k + 1);
    }
    let r = get(&server, &frame2);
    assert_eq!(header(&r, "cache-control"), "private, max-age=3600");
    let over_tag = header(&r, "etag");
    assert_ne!(over_tag, alone_tag);
    let over = rgb_of(r);
    let p = over.get_pixel(inside.0, inside.1).0;
    assert!(p[0] > p[1] + 50, "the segment in colour: {p:?}");
    let c = over.get_pixel(centre.0, centre.1).0;
    assert!(
        c[0] == c[1] && c[1] == c[2] && c[0] > 100,
        "the CT's disc: {c:?}"
    );
    // Another slice is another picture; the same one revalidates to 304.
    assert_ne!(
        rgb_of(get(&server, &format!("{base}/rendered?frame=3&size=64"))),
        over
    );
    let again = reqwest::blocking::Client::new()
        .get(server.url(&frame2))
        .header("if-none-match", &over_tag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    for query in ["?frame=0", "?frame=4"] {
        let message = error_of(get(&server, &format!("{base}/rendered{query}")), 400);
        assert!(message.contains("between 1 and 3"), "{query}: {message}");
    }

    // A CT instance has no segmentation slices; an unknown instance is not found.
    let message = error_of(
        get(
            &server,
            &format!(
                "/api/series/{}/instances/{}/segmentation",
                series_uid(&ct),
                sop_uid(&ct, 0)
            ),
        ),
        404,
    );
    assert!(message.contains("not a segmentation"), "{message}");
    let message = error_of(
        get(
            &server,
            &format!(
                "/api/series/{}/instances/1.2.3.4/segmentation",
                seg_series_uid(&seg)
            ),
        ),
        404,
    );
    assert!(message.contains("1.2.3.4"), "{message}");
}

/// Hostile segmentations: one claiming a million frames, one whose sources are nowhere. Clear
/// answers, no panic, the server goes on.
#[test]
fn hostile_segmentations_get_clear_answers() {
    use radport_testkit::{seg_series_uid, seg_sop_uid, write_seg, SegSpec};

    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let absent = SeriesSpec {
        count: 3,
        uid_seed: "816".into(),
        ..Default::default()
    };
    let million = SegSpec {
        source: absent.clone(),
        slices: vec![0],
        claimed_frames: Some(1_000_000),
        uid_seed: "817".into(),
    };
    let orphan = SegSpec {
        source: absent.clone(),
        slices: vec![0, 1, 2],
        claimed_frames: None,
        uid_seed: "818".into(),
    };
    for (spec, dir) in [(&million, "million"), (&orphan, "orphan")] {
        write_seg(&tmp.path().join(dir), spec).unwrap();
        assert!(server
            .dcmsend("kp-preview", "kp-admin", &tmp.path().join(dir))
            .status
            .success());
    }
    let base = |spec: &SegSpec| {
        format!(
            "/api/series/{}/instances/{}",
            seg_series_uid(spec),
            seg_sop_uid(spec)
        )
    };

    // A million frames claimed, one there: the listing is refused, frames are placeholders or
    // out of range.
    let message = error_of(
        get(&server, &format!("{}/segmentation", base(&million))),
        422,
    );
    assert!(message.contains("too many frames"), "{message}");
    for frame in [1, 999_999] {
        png_of_any(get(
            &server,
            &format!("{}/rendered?frame={frame}&size=32", base(&million)),
        ));
    }
    let message = error_of(
        get(
            &server,
            &format!("{}/rendered?frame=1000001", base(&million)),
        ),
        400,
    );
    assert!(message.contains("between 1 and 1000000"), "{message}");

    // Sources nowhere: listed as not stored, drawn alone.
    let body = server.get_json(&format!("{}/segmentation", base(&orphan)));
    assert_eq!(body["slices"].as_array().unwrap().len(), 3);
    assert!(body["slices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["source"]["stored"] == false));
    for frame in 1..=3 {
        let r = get(
            &server,
            &format!("{}/rendered?frame={frame}&size=32", base(&orphan)),
        );
        assert_eq!(r.headers()["cache-control"], "private, no-cache");
        png_of_any(r);
    }
    assert_eq!(server.get_status("/api/health").0, 200);
}

fn png_of_any(r: reqwest::blocking::Response) {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    image::load_from_memory(&r.bytes().unwrap()).expect("a PNG");
}
