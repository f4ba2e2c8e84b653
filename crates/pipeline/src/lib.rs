//! The series pipeline: what runs on a series once it is stable — thumbnails (segmentations
//! and structure sets drawn over the image they refer to) and validation.
//!
//! - [`worker`]: the scheduler and workers that `radport serve` runs over the catalog's job
//!   queue (the one part that does I/O).
//! - [`thumbnail`]: pure functions over bytes: gallery thumbnails of a series as PNG
//!   ([`thumbnail::middle_instance`] picks the instance to show,
//!   [`thumbnail::render_or_placeholder`] draws it, [`thumbnail::render_seg_overlay`] and
//!   [`thumbnail::render_rtstruct_overlay`] draw derived objects over their source image).

#![warn(missing_docs)]

pub mod isolate;
pub mod thumbnail;
pub mod transcode;
pub mod worker;

pub use thumbnail::{
    middle_instance, render_instance, render_or_placeholder, render_placeholder, Rendered,
    ThumbnailError, ThumbnailOptions,
};
pub use thumbnail::{
    render_rtstruct_overlay, render_seg_overlay, rtstruct_source_reference, seg_source_reference,
    SegSourceRef,
};
