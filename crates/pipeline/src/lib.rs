//! The series pipeline: what runs on a series once it is stable (thumbnails now; validation next).
//!
//! Everything here is a pure function over bytes or catalog metadata: the caller fetches the
//! files from the archive and stores what comes out.
//!
//! - [`worker`]: the scheduler and workers that `radport serve` runs over the catalog's job
//!   queue (the one part that does I/O).
//! - [`thumbnail`]: gallery thumbnails of a series as PNG ([`thumbnail::middle_instance`] picks the
//!   instance to show, [`thumbnail::render_or_placeholder`] draws it).

pub mod thumbnail;
pub mod worker;

pub use thumbnail::{
    middle_instance, render_instance, render_or_placeholder, render_placeholder, Rendered,
    ThumbnailError, ThumbnailOptions,
};
pub use thumbnail::{
    render_rtstruct_overlay, render_seg_overlay, rtstruct_source_reference, seg_source_reference,
    SegSourceRef,
};
