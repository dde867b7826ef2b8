//! Judging a run from the screen, as a user without a serial port would:
//! `testbed --usb` boots the image from an emulated USB stick (xHCI +
//! usb-storage), with `-serial none` and no `isa-debug-exit`, takes
//! screendumps through QEMU's human monitor (a Unix socket in the run
//! directory) every [`POLL`], and reads the kernel's status band, the bottom
//! [`BAND_ROWS`] pixel rows: green is a pass, red a failure (the kernel's
//! `console::Status`), anything else still running. No OCR: only the colour.
//! At the end QEMU writes the screen as a PNG (`screendump -f png`), kept in
//! the run directory or where `--screenshot` says.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the screen is looked at.
pub const POLL: Duration = Duration::from_secs(2);
/// The status band's height in pixels (the kernel's 16-pixel font plus 4
/// pixels above and below).
pub const BAND_ROWS: usize = 24;

/// An RGB image (from a PPM screendump).
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// `width * height` RGB triples, row by row.
    pub rgb: Vec<u8>,
}

/// Reads a binary PPM (`P6`, maxval 255): QEMU's default screendump format.
pub fn parse_ppm(data: &[u8]) -> Result<Image, String> {
    // Header: "P6" then width, height, maxval as whitespace-separated
    // numbers (no comments in QEMU's output), then one whitespace byte.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err("truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).into_owned());
    }
    i += 1;
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("not an 8-bit binary PPM (magic {}, maxval {})", fields[0], fields[3]));
    }
    let num = |s: &str| s.parse::<usize>().map_err(|_| format!("bad PPM size '{s}'"));
    let (width, height) = (num(&fields[1])?, num(&fields[2])?);
    let rgb = data.get(i..i + width * height * 3).ok_or("truncated PPM pixels")?.to_vec();
    Ok(Image { width, height, rgb })
}

/// What the status band shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Band {
    /// Mostly green.
    Pass,
    /// Mostly red.
    Fail,
    /// Neither (running, or no band at all yet: firmware, bootloader).
    Other,
}

/// Classifies the bottom [`BAND_ROWS`] rows: green or red when at least half
/// of their pixels are (the glyphs on it are white-ish, the rest background).
pub fn judge(img: &Image) -> Band {
    let rows = BAND_ROWS.min(img.height);
    let (mut green, mut red, mut total) = (0usize, 0usize, 0usize);
    for y in img.height - rows..img.height {
        for x in 0..img.width {
            let p = &img.rgb[(y * img.width + x) * 3..][..3];
            let (r, g, b) = (p[0], p[1], p[2]);
            total += 1;
            if g >= 128 && r < 64 && b < 64 {
                green += 1;
            } else if r >= 128 && g < 64 && b < 64 {
                red += 1;
            }
        }
    }
    if total > 0 && green * 2 >= total {
        Band::Pass
    } else if total > 0 && red * 2 >= total {
        Band::Fail
    } else {
        Band::Other
    }
}

/// Sends one command to QEMU's human monitor at `socket` and waits for the
/// next prompt.
pub fn monitor(socket: &Path, command: &str) -> io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let prompt = |s: &mut UnixStream| -> io::Result<()> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"(qemu) ") {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QEMU monitor closed"));
            }
            seen.extend_from_slice(&buf[..n]);
        }
        Ok(())
    };
    prompt(&mut s)?;
    s.write_all(format!("{command}\n").as_bytes())?;
    prompt(&mut s)
}

/// Takes a screendump (PPM) to `path` and reads it.
pub fn screendump(socket: &Path, path: &Path) -> Result<Image, String> {
    let _ = std::fs::remove_file(path);
    monitor(socket, &format!("screendump {}", path.display())).map_err(|e| format!("QEMU monitor: {e}"))?;
    let data = std::fs::read(path).map_err(|e| format!("screendump {}: {e}", path.display()))?;
    parse_ppm(&data)
}

/// Writes the screen as a PNG (QEMU's own `screendump -f png`).
pub fn screendump_png(socket: &Path, path: &Path) -> Result<(), String> {
    let abs = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    monitor(socket, &format!("screendump {} -f png", abs.display())).map_err(|e| format!("QEMU monitor: {e}"))?;
    if abs.is_file() { Ok(()) } else { Err(format!("QEMU wrote no PNG at {}", abs.display())) }
}

/// The state a screen watcher keeps between polls.
pub struct Watcher {
    pub socket: PathBuf,
    pub shot: PathBuf,
    last: Option<Instant>,
    /// The last judgement and when the band was first seen green or red.
    pub band: Band,
    pub errors: Vec<String>,
}

impl Watcher {
    pub fn new(dir: &Path) -> Self {
        Watcher { socket: dir.join("monitor.sock"), shot: dir.join("screen.ppm"), last: None, band: Band::Other, errors: Vec::new() }
    }

    /// Called often; looks at the screen every [`POLL`]. Returns the band
    /// once it is green or red.
    pub fn poll(&mut self, now: Instant) -> Option<Band> {
        if self.last.is_some_and(|t| now.duration_since(t) < POLL) {
            return None;
        }
        self.last = Some(now);
        if !self.socket.exists() {
            return None;
        }
        match screendump(&self.socket, &self.shot) {
            Ok(img) => {
                self.band = judge(&img);
                (self.band != Band::Other).then_some(self.band)
            }
            Err(e) => {
                if self.errors.len() < 5 {
                    self.errors.push(e);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, band: (u8, u8, u8)) -> Vec<u8> {
        let mut data = format!("P6\n{w} {h}\n255\n").into_bytes();
        for y in 0..h {
            for x in 0..w {
                let px = if y >= h - BAND_ROWS && x % 10 != 0 { band } else { (255, 255, 255) };
                data.extend_from_slice(&[px.0, px.1, px.2]);
            }
        }
        data
    }

    #[test]
    fn band_colours() {
        let img = parse_ppm(&image(64, 48, (0, 160, 0))).unwrap();
        assert_eq!((img.width, img.height), (64, 48));
        assert_eq!(judge(&img), Band::Pass);
        assert_eq!(judge(&parse_ppm(&image(64, 48, (200, 0, 0))).unwrap()), Band::Fail);
        assert_eq!(judge(&parse_ppm(&image(64, 48, (0, 0, 120))).unwrap()), Band::Other);
        assert_eq!(judge(&parse_ppm(&image(64, 48, (0, 0, 0))).unwrap()), Band::Other);
    }

    #[test]
    fn bad_ppm() {
        assert!(parse_ppm(b"P3\n1 1\n255\n").is_err());
        assert!(parse_ppm(b"P6\n2 2\n255\n\0\0\0").is_err());
        assert!(parse_ppm(b"P6\n2").is_err());
    }
}
