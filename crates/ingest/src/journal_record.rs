//! What ingest writes into a journal record's header: everything, besides the instance's
//! Part-10 bytes (the record's body), that redoing the instance after a crash needs.
//!
//! ```text
//! "RI1" | eight fields, each a u16 little-endian length and that many UTF-8 bytes:
//! project, dataset, source, duplicate policy, object key,
//! SOP Class UID, SOP Instance UID, transfer syntax UID (as announced)
//! ```
//!
//! Read back from a file that survived a crash (or was tampered with): every length is
//! checked against what is left before it is used.

// Public only for the fuzz target, which needs no more than the format above.
#![allow(missing_docs)]

use radport_catalog::{DuplicatePolicy, Route};

const MAGIC: &[u8; 3] = b"RI1";

/// A journal record's header (public for the fuzz target only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub route: Route,
    pub source: String,
    pub policy: DuplicatePolicy,
    pub object_key: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
}

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
#[error("journal record header: {0}")]
pub struct HeaderError(String);

impl RecordHeader {
    /// The header's bytes; `None` if a field is longer than a u16 length says.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let fields = [
            self.route.project.as_str(),
            self.route.dataset.as_str(),
            self.source.as_str(),
            self.policy.as_str(),
            self.object_key.as_str(),
            self.sop_class_uid.as_str(),
            self.sop_instance_uid.as_str(),
            self.transfer_syntax_uid.as_str(),
        ];
        let mut out = Vec::with_capacity(3 + fields.iter().map(|f| 2 + f.len()).sum::<usize>());
        out.extend_from_slice(MAGIC);
        for field in fields {
            let len = u16::try_from(field.len()).ok()?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        Some(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<RecordHeader, HeaderError> {
        let mut rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| HeaderError("not an ingest record".into()))?;
        let mut next = || -> Result<String, HeaderError> {
            let (len, tail) = rest
                .split_first_chunk::<2>()
                .ok_or_else(|| HeaderError("cut off".into()))?;
            let len = usize::from(u16::from_le_bytes(*len));
            if tail.len() < len {
                return Err(HeaderError(format!(
                    "a field of {len} bytes where {} are left",
                    tail.len()
                )));
            }
            let (field, tail) = tail.split_at(len);
            rest = tail;
            String::from_utf8(field.to_vec()).map_err(|_| HeaderError("not UTF-8".into()))
        };
        let project = next()?;
        let dataset = next()?;
        let source = next()?;
        let policy = next()?
            .parse::<DuplicatePolicy>()
            .map_err(|e| HeaderError(e.to_string()))?;
        let header = RecordHeader {
            route: Route { project, dataset },
            source,
            policy,
            object_key: next()?,
            sop_class_uid: next()?,
            sop_instance_uid: next()?,
            transfer_syntax_uid: next()?,
        };
        if !rest.is_empty() {
            return Err(HeaderError(format!(
                "{} bytes after the fields",
                rest.len()
            )));
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RecordHeader {
        RecordHeader {
            route: Route {
                project: "ward".into(),
                dataset: "kp-ds".into(),
            },
            source: "dimse:SENDER".into(),
            policy: DuplicatePolicy::OverwriteIfDifferent,
            object_key: "instances/2026/12/03/ab.dcm".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3.4".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        }
    }

    #[test]
    fn headers_round_trip() {
        let bytes = header().encode().unwrap();
        assert_eq!(RecordHeader::decode(&bytes).unwrap(), header());
    }

    #[test]
    fn every_cut_and_a_bad_length_or_policy_is_refused() {
        let bytes = header().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(RecordHeader::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RecordHeader::decode(&longer).is_err());
        // The first field's length says more than there is.
        let mut lying = bytes.clone();
        lying[3..5].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(RecordHeader::decode(&lying).is_err());
        let mut policy = header();
        policy.source = "x".repeat(70_000);
        assert!(policy.encode().is_none(), "a field beyond a u16 length");
        let mut bad = header().encode().unwrap();
        let at = bad
            .windows(22)
            .position(|w| w == b"overwrite-if-different")
            .unwrap();
        bad[at] = b'X';
        assert!(RecordHeader::decode(&bad).is_err());
    }
}
