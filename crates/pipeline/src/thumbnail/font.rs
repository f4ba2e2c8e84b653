//! Text drawn with the public-domain 8×8 bitmap font of `font8x8` (no system fonts at run time).

use font8x8::legacy::BASIC_LEGACY;

/// Width and height of a glyph cell at scale 1.
pub(crate) const GLYPH: usize = 8;

/// A grey canvas, row by row.
pub(crate) struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: u8) -> Self {
        Self {
            width,
            height,
            pixels: vec![background; width * height],
        }
    }

    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, value: u8) {
        for row in y..(y + h).min(self.height) {
            let start = row * self.width;
            for col in x..(x + w).min(self.width) {
                self.pixels[start + col] = value;
            }
        }
    }

    /// An unfilled rectangle `thickness` pixels wide.
    pub fn frame_rect(
        &mut self,
        x: usize,
        y: usize,
        w: usize,
        h: usize,
        thickness: usize,
        value: u8,
    ) {
        self.fill_rect(x, y, w, thickness, value);
        self.fill_rect(x, (y + h).saturating_sub(thickness), w, thickness, value);
        self.fill_rect(x, y, thickness, h, value);
        self.fill_rect((x + w).saturating_sub(thickness), y, thickness, h, value);
    }

    /// Draws `text` (ASCII; anything else shows as '?') with its top-left corner at (x, y).
    pub fn draw_text(&mut self, text: &str, x: usize, y: usize, scale: usize, value: u8) {
        for (i, c) in text.chars().enumerate() {
            let code = if (' '..='~').contains(&c) {
                c as usize
            } else {
                '?' as usize
            };
            let glyph = BASIC_LEGACY[code];
            let gx = x + i * GLYPH * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..GLYPH {
                    if bits >> col & 1 == 1 {
                        self.fill_rect(gx + col * scale, y + row * scale, scale, scale, value);
                    }
                }
            }
        }
    }

    /// Draws `text` centred horizontally on the canvas.
    pub fn draw_centered(&mut self, text: &str, y: usize, scale: usize, value: u8) {
        let w = text.chars().count() * GLYPH * scale;
        let x = self.width.saturating_sub(w) / 2;
        self.draw_text(text, x, y, scale, value);
    }
}

/// Splits `text` into lines of at most `width` characters, breaking at spaces where possible;
/// at most `max_lines` lines, the last one ending in "..." when text was cut.
pub(crate) fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = current.chars().count();
            let sep = usize::from(used > 0);
            if used + sep + word.len() <= width {
                if sep == 1 {
                    current.push(' ');
                }
                current.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut current));
                continue;
            }
            // A word longer than a line: hard break.
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines.max(1));
        if let Some(last) = lines.last_mut() {
            let mut chars: Vec<char> = last.chars().collect();
            chars.truncate(width.saturating_sub(3));
            *last = chars.into_iter().collect::<String>() + "...";
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_and_cuts_long_words() {
        assert_eq!(
            wrap("Comprehensive SR Storage", 14, 5),
            ["Comprehensive", "SR Storage"]
        );
        assert_eq!(wrap("abcdefghij", 4, 5), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one two three four", 9, 2), ["one two", "three..."]);
        assert!(wrap("   ", 10, 3).is_empty());
    }

    #[test]
    fn glyphs_are_drawn_left_to_right() {
        let mut canvas = Canvas::new(16, 8, 0);
        canvas.draw_text("|", 0, 0, 1, 255);
        let lit: Vec<usize> = (0..16)
            .filter(|x| canvas.pixels[2 * 16 + x] == 255)
            .collect();
        assert!(!lit.is_empty() && lit.iter().all(|x| *x < 8), "{lit:?}");
    }
}
