//! The audit trail, exported: every event radport records in its catalog's audit trail (sign-
//! ins, reads of patient data, changes, refusals, DICOM associations) turned into a DICOM Audit
//! Message (PS3.15 A.5, the IHE ATNA format, [`message`]) and sent to a syslog collector
//! ([`syslog`]: RFC 5424 over UDP, TCP or TLS).
//!
//! It hangs off the catalog as its [`radport_catalog::AuditSink`]: whatever records an event,
//! the export sees it once it is committed, and nothing that records one knows of syslog.

#![warn(missing_docs)]

pub mod message;
pub mod syslog;

pub use message::{audit_message, AuditSource};
pub use syslog::{SyslogExporter, SyslogTarget};
