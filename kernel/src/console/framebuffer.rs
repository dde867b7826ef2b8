//! A text console on the boot framebuffer: the console of machines without a
//! serial port, and a second copy of crash reports on screen.
//!
//! Glyphs come from `noto-sans-mono-bitmap` (anti-aliased, one byte per pixel).
//! Scrolling moves the whole pixel buffer, which is slow under QEMU TCG: that is
//! why serial is the default console and this one is used when asked or needed.

use bootloader_api::info::{FrameBufferInfo, PixelFormat};
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

const HEIGHT: RasterHeight = RasterHeight::Size16;
const WEIGHT: FontWeight = FontWeight::Regular;
const LINE_SPACING: usize = 2;
const MARGIN: usize = 4;

/// A text console drawing into a linear framebuffer.
pub struct FrameBufferConsole {
    buffer: &'static mut [u8],
    info: FrameBufferInfo,
    x: usize,
    y: usize,
}

impl FrameBufferConsole {
    /// Wraps a framebuffer mapped at `buffer` and clears it.
    pub fn new(buffer: &'static mut [u8], info: FrameBufferInfo) -> Self {
        let console = FrameBufferConsole { buffer, info, x: MARGIN, y: MARGIN };
        console.buffer.fill(0);
        console
    }

    fn char_width() -> usize {
        get_raster_width(WEIGHT, HEIGHT)
    }

    fn line_height() -> usize {
        HEIGHT.val() + LINE_SPACING
    }

    /// Writes `text`, wrapping at the right edge and scrolling at the bottom.
    pub fn write(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                '\n' => self.newline(),
                '\r' => self.x = MARGIN,
                c => self.put(c),
            }
        }
    }

    fn newline(&mut self) {
        self.x = MARGIN;
        self.y += Self::line_height();
        if self.y + Self::line_height() + MARGIN > self.info.height {
            self.scroll();
        }
    }

    fn scroll(&mut self) {
        let row_bytes = self.info.stride * self.info.bytes_per_pixel;
        let shift = Self::line_height() * row_bytes;
        let used = self.info.height * row_bytes;
        self.buffer.copy_within(shift..used, 0);
        self.buffer[used - shift..used].fill(0);
        self.y -= Self::line_height();
    }

    fn put(&mut self, c: char) {
        if self.x + Self::char_width() + MARGIN > self.info.width {
            self.newline();
        }
        let raster = get_raster(c, WEIGHT, HEIGHT).or_else(|| get_raster('?', WEIGHT, HEIGHT));
        if let Some(raster) = raster {
            for (dy, row) in raster.rows().enumerate() {
                for (dx, &intensity) in row.iter().enumerate() {
                    self.pixel(self.x + dx, self.y + dy, intensity);
                }
            }
        }
        self.x += Self::char_width();
    }

    fn pixel(&mut self, x: usize, y: usize, intensity: u8) {
        let offset = (y * self.info.stride + x) * self.info.bytes_per_pixel;
        let color = match self.info.pixel_format {
            PixelFormat::Rgb | PixelFormat::Bgr => [intensity, intensity, intensity, 0],
            PixelFormat::U8 => [if intensity > 200 { 0xf } else { 0 }, 0, 0, 0],
            // Unknown layouts: a grey level in every byte is still readable.
            _ => [intensity, intensity, intensity, 0],
        };
        let n = self.info.bytes_per_pixel.min(4);
        if let Some(dst) = self.buffer.get_mut(offset..offset + n) {
            dst.copy_from_slice(&color[..n]);
        }
    }
}
