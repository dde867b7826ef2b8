//! A text console on the boot framebuffer: the console of machines without a
//! serial port, and a second copy of crash reports on screen.
//!
//! Glyphs come from `noto-sans-mono-bitmap` (anti-aliased, one byte per pixel).
//!
//! Layout: the log scrolls in the region above a **status band** at the bottom
//! (one text line on a coloured background: blue while running, green on pass,
//! red with the reason on failure). Scrolling moves only the log region, so
//! the band stays visible, and it *jumps*: when the log reaches the bottom it
//! moves up by a quarter of the region at once, so one (slow, under TCG) copy
//! of the region serves many lines instead of one. [`FrameBufferConsole::stats`]
//! counts the scrolls and the time they took (the boot prints the figure at
//! the end of a run). The band's colours are what the host's screen check
//! (`testbed --usb`) reads from a screendump.

use bootloader_api::info::{FrameBufferInfo, PixelFormat};
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

const HEIGHT: RasterHeight = RasterHeight::Size16;
const WEIGHT: FontWeight = FontWeight::Regular;
const LINE_SPACING: usize = 2;
const MARGIN: usize = 4;
/// Padding above and below the status text.
const BAND_PAD: usize = 4;

/// The status band's state (its background colour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running: dark blue.
    Running,
    /// Passed: green.
    Pass,
    /// Failed: red.
    Fail,
}

impl Status {
    /// Background (r, g, b). The host's screen check classifies these:
    /// green has g >= 128 with r, b < 64; red has r >= 128 with g, b < 64.
    pub const fn background(self) -> (u8, u8, u8) {
        match self {
            Status::Running => (0, 0, 120),
            Status::Pass => (0, 160, 0),
            Status::Fail => (200, 0, 0),
        }
    }
}

const WHITE: (u8, u8, u8) = (255, 255, 255);
const BLACK: (u8, u8, u8) = (0, 0, 0);

/// Scrolling figures (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrollStats {
    /// Region copies done.
    pub scrolls: u64,
    /// Lines moved up in total.
    pub lines: u64,
    /// TSC ticks spent copying and clearing.
    pub ticks: u64,
}

/// A text console drawing into a linear framebuffer.
pub struct FrameBufferConsole {
    buffer: &'static mut [u8],
    info: FrameBufferInfo,
    x: usize,
    y: usize,
    stats: ScrollStats,
}

impl FrameBufferConsole {
    /// Wraps a framebuffer mapped at `buffer` and clears it.
    pub fn new(buffer: &'static mut [u8], info: FrameBufferInfo) -> Self {
        let console = FrameBufferConsole { buffer, info, x: MARGIN, y: MARGIN, stats: ScrollStats::default() };
        console.buffer.fill(0);
        console
    }

    /// The same framebuffer under a new mapping (the kernel's, replacing the
    /// bootloader's): the text on screen and the position are kept.
    pub fn remap(self, buffer: &'static mut [u8], info: FrameBufferInfo) -> Self {
        if info.width != self.info.width || info.height != self.info.height || info.stride != self.info.stride {
            return FrameBufferConsole::new(buffer, info);
        }
        FrameBufferConsole { buffer, info, x: self.x, y: self.y, stats: self.stats }
    }

    fn char_width() -> usize {
        get_raster_width(WEIGHT, HEIGHT)
    }

    fn line_height() -> usize {
        HEIGHT.val() + LINE_SPACING
    }

    fn band_height() -> usize {
        HEIGHT.val() + 2 * BAND_PAD
    }

    /// The first pixel row of the status band (the log region ends there).
    fn band_top(&self) -> usize {
        self.info.height.saturating_sub(Self::band_height())
    }

    /// The scrolling figures so far.
    pub fn stats(&self) -> ScrollStats {
        self.stats
    }

    /// Writes `text` into the log region, wrapping at the right edge and
    /// scrolling (by jumps) at the band.
    pub fn write(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '\n' => self.newline(),
                '\r' => self.x = MARGIN,
                c => {
                    if self.x + Self::char_width() + MARGIN > self.info.width {
                        self.newline();
                    }
                    self.glyph(c, self.x, self.y, WHITE, BLACK);
                    self.x += Self::char_width();
                }
            }
        }
    }

    /// Draws the status band: `text` (cut at the screen's width) on the
    /// colour of `status`.
    pub fn set_status(&mut self, status: Status, text: &str) {
        let top = self.band_top();
        let bg = status.background();
        for y in top..self.info.height {
            for x in 0..self.info.width {
                self.put_pixel(x, y, bg);
            }
        }
        let mut x = MARGIN;
        for c in text.chars().filter(|c| !c.is_control()) {
            if x + Self::char_width() + MARGIN > self.info.width {
                break;
            }
            self.glyph(c, x, top + BAND_PAD, WHITE, bg);
            x += Self::char_width();
        }
    }

    fn newline(&mut self) {
        self.x = MARGIN;
        self.y += Self::line_height();
        if self.y + Self::line_height() > self.band_top() {
            self.scroll();
        }
    }

    /// Moves the log region up by a quarter of its lines (at least one).
    fn scroll(&mut self) {
        let start = crate::arch::tsc::rdtsc();
        let region_lines = (self.band_top().saturating_sub(MARGIN) / Self::line_height()).max(1);
        let jump = (region_lines / 4).max(1).min((self.y - MARGIN) / Self::line_height()).max(1);
        let row_bytes = self.info.stride * self.info.bytes_per_pixel;
        let shift = jump * Self::line_height() * row_bytes;
        let end = (self.band_top() * row_bytes).min(self.buffer.len());
        if shift < end {
            self.buffer.copy_within(shift..end, 0);
            self.buffer[end - shift..end].fill(0);
        } else {
            self.buffer[..end].fill(0);
        }
        self.y -= jump * Self::line_height();
        self.stats.scrolls += 1;
        self.stats.lines += jump as u64;
        self.stats.ticks += crate::arch::tsc::rdtsc().wrapping_sub(start);
    }

    fn glyph(&mut self, c: char, x0: usize, y0: usize, fg: (u8, u8, u8), bg: (u8, u8, u8)) {
        let raster = get_raster(c, WEIGHT, HEIGHT).or_else(|| get_raster('?', WEIGHT, HEIGHT));
        if let Some(raster) = raster {
            for (dy, row) in raster.rows().enumerate() {
                for (dx, &i) in row.iter().enumerate() {
                    let mix = |f: u8, b: u8| ((u16::from(f) * u16::from(i) + u16::from(b) * (255 - u16::from(i))) / 255) as u8;
                    self.put_pixel(x0 + dx, y0 + dy, (mix(fg.0, bg.0), mix(fg.1, bg.1), mix(fg.2, bg.2)));
                }
            }
        }
    }

    fn put_pixel(&mut self, x: usize, y: usize, (r, g, b): (u8, u8, u8)) {
        if x >= self.info.width || y >= self.info.height {
            return;
        }
        let offset = (y * self.info.stride + x) * self.info.bytes_per_pixel;
        let color = match self.info.pixel_format {
            PixelFormat::Rgb => [r, g, b, 0],
            PixelFormat::Bgr => [b, g, r, 0],
            PixelFormat::U8 => {
                let grey = ((u16::from(r) + u16::from(g) + u16::from(b)) / 3) as u8;
                [if grey > 100 { 0xf } else { 0 }, 0, 0, 0]
            }
            // Unknown layouts: a grey level in every byte is still readable.
            _ => {
                let grey = ((u16::from(r) + u16::from(g) + u16::from(b)) / 3) as u8;
                [grey, grey, grey, 0]
            }
        };
        let n = self.info.bytes_per_pixel.min(4);
        if let Some(dst) = self.buffer.get_mut(offset..offset + n) {
            dst.copy_from_slice(&color[..n]);
        }
    }
}
