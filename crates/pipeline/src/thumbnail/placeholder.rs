//! Placeholder cards for objects that have no picture or cannot be drawn.

use image::ExtendedColorType;

use super::font::{wrap, Canvas, GLYPH};
use super::{png_bytes, ThumbnailOptions};

const BACKGROUND: u8 = 40;
const BORDER: u8 = 110;
const TITLE: u8 = 245;
const SUBTITLE: u8 = 200;

/// A clear placeholder PNG, `max_side` × `max_side` grey, for objects that cannot be rendered:
/// a large `title` (e.g. the modality, "SR") and a word-wrapped `subtitle` (e.g. "Comprehensive SR
/// Storage" or "cannot render: JPEG-LS codec missing"), drawn with an embedded 8×8 bitmap font
/// (16 px glyphs at 256 px). Text that does not fit is cut with "...".
pub fn render_placeholder(title: &str, subtitle: &str, opts: &ThumbnailOptions) -> Vec<u8> {
    let side = opts.side() as usize;
    let mut canvas = Canvas::new(side, side, BACKGROUND);
    let margin = (side / 16).max(1);
    let thickness = (side / 128).max(1);
    if side > 4 * margin {
        canvas.frame_rect(
            margin / 2,
            margin / 2,
            side - margin,
            side - margin,
            thickness,
            BORDER,
        );
    }
    let inner = side.saturating_sub(2 * margin);

    let title = title.trim();
    let title = if title.is_empty() { "?" } else { title };
    let title_len = title.chars().count();
    let title_scale = (inner / (GLYPH * title_len.max(1))).clamp(1, (side / 64).max(1));
    let title_chars = (inner / (GLYPH * title_scale)).max(1);
    let title_line = wrap(title, title_chars, 1)
        .into_iter()
        .next()
        .unwrap_or_default();
    let title_h = GLYPH * title_scale;

    let sub_scale = (side / 128).max(1);
    let line_h = (GLYPH + 3) * sub_scale;
    let gap = GLYPH * sub_scale;
    let sub_chars = (inner / (GLYPH * sub_scale)).max(1);
    let room = side.saturating_sub(2 * margin + title_h + gap);
    let max_lines = (room / line_h).max(1);
    let lines = wrap(subtitle, sub_chars, max_lines);

    let block = title_h
        + if lines.is_empty() {
            0
        } else {
            gap + lines.len() * line_h
        };
    let mut y = side.saturating_sub(block) / 2;
    canvas.draw_centered(&title_line, y, title_scale, TITLE);
    y += title_h + gap;
    for line in &lines {
        canvas.draw_centered(line, y, sub_scale, SUBTITLE);
        y += line_h;
    }
    png_bytes(
        &canvas.pixels,
        side as u32,
        side as u32,
        ExtendedColorType::L8,
    )
    .unwrap_or_default()
}
