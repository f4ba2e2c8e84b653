//! Content negotiation: what an `Accept` header allows, per PS3.18 8.7.

/// Transfer syntaxes whose pixel data are native (not encapsulated).
pub const NATIVE_TRANSFER_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
];

/// Explicit VR Little Endian: what a request without a transfer syntax asks for.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// One media range of an `Accept` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRange {
    /// `type/subtype`, lower-cased (`*/*`, `multipart/related`, …).
    pub media_type: String,
    /// The `type` parameter of a multipart range, lower-cased.
    pub part_type: Option<String>,
    /// The `transfer-syntax` parameter.
    pub transfer_syntax: Option<String>,
}

/// The media ranges of `Accept` headers (several headers, each a comma-separated list).
/// No header: `*/*`.
pub fn accept(headers: &[&str]) -> Vec<MediaRange> {
    let mut ranges = Vec::new();
    for header in headers {
        for range in split_outside_quotes(header, ',') {
            let mut pieces = split_outside_quotes(&range, ';').into_iter();
            let media_type = pieces
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if media_type.is_empty() {
                continue;
            }
            let mut part_type = None;
            let mut transfer_syntax = None;
            for param in pieces {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"').to_string();
                match name.trim().to_ascii_lowercase().as_str() {
                    "type" => part_type = Some(value.to_ascii_lowercase()),
                    "transfer-syntax" => transfer_syntax = Some(value),
                    _ => {}
                }
            }
            ranges.push(MediaRange {
                media_type,
                part_type,
                transfer_syntax,
            });
        }
    }
    if ranges.is_empty() {
        ranges.push(MediaRange {
            media_type: "*/*".into(),
            part_type: None,
            transfer_syntax: None,
        });
    }
    ranges
}

fn split_outside_quotes(s: &str, separator: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == separator && !quoted {
            out.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    out.push(current);
    out
}

/// What a multipart answer whose parts are of `part_type` may carry, if the ranges accept it:
/// `None` = refused, `Some(None)` = as stored (`transfer-syntax=*` or none named),
/// `Some(Some(ts))` = that transfer syntax.
pub fn multipart_transfer_syntax(
    ranges: &[MediaRange],
    part_types: &[&str],
) -> Option<Option<String>> {
    let mut best: Option<Option<String>> = None;
    for range in ranges {
        let matches = match range.media_type.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => range
                .part_type
                .as_deref()
                .is_none_or(|t| t == "*/*" || part_types.contains(&t)),
            _ => false,
        };
        if !matches {
            continue;
        }
        match range.transfer_syntax.as_deref() {
            None | Some("*") => return Some(None),
            Some(ts) => {
                best.get_or_insert(Some(ts.to_string()));
            }
        }
    }
    best
}

/// Whether the ranges accept DICOM JSON (`application/dicom+json`, `application/json`).
pub fn accepts_json(ranges: &[MediaRange]) -> bool {
    ranges.iter().any(|r| {
        matches!(
            r.media_type.as_str(),
            "*/*" | "application/*" | "application/dicom+json" | "application/json"
        )
    })
}

/// The media type of a frame or bulk-data part in `transfer_syntax` (PS3.18 table 8.7.3-5).
pub fn pixel_media_type(transfer_syntax: &str) -> &'static str {
    match transfer_syntax {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        "1.2.840.10008.1.2.4.100"
        | "1.2.840.10008.1.2.4.101"
        | "1.2.840.10008.1.2.4.102"
        | "1.2.840.10008.1.2.4.103"
        | "1.2.840.10008.1.2.4.104"
        | "1.2.840.10008.1.2.4.105"
        | "1.2.840.10008.1.2.4.106" => "video/mpeg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_transfer_syntaxes() {
        let r = accept(&[r#"multipart/related; type="application/dicom"; transfer-syntax=*"#]);
        assert_eq!(
            multipart_transfer_syntax(&r, &["application/dicom"]),
            Some(None)
        );
        let r = accept(&[
            "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
        ]);
        assert_eq!(
            multipart_transfer_syntax(&r, &["application/octet-stream"]),
            Some(Some("1.2.840.10008.1.2.1".into()))
        );
        assert_eq!(multipart_transfer_syntax(&r, &["application/dicom"]), None);
        assert_eq!(
            multipart_transfer_syntax(&accept(&[]), &["application/dicom"]),
            Some(None)
        );
        assert!(accepts_json(&accept(&[
            "application/dicom+json, text/html"
        ])));
        assert!(!accepts_json(&accept(&["text/html"])));
    }
}
