//! `bench=console`: what the framebuffer console costs, with and without its
//! shadow buffer (`console/framebuffer.rs`).
//!
//! The boot CPU prints N lines of log-like text (96 characters each) to the
//! framebuffer alone (not serial), first drawing on the framebuffer directly
//! (every scroll reads and rewrites the log region in place), then through the
//! shadow buffer in RAM (a scroll moves RAM and writes the region once; the
//! framebuffer is never read). One sample is one line: drawing its glyphs,
//! and for every ~10th line the scroll by a quarter of the region.
//!
//! Output, one line per mode:
//! `RESULT console op=line shadow=off|on width=W height=H bpp=B n=N median_ns=N
//! p99_ns=N mean_ns=N total_us=N scrolls=N scroll_us=N flushes=N flushed_kib=N flush_us=N`
//! (`scroll_us`: the region moves, on screen or in RAM; `flush_us`: copying
//! changed rectangles to the screen, shadow only). The console ends in the
//! mode it started in. After the shadowed lines the whole screen is compared
//! with the shadow: a difference (a change the dirty rectangle missed) fails
//! the benchmark.

use alloc::vec::Vec;

use super::{Bench, BenchError, Stats};
use crate::arch::tsc;
use crate::console;
use crate::time::now_ns;

/// Lines per mode.
const LINES: usize = 400;

/// Runs both modes and prints their RESULT lines.
pub(crate) fn run() -> Result<(), BenchError> {
    let Some((width, height, bpp)) = console::framebuffer_geometry() else {
        log::warn!("bench console: no framebuffer; nothing measured");
        return Ok(());
    };
    let err = |message: &str| BenchError { bench: Bench::Console, message: message.into() };
    let was = console::has_shadow();
    for shadow in [false, true] {
        console::use_shadow(shadow).map_err(err)?;
        let before = console::scroll_stats().ok_or_else(|| err("the console is busy"))?;
        let start = now_ns();
        let mut samples = Vec::with_capacity(LINES);
        for i in 0..LINES {
            let t = now_ns();
            console::print_framebuffer(format_args!(
                "bench console: line {i:4} of {LINES}, shadow {}: the quick brown fox jumps over the lazy dog 0123456789\n",
                if shadow { "on " } else { "off" }
            ));
            samples.push(now_ns() - t);
        }
        let total = now_ns() - start;
        if let Some(at) = console::shadow_mismatch() {
            return Err(err(&alloc::format!("the screen differs from the shadow buffer at byte {at}")));
        }
        let after = console::scroll_stats().ok_or_else(|| err("the console is busy"))?;
        let stats = Stats::from_samples(samples);
        crate::println!(
            "RESULT console op=line shadow={} width={width} height={height} bpp={bpp} n={} median_ns={} p99_ns={} mean_ns={} total_us={} scrolls={} scroll_us={} flushes={} flushed_kib={} flush_us={}",
            if shadow { "on" } else { "off" },
            stats.n,
            stats.median,
            stats.p99,
            total / LINES as u64,
            total / 1000,
            after.scrolls - before.scrolls,
            tsc::ticks_to_ns(after.ticks - before.ticks) / 1000,
            after.flushes - before.flushes,
            (after.flushed_bytes - before.flushed_bytes) / 1024,
            tsc::ticks_to_ns(after.flush_ticks - before.flush_ticks) / 1000,
        );
    }
    console::use_shadow(was).map_err(err)?;
    Ok(())
}
