//! The identifier of a C-FIND/C-GET/C-MOVE request (`radport_dimse::identifier::Query::decode`)
//! on arbitrary bytes, in the transfer syntaxes peers propose for query/retrieve contexts: what
//! the DICOM port does with the data set after such a command.
//!
//! Contract: no panic escapes (the DICOM parser runs under `catch_unwind` behind the prescan);
//! the parser allocates nothing beyond what the bytes hold; and a decoded query's answer (an
//! empty match) encodes without error and decodes again at the same level.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_catalog::search::Found;
use radport_dimse::identifier::{Model, Query};
use radport_fuzz::{assert_allocates_at_most, honest};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

const SYNTAXES: [&str; 3] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
];

fuzz_target!(init: radport_fuzz::allow_caught_panics(), |data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let ts = SYNTAXES[usize::from(selector % 3)];
    let model = if selector & 0x80 == 0 { Model::StudyRoot } else { Model::PatientRoot };
    let decoded = assert_allocates_at_most("Query::decode", honest(bytes.len()), || {
        Query::decode(bytes, ts, model)
    });
    let Ok(query) = decoded else { return };
    let answer = query
        .answer(&Found::default(), "RADPORT", ts)
        .unwrap_or_else(|e| panic!("the answer to {query:?} does not encode: {e}"));
    let again = Query::decode(&answer, ts, model)
        .unwrap_or_else(|e| panic!("our own answer to {query:?} does not decode: {e}"));
    assert_eq!(again.level, query.level, "the answer names another level");
});
