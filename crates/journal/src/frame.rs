//! The bytes of a segment: its header, then the frames of its records one after the other.
//!
//! ```text
//! segment header (at 0, SEGMENT_HEADER_LEN bytes; records start at SEGMENT_HEADER_BYTES)
//!   magic "RPJSEG01" | generation u64 | segment bytes u64 | check [16]
//!   (an aligned pack: magic "RPJPAK02" | generation u64 | alignment u64 | check [16]; each
//!   record starts at a multiple of the alignment, zeros between)
//! frame
//!   magic u32 | header length u32 | generation u64 | body length u64 | body hash [32]
//!   | check [16] | header | body
//! ```
//!
//! Integers are little-endian. A check is the first 16 bytes of the BLAKE3 hash of what
//! precedes it (a frame's also of its header); the body is covered by its own hash, which the
//! appender computed as the bytes arrived: BLAKE3 in a frame marked `RJPF`, XXH3-128 in one
//! marked `RJPX` (its 16 bytes, little-endian, then 16 zeros) — [`BodyHash`]. Readers take
//! both; XXH3 is about six times cheaper per byte (docs/performance.md, session 19) and a body
//! hash only has to catch a torn or damaged write. A segment whose header does not check is free; a
//! frame that does not check, or of another generation than its segment, ends the segment's
//! records (a torn write, or a record of the segment's previous use).

/// Marks a segment in use (and a pack whose records follow each other byte for byte).
const SEGMENT_MAGIC: [u8; 8] = *b"RPJSEG01";
/// Marks a pack whose records each start at a multiple of [`RECORD_ALIGN`] (written with
/// direct I/O: `pack::direct`); the header's size field holds the alignment.
const ALIGNED_PACK_MAGIC: [u8; 8] = *b"RPJPAK02";
/// Where the records of an aligned pack start: multiples of this many bytes.
pub(crate) const RECORD_ALIGN: u64 = 4096;
/// Bytes of the segment header that are written.
pub(crate) const SEGMENT_HEADER_LEN: usize = 8 + 8 + 8 + 16;
/// Where a segment's first frame starts (the header has a page of its own).
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 4096;

/// Marks a frame whose body hash is BLAKE3.
const FRAME_MAGIC: u32 = 0x4650_4A52; // "RJPF" little-endian
/// Marks a frame whose body hash is XXH3-128.
const FRAME_MAGIC_XXH3: u32 = 0x5850_4A52; // "RJPX" little-endian

/// The hash of a frame's body, in the algorithm its frame names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyHash {
    /// BLAKE3 (frames marked `RJPF`).
    Blake3([u8; 32]),
    /// XXH3-128, as `u128::to_le_bytes` (frames marked `RJPX`).
    Xxh3([u8; 16]),
}

impl From<blake3::Hash> for BodyHash {
    fn from(hash: blake3::Hash) -> Self {
        BodyHash::Blake3(*hash.as_bytes())
    }
}

impl BodyHash {
    /// The XXH3-128 hash of `chunks`, one after the other.
    pub fn xxh3_of(chunks: &[impl AsRef<[u8]>]) -> Self {
        let mut hasher = twox_hash::xxhash3_128::Hasher::new();
        for chunk in chunks {
            hasher.write(chunk.as_ref());
        }
        BodyHash::Xxh3(hasher.finish_128().to_le_bytes())
    }

    /// Whether `chunks`, one after the other, hash to this in its algorithm.
    pub fn matches(&self, chunks: &[impl AsRef<[u8]>]) -> bool {
        match self {
            BodyHash::Blake3(hash) => {
                let mut hasher = blake3::Hasher::new();
                for chunk in chunks {
                    hasher.update(chunk.as_ref());
                }
                hasher.finalize().as_bytes() == hash
            }
            BodyHash::Xxh3(_) => Self::xxh3_of(chunks) == *self,
        }
    }

    fn magic(&self) -> u32 {
        match self {
            BodyHash::Blake3(_) => FRAME_MAGIC,
            BodyHash::Xxh3(_) => FRAME_MAGIC_XXH3,
        }
    }

    fn field(&self) -> [u8; 32] {
        match self {
            BodyHash::Blake3(hash) => *hash,
            BodyHash::Xxh3(hash) => {
                let mut field = [0u8; 32];
                field[..16].copy_from_slice(hash);
                field
            }
        }
    }
}
/// Bytes of a frame before its header.
pub(crate) const FRAME_HEAD_LEN: usize = 4 + 4 + 8 + 8 + 32 + 16;

fn check(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    out
}

/// The header of a segment in use by `generation`.
pub(crate) fn segment_header(generation: u64, segment_bytes: u64) -> [u8; SEGMENT_HEADER_LEN] {
    header_with(SEGMENT_MAGIC, generation, segment_bytes)
}

/// The header of an aligned pack of `generation`.
pub(crate) fn aligned_pack_header(generation: u64) -> [u8; SEGMENT_HEADER_LEN] {
    header_with(ALIGNED_PACK_MAGIC, generation, RECORD_ALIGN)
}

/// The generation of a pack and where its records start (multiples of the alignment, 1
/// for a pack written before records were aligned), if its header checks.
pub(crate) fn parse_pack_header(bytes: &[u8; SEGMENT_HEADER_LEN]) -> Option<(u64, u64)> {
    if bytes[..8] == ALIGNED_PACK_MAGIC {
        let (generation, align) = parse_header_fields(bytes)?;
        return (align == RECORD_ALIGN).then_some((generation, align));
    }
    parse_segment_header(bytes).map(|(generation, _)| (generation, 1))
}

fn header_with(magic: [u8; 8], generation: u64, value: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..8].copy_from_slice(&magic);
    out[8..16].copy_from_slice(&generation.to_le_bytes());
    out[16..24].copy_from_slice(&value.to_le_bytes());
    let c = check(&[&out[..24]]);
    out[24..].copy_from_slice(&c);
    out
}

/// The generation and size a segment header names, if it checks.
pub(crate) fn parse_segment_header(bytes: &[u8; SEGMENT_HEADER_LEN]) -> Option<(u64, u64)> {
    if bytes[..8] != SEGMENT_MAGIC {
        return None;
    }
    parse_header_fields(bytes)
}

/// The two fields of a header whose check holds.
fn parse_header_fields(bytes: &[u8; SEGMENT_HEADER_LEN]) -> Option<(u64, u64)> {
    if check(&[&bytes[..24]]) != bytes[24..] {
        return None;
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let segment_bytes = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    Some((generation, segment_bytes))
}

/// What a frame's head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub header_len: u32,
    pub generation: u64,
    pub body_len: u64,
    pub body_hash: BodyHash,
}

/// A frame's head for `header` and a body of `body_len` bytes hashing to `body_hash`.
pub(crate) fn encode_frame_head(
    generation: u64,
    header: &[u8],
    body_len: u64,
    body_hash: &BodyHash,
) -> [u8; FRAME_HEAD_LEN] {
    let mut out = [0u8; FRAME_HEAD_LEN];
    out[..4].copy_from_slice(&body_hash.magic().to_le_bytes());
    // The caller bounds header lengths far below u32::MAX (crate::MAX_HEADER_BYTES).
    out[4..8].copy_from_slice(&(header.len() as u32).to_le_bytes());
    out[8..16].copy_from_slice(&generation.to_le_bytes());
    out[16..24].copy_from_slice(&body_len.to_le_bytes());
    out[24..56].copy_from_slice(&body_hash.field());
    let c = check(&[&out[..56], header]);
    out[56..].copy_from_slice(&c);
    out
}

/// The fields of a frame head, if its magic is there (its check needs the header:
/// [`frame_checks`]).
pub(crate) fn decode_frame_head(bytes: &[u8; FRAME_HEAD_LEN]) -> Option<FrameHead> {
    let magic = u32::from_le_bytes(bytes[..4].try_into().ok()?);
    let field = &bytes[24..56];
    let body_hash = match magic {
        FRAME_MAGIC => BodyHash::Blake3(field.try_into().ok()?),
        // One way to write each XXH3 frame: the field's second half is zeros.
        FRAME_MAGIC_XXH3 if field[16..].iter().all(|&b| b == 0) => {
            BodyHash::Xxh3(field[..16].try_into().ok()?)
        }
        _ => return None,
    };
    Some(FrameHead {
        header_len: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
        generation: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        body_len: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
        body_hash,
    })
}

/// Whether a frame head and the header read after it are what was written.
pub(crate) fn frame_checks(head: &[u8; FRAME_HEAD_LEN], header: &[u8]) -> bool {
    check(&[&head[..56], header]) == head[56..]
}

/// Bytes a frame takes; `None` if that overflows.
pub(crate) fn frame_len(header_len: usize, body_len: u64) -> Option<u64> {
    (FRAME_HEAD_LEN as u64)
        .checked_add(u64::try_from(header_len).ok()?)?
        .checked_add(body_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_headers_round_trip_and_any_changed_byte_fails_them() {
        let header = segment_header(7, 1 << 20);
        assert_eq!(parse_segment_header(&header), Some((7, 1 << 20)));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut changed = header;
            changed[i] ^= 0x40;
            assert_eq!(parse_segment_header(&changed), None, "byte {i}");
        }
        assert_eq!(parse_segment_header(&[0u8; SEGMENT_HEADER_LEN]), None);
    }

    #[test]
    fn frame_heads_round_trip_and_check_their_header() {
        let hash = BodyHash::from(blake3::hash(b"body"));
        let head = encode_frame_head(3, b"header", 4, &hash);
        let decoded = decode_frame_head(&head).unwrap();
        assert_eq!(
            decoded,
            FrameHead {
                header_len: 6,
                generation: 3,
                body_len: 4,
                body_hash: hash
            }
        );
        assert!(frame_checks(&head, b"header"));
        assert!(!frame_checks(&head, b"headex"));
        for i in 4..FRAME_HEAD_LEN {
            let mut changed = head;
            changed[i] ^= 1;
            assert!(!frame_checks(&changed, b"header"), "byte {i}");
        }
        assert_eq!(decode_frame_head(&[0u8; FRAME_HEAD_LEN]), None);
        assert_eq!(frame_len(10, u64::MAX), None);
        assert_eq!(frame_len(10, 5), Some(FRAME_HEAD_LEN as u64 + 15));
    }

    #[test]
    fn xxh3_frames_round_trip_and_name_their_algorithm() {
        let hash = BodyHash::xxh3_of(&[&b"bo"[..], b"dy"]);
        assert_eq!(
            hash,
            BodyHash::Xxh3(xxhash_rust::xxh3::xxh3_128(b"body").to_le_bytes())
        );
        assert!(hash.matches(&[b"body"]));
        assert!(!hash.matches(&[b"bodY"]));
        assert!(BodyHash::from(blake3::hash(b"body")).matches(&[b"bo", b"dy"]));
        let head = encode_frame_head(3, b"header", 4, &hash);
        assert_eq!(&head[..4], b"RJPX");
        assert_eq!(decode_frame_head(&head).unwrap().body_hash, hash);
        assert!(frame_checks(&head, b"header"));
        // A BLAKE3 frame with the same field bytes is another frame: its check fails.
        let mut relabelled = head;
        relabelled[..4].copy_from_slice(b"RJPF");
        assert!(!frame_checks(&relabelled, b"header"));
        // The unused half of the field must be zeros.
        let mut padded = head;
        padded[50] = 1;
        assert_eq!(decode_frame_head(&padded), None);
    }
}
