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
