//! The DIMSE command-set decoder (`radport_dimse::command::Command::decode`) on arbitrary bytes:
//! what the receiver does with the PDVs of a command set.
//!
//! Contract: no panic escapes (the DICOM parser runs under `catch_unwind` behind the prescan);
//! the parser allocates nothing beyond what the bytes hold; and a decoded command answered
//! with `Response::encode` decodes back to the response field and the same UIDs (what the
//! sender matches its response by).
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_dimse::command::{field, Command, Response};
use radport_fuzz::{assert_allocates_at_most, honest};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

fuzz_target!(init: radport_fuzz::allow_caught_panics(), |data: &[u8]| {
    let decoded = assert_allocates_at_most("Command::decode", honest(data.len()), || {
        Command::decode(data)
    });
    let Ok(command) = decoded else { return };
    let response = Response {
        request_field: command.field,
        message_id: command.message_id,
        sop_class_uid: command.affected_sop_class_uid.clone(),
        sop_instance_uid: command.affected_sop_instance_uid.clone(),
        status: 0xC000,
        error_comment: Some("fuzz".into()),
        has_data_set: false,
        counts: None,
    };
    let answer = Command::decode(&response.encode())
        .unwrap_or_else(|e| panic!("our own response to {command:?} does not decode: {e}"));
    assert_eq!(answer.field, command.field | field::RESPONSE);
    assert!(!answer.has_data_set);
    assert_eq!(
        answer.affected_sop_class_uid, command.affected_sop_class_uid,
        "the response names another SOP class"
    );
    assert_eq!(
        answer.affected_sop_instance_uid, command.affected_sop_instance_uid,
        "the response names another SOP instance"
    );
});
