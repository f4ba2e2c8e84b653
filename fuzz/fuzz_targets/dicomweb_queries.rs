//! What a DICOMweb client hands radport before anything is read (crates/dicomweb): a QIDO-RS
//! query string (`qido::parse`, which checks every matching key's value as the catalog's search
//! reads it), `Accept` headers (`media::accept`, `multipart_transfer_syntax`) and a frame list
//! of a WADO-RS path (`frames::parse_frame_list`).
//!
//! Input: a selector byte, then the text (lossy UTF-8); a query string is `&`-separated
//! `key=value` pairs.
//!
//! Contract: no panic; a parsed query asks for at most `qido::MAX_LIMIT` answers and has no
//! matching key below its level; a frame list has 1 to `MAX_FRAMES_PER_REQUEST` frames, none 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_dicomweb::frames::{parse_frame_list, MAX_FRAMES_PER_REQUEST};
use radport_dicomweb::{media, qido, Level, Scope, Target};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 3 {
        0 => {
            let level = [Level::Study, Level::Series, Level::Instance][(selector / 3 % 3) as usize];
            let params: Vec<(String, String)> = text
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), String::new()),
                })
                .collect();
            let target = Target {
                study: (selector & 0x80 != 0).then(|| "1.2.3".to_string()),
                ..Target::default()
            };
            if let Ok(query) = qido::parse(level, &target, &params, Scope::All) {
                assert!(query.search.limit <= qido::MAX_LIMIT);
                for c in &query.search.conditions {
                    assert!(
                        c.attribute.level() <= level
                            || c.attribute == radport_catalog::search::Attribute::ModalitiesInStudy,
                        "{c:?} below {level:?}"
                    );
                }
            }
        }
        1 => {
            let ranges = media::accept(&[&text]);
            assert!(!ranges.is_empty());
            let _ = media::multipart_transfer_syntax(&ranges, &["application/dicom"]);
            let _ = media::accepts_json(&ranges);
        }
        _ => {
            if let Ok(frames) = parse_frame_list(&text) {
                assert!(!frames.is_empty() && frames.len() <= MAX_FRAMES_PER_REQUEST);
                assert!(frames.iter().all(|n| *n >= 1));
            }
        }
    }
});
