//! radport's end-to-end tests, as one test binary (ripgrep's layout): a real `radport serve`
//! driven by the users' own tools. One module per area; `common` is the shared harness.

mod common;

mod access;
mod accounts;
mod api_contract;
mod audit_export;
mod browser;
mod cluster;
mod crash_recovery;
mod dicom_tls;
mod dicomweb;
mod distributed;
mod durability;
mod erasure;
mod hostile;
mod hostile_dimse;
mod hostile_http;
mod hostile_imports;
mod job_isolation;
mod metrics;
mod nifti_import;
mod oidc;
mod phi_logs;
mod pipeline;
mod preview;
mod query_retrieve;
mod receiver;
mod uploads;
mod workflows;
