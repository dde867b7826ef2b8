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
//!
//! **Shadow buffer.** Once the heap exists the console draws into a copy of
//! the screen in RAM ([`FrameBufferConsole::set_shadow`]) and, at the end of
//! every write, copies the rectangle it changed to the framebuffer
//! ([`FrameBufferConsole::flush`]). A scroll is then a move in RAM plus one
//! write of the log region: the framebuffer is never read, which matters on
//! hardware where it is uncached (reads there cost a bus round trip each).
//! Invariant: with a shadow, everything on screen outside the dirty rectangle
//! equals the shadow; the dirty rectangle is empty after every public call.

use alloc::vec::Vec;

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
pub(crate) enum Status {
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
    pub(crate) const fn background(self) -> (u8, u8, u8) {
        match self {
            Status::Running => (0, 0, 120),
            Status::Pass => (0, 160, 0),
            Status::Fail => (200, 0, 0),
        }
    }
}

/// Extra bytes of a shadow buffer, so that its copy of the screen can start
/// [`SHADOW_DELTA`] bytes (modulo this) after the framebuffer's address.
pub(crate) const SHADOW_SLACK: usize = 1 << 20;
/// Where the shadow's copy of the screen sits relative to the screen, modulo
/// [`SHADOW_SLACK`]: half of it plus 2 KiB. Copying a row from the shadow to
/// the screen then loads and stores addresses that differ in bits 11:0 (no
/// 4K-aliasing stalls of loads behind stores on real CPUs) and in the page
/// number modulo 256 (QEMU TCG's software TLB is direct-mapped with 256 or
/// more entries: pages equal modulo its size evict each other on every
/// access; measured under TCG, an aliased shadow flushed about 10 times
/// slower).
const SHADOW_DELTA: usize = SHADOW_SLACK / 2 + 2048;

const WHITE: (u8, u8, u8) = (255, 255, 255);
const BLACK: (u8, u8, u8) = (0, 0, 0);

/// Scrolling figures (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScrollStats {
    /// Region copies done.
    pub(crate) scrolls: u64,
    /// Lines moved up in total.
    pub(crate) lines: u64,
    /// TSC ticks spent copying and clearing (with a shadow: in RAM).
    pub(crate) ticks: u64,
    /// With a shadow: rectangles copied to the framebuffer.
    pub(crate) flushes: u64,
    /// With a shadow: bytes copied to the framebuffer.
    pub(crate) flushed_bytes: u64,
    /// With a shadow: TSC ticks spent copying to the framebuffer.
    pub(crate) flush_ticks: u64,
}

/// A rectangle of pixels, `x0..x1` by `y0..y1` (empty when `y0 >= y1`).
#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

impl Rect {
    const EMPTY: Rect = Rect { x0: usize::MAX, y0: usize::MAX, x1: 0, y1: 0 };

    fn is_empty(&self) -> bool {
        self.y0 >= self.y1 || self.x0 >= self.x1
    }

    fn add(&mut self, x0: usize, y0: usize, x1: usize, y1: usize) {
        self.x0 = self.x0.min(x0);
        self.y0 = self.y0.min(y0);
        self.x1 = self.x1.max(x1);
        self.y1 = self.y1.max(y1);
    }
}

/// A text console drawing into a linear framebuffer.
pub(crate) struct FrameBufferConsole {
    /// The screen.
    buffer: &'static mut [u8],
    /// The copy in RAM everything is drawn into, once there is a heap.
    shadow: Option<Vec<u8>>,
    /// Pixel bytes for the colours last drawn with.
    lut: Lut,
    /// Where the screen's copy starts in `shadow`.
    shadow_at: usize,
    /// What the shadow has that the screen does not yet.
    dirty: Rect,
    info: FrameBufferInfo,
    x: usize,
    y: usize,
    stats: ScrollStats,
}

impl FrameBufferConsole {
    /// Wraps a framebuffer mapped at `buffer` and clears it.
    pub(crate) fn new(buffer: &'static mut [u8], info: FrameBufferInfo) -> Self {
        let console = FrameBufferConsole {
            buffer,
            shadow: None,
            shadow_at: 0,
            lut: Lut::EMPTY,
            dirty: Rect::EMPTY,
            info,
            x: MARGIN,
            y: MARGIN,
            stats: ScrollStats::default(),
        };
        console.buffer.fill(0);
        console
    }

    /// The size of a shadow buffer for this screen, in bytes (the screen's
    /// size plus [`SHADOW_SLACK`]).
    pub(crate) fn shadow_len(&self) -> usize {
        self.buffer.len() + SHADOW_SLACK
    }

    /// Starts drawing into `shadow` (at least [`shadow_len`](Self::shadow_len)
    /// bytes; it receives what is on screen now, read once) and copying the
    /// changes to the screen; `None` goes back to drawing on the screen
    /// directly. Returns the shadow that was in use.
    pub(crate) fn set_shadow(&mut self, shadow: Option<Vec<u8>>) -> Option<Vec<u8>> {
        self.flush();
        let old = self.shadow.take();
        if let Some(mut shadow) = shadow
            && shadow.len() >= self.shadow_len()
        {
            let delta = (shadow.as_ptr() as usize).wrapping_sub(self.buffer.as_ptr() as usize);
            let at = SHADOW_DELTA.wrapping_sub(delta) % SHADOW_SLACK;
            shadow[at..at + self.buffer.len()].copy_from_slice(self.buffer);
            self.shadow_at = at;
            self.shadow = Some(shadow);
        }
        old
    }

    /// With a shadow: the first byte offset where the screen differs from it
    /// after a flush (`None`: they agree, or there is no shadow). A check of
    /// the dirty-rectangle bookkeeping; it reads the whole framebuffer.
    pub(crate) fn shadow_mismatch(&mut self) -> Option<usize> {
        self.flush();
        let shadow = &self.shadow.as_ref()?[self.shadow_at..self.shadow_at + self.buffer.len()];
        self.buffer.iter().zip(shadow).position(|(a, b)| a != b)
    }

    /// (width, height, bytes per pixel).
    pub(crate) fn geometry(&self) -> (usize, usize, usize) {
        (self.info.width, self.info.height, self.info.bytes_per_pixel)
    }

    /// Whether the console draws into a shadow buffer.
    pub(crate) fn has_shadow(&self) -> bool {
        self.shadow.is_some()
    }

    /// Where drawing goes: the shadow if there is one, else the screen.
    fn canvas(&mut self) -> &mut [u8] {
        match self.shadow.as_mut() {
            Some(s) => &mut s[self.shadow_at..],
            None => self.buffer,
        }
    }

    /// Notes that the shadow changed in a rectangle (nothing without one).
    fn touch(&mut self, x0: usize, y0: usize, x1: usize, y1: usize) {
        if self.shadow.is_some() {
            self.dirty.add(x0, y0, x1.min(self.info.width), y1.min(self.info.height));
        }
    }

    /// Copies the dirty rectangle from the shadow to the screen, row by row
    /// (only the changed bytes of each row: a log line is one short band).
    pub(crate) fn flush(&mut self) {
        let dirty = core::mem::replace(&mut self.dirty, Rect::EMPTY);
        let Some(shadow) = self.shadow.as_ref() else { return };
        if dirty.is_empty() {
            return;
        }
        let start = crate::arch::tsc::rdtsc();
        let bpp = self.info.bytes_per_pixel;
        let row_bytes = self.info.stride * bpp;
        let (from, to) = (dirty.x0 * bpp, dirty.x1 * bpp);
        let mut bytes = 0;
        for y in dirty.y0..dirty.y1 {
            let (a, b) = (y * row_bytes + from, (y * row_bytes + to).min(self.buffer.len()));
            if a < b {
                self.buffer[a..b].copy_from_slice(&shadow[self.shadow_at + a..self.shadow_at + b]);
                bytes += b - a;
            }
        }
        self.stats.flushes += 1;
        self.stats.flushed_bytes += bytes as u64;
        self.stats.flush_ticks += crate::arch::tsc::rdtsc().wrapping_sub(start);
    }

    /// The same framebuffer under a new mapping (the kernel's, replacing the
    /// bootloader's): the text on screen and the position are kept.
    pub(crate) fn remap(self, buffer: &'static mut [u8], info: FrameBufferInfo) -> Self {
        if info.width != self.info.width || info.height != self.info.height || info.stride != self.info.stride {
            return FrameBufferConsole::new(buffer, info);
        }
        let mut old = self;
        old.flush();
        FrameBufferConsole { buffer, shadow: old.shadow, shadow_at: old.shadow_at, lut: Lut::EMPTY, dirty: Rect::EMPTY, info, x: old.x, y: old.y, stats: old.stats }
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
    pub(crate) fn stats(&self) -> ScrollStats {
        self.stats
    }

    /// Writes `text` into the log region, wrapping at the right edge and
    /// scrolling (by jumps) at the band.
    pub(crate) fn write(&mut self, text: &str) {
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
        self.flush();
    }

    /// Draws the status band: `text` (cut at the screen's width) on the
    /// colour of `status`.
    pub(crate) fn set_status(&mut self, status: Status, text: &str) {
        let top = self.band_top();
        let bg = status.background();
        self.fill_rows(top, self.info.height, bg);
        let mut x = MARGIN;
        for c in text.chars().filter(|c| !c.is_control()) {
            if x + Self::char_width() + MARGIN > self.info.width {
                break;
            }
            self.glyph(c, x, top + BAND_PAD, WHITE, bg);
            x += Self::char_width();
        }
        self.flush();
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
        let canvas = self.canvas();
        if shift < end {
            canvas.copy_within(shift..end, 0);
            canvas[end - shift..end].fill(0);
        } else {
            canvas[..end].fill(0);
        }
        self.touch(0, 0, self.info.width, self.band_top());
        self.y -= jump * Self::line_height();
        self.stats.scrolls += 1;
        self.stats.lines += jump as u64;
        self.stats.ticks += crate::arch::tsc::rdtsc().wrapping_sub(start);
    }

    /// Draws `c` with its top left corner at (`x0`, `y0`): each glyph row is
    /// built in a small buffer from the colour table and stored with one copy.
    fn glyph(&mut self, c: char, x0: usize, y0: usize, fg: (u8, u8, u8), bg: (u8, u8, u8)) {
        let Some(raster) = get_raster(c, WEIGHT, HEIGHT).or_else(|| get_raster('?', WEIGHT, HEIGHT)) else {
            return;
        };
        if x0 >= self.info.width || y0 >= self.info.height {
            return;
        }
        if (self.lut.fg, self.lut.bg) != (fg, bg) || !self.lut.valid {
            self.lut = Lut::new(fg, bg, |rgb| self.encode(rgb));
        }
        let width = raster.width().min(self.info.width - x0).min(MAX_GLYPH_WIDTH);
        let height = raster.height().min(self.info.height - y0);
        self.touch(x0, y0, x0 + width, y0 + height);
        let bpp = self.info.bytes_per_pixel.min(4);
        let stride_bytes = self.info.stride * self.info.bytes_per_pixel;
        let mut row_bytes = [0u8; MAX_GLYPH_WIDTH * 4];
        for (dy, row) in raster.rows().take(height).enumerate() {
            for (dx, &i) in row.iter().take(width).enumerate() {
                row_bytes[dx * bpp..dx * bpp + bpp].copy_from_slice(&self.lut.bytes[usize::from(i)][..bpp]);
            }
            let offset = (y0 + dy) * stride_bytes + x0 * self.info.bytes_per_pixel;
            if let Some(dst) = self.canvas().get_mut(offset..offset + width * bpp) {
                dst.copy_from_slice(&row_bytes[..width * bpp]);
            }
        }
    }

    /// The bytes of colour (r, g, b) in the framebuffer's pixel format.
    fn encode(&self, (r, g, b): (u8, u8, u8)) -> [u8; 4] {
        match self.info.pixel_format {
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
        }
    }

    /// Fills rows `y0..y1` of the whole width with colour `rgb`: the first
    /// row pixel by pixel, the others copied from it.
    fn fill_rows(&mut self, y0: usize, y1: usize, rgb: (u8, u8, u8)) {
        let y1 = y1.min(self.info.height);
        if y0 >= y1 {
            return;
        }
        self.touch(0, y0, self.info.width, y1);
        let color = self.encode(rgb);
        let bpp = self.info.bytes_per_pixel;
        let n = bpp.min(4);
        let stride_bytes = self.info.stride * bpp;
        let row_len = self.info.width * bpp;
        let canvas = self.canvas();
        let first = y0 * stride_bytes;
        let Some(row) = canvas.get_mut(first..first + row_len) else { return };
        for px in row.chunks_exact_mut(bpp) {
            px[..n].copy_from_slice(&color[..n]);
        }
        for y in y0 + 1..y1 {
            let at = y * stride_bytes;
            if at + row_len <= canvas.len() {
                canvas.copy_within(first..first + row_len, at);
            }
        }
    }
}

/// The widest glyph drawn (the font's 16-pixel size is 7 pixels wide).
const MAX_GLYPH_WIDTH: usize = 32;

/// The framebuffer bytes of every blend of a foreground and a background
/// colour by a glyph's 256 intensity levels (built when the colours change).
struct Lut {
    valid: bool,
    fg: (u8, u8, u8),
    bg: (u8, u8, u8),
    bytes: [[u8; 4]; 256],
}

impl Lut {
    const EMPTY: Lut = Lut { valid: false, fg: (0, 0, 0), bg: (0, 0, 0), bytes: [[0; 4]; 256] };

    fn new(fg: (u8, u8, u8), bg: (u8, u8, u8), encode: impl Fn((u8, u8, u8)) -> [u8; 4]) -> Lut {
        let mut bytes = [[0; 4]; 256];
        for (i, b) in bytes.iter_mut().enumerate() {
            let i = i as u16;
            let mix = |f: u8, b: u8| ((u16::from(f) * i + u16::from(b) * (255 - i)) / 255) as u8;
            *b = encode((mix(fg.0, bg.0), mix(fg.1, bg.1), mix(fg.2, bg.2)));
        }
        Lut { valid: true, fg, bg, bytes }
    }
}
