//! The comparison's SVG plots (plotters): the shootdown cost by number of
//! remote CPUs, the pin (and GUP-fast get) cost by backing, and the latency
//! distributions (p10, median, p90) of both kernels side by side. Ours is
//! blue, Linux red throughout.

use std::path::Path;

use plotters::prelude::*;

use super::table::{ResultLine, find};

const OURS: RGBColor = RGBColor(0x1f, 0x5f, 0xbf);
const LINUX: RGBColor = RGBColor(0xc0, 0x30, 0x30);

type PlotResult = Result<(), String>;

fn err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> String + '_ {
    move |e| format!("plot {}: {e}", path.display())
}

/// A value in microseconds: `<base>_ns` / 1000 or `<base>_us`.
fn micros(l: &ResultLine, base: &str) -> Option<f64> {
    l.num(&format!("{base}_ns")).map(|v| v / 1000.0).or_else(|| l.num(&format!("{base}_us")))
}

/// Shootdown median (whisker p10-p90) per op and remote CPU count, µs.
pub fn shootdown(ours: &[ResultLine], linux: &[ResultLine], path: &Path) -> PlotResult {
    let e = err(path);
    let ops = ["mprotect_ro", "mprotect_rw", "madv_dontneed"];
    let points = |lines: &[ResultLine], op: &str| -> Vec<(u32, f64, f64, f64)> {
        let mut v: Vec<(u32, f64, f64, f64)> = lines
            .iter()
            .filter(|l| l.bench == "shootdown" && l.get("op") == Some(op) && l.get("flush").is_none())
            .filter_map(|l| {
                let k: u32 = l.get("remote_cpus")?.parse().ok()?;
                Some((k, micros(l, "p10")?, micros(l, "median")?, micros(l, "p90")?))
            })
            .collect();
        v.sort_by_key(|p| p.0);
        v.dedup_by_key(|p| p.0);
        v
    };
    let all: Vec<(u32, f64, f64, f64)> =
        ops.iter().flat_map(|op| points(ours, op).into_iter().chain(points(linux, op))).collect();
    let kmax = all.iter().map(|p| p.0).max().unwrap_or(1).max(1);
    let ymax = all.iter().map(|p| p.2).fold(1.0f64, f64::max) * 2.5;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("one-page shootdown by remote CPUs: median, whisker p10-p90 (blue: ours, red: Linux)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(kmax as f64 + 0.5), 0f64..ymax)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(kmax as usize + 1)
        .x_label_formatter(&|x| if (x - x.round()).abs() < 0.01 { format!("{}", x.round()) } else { String::new() })
        .x_desc("remote CPUs running the process")
        .y_desc("us per call (median)")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, op) in ops.iter().enumerate() {
        let dx = (i as f64 - 1.0) * 0.12;
        // One shade per op: darker for mprotect_ro, lighter for madv_dontneed.
        let shade = |c: RGBColor| RGBColor(c.0.saturating_add(60 * i as u8), c.1.saturating_add(60 * i as u8), c.2.saturating_add(30 * i as u8));
        for (lines, colour, shift) in [(ours, shade(OURS), -0.03), (linux, shade(LINUX), 0.03)] {
            let pts = points(lines, op);
            if pts.is_empty() {
                continue;
            }
            let x = |k: u32| k as f64 + dx + shift;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    pts.iter().map(|p| (x(p.0), p.2)).collect::<Vec<_>>(),
                    colour.stroke_width(2),
                )))
                .map_err(|x| e(&x))?
                .label(format!("{} {op}", if shift < 0.0 { "ours" } else { "Linux" }))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|p| PathElement::new(vec![(x(p.0), p.1), (x(p.0), p.3)], colour.stroke_width(1))))
                .map_err(|x| e(&x))?;
            chart
                .draw_series(pts.iter().map(|p| Circle::new((x(p.0), p.2), 3 + i as u32, colour.filled())))
                .map_err(|x| e(&x))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// GUP per-page slopes by backing: pin+unpin and GUP-fast get, ours and Linux
/// side by side, ns per page.
pub fn pin(ours: &[ResultLine], linux: &[ResultLine], path: &Path) -> PlotResult {
    let e = err(path);
    let groups: Vec<(String, String, &str)> = ["4k", "thp"]
        .iter()
        .flat_map(|b| {
            [
                (format!("pin+unpin {b}"), format!("gup_fast op=pin_user_pages_fast+unpin backing={b} pages_per_call=512"), "pin_unpin_slope_ns_per_page"),
                (format!("GUP-fast get {b}"), format!("gup_fast op=get_user_pages_fast backing={b} pages_per_call=512"), "get_slope_ns_per_page"),
            ]
        })
        .collect();
    let value = |lines: &[ResultLine], key: &str, metric: &str| find(lines, key).and_then(|l| l.num(metric));
    let ymax = groups
        .iter()
        .flat_map(|(_, k, m)| [value(ours, k, m), value(linux, k, m)])
        .flatten()
        .fold(10.0f64, f64::max)
        * 1.25;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let labels: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("GUP cost per page by backing, slope of 512-page calls (blue: ours, red: Linux)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(groups.len() as f64 - 0.5), 0f64..ymax)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            labels.get(i as usize).cloned().unwrap_or_default()
        })
        .y_desc("ns per page")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (_, key, metric)) in groups.iter().enumerate() {
        for (lines, colour, x0) in [(ours, OURS, -0.35), (linux, LINUX, 0.02)] {
            let Some(v) = value(lines, key, metric) else { continue };
            let (a, b) = (i as f64 + x0, i as f64 + x0 + 0.33);
            chart.draw_series(std::iter::once(Rectangle::new([(a, 0.0), (b, v)], colour.filled()))).map_err(|x| e(&x))?;
            chart
                .draw_series(std::iter::once(Text::new(format!("{v:.0}"), (a, v + ymax * 0.02), ("sans-serif", 12))))
                .map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))
}

/// Latency distributions: for every shootdown and collapse row, p10-median-p90
/// of ours (left) and Linux (right), µs on a log scale.
pub fn latency(ours: &[ResultLine], linux: &[ResultLine], path: &Path) -> PlotResult {
    let e = err(path);
    let mut keys: Vec<String> = Vec::new();
    for l in ours.iter().chain(linux) {
        if matches!(l.bench.as_str(), "shootdown" | "collapse") && micros(l, "p10").is_some() && !keys.contains(&l.key()) {
            keys.push(l.key());
        }
    }
    let dist = |lines: &[ResultLine], k: &str| {
        let l = find(lines, k)?;
        Some((micros(l, "p10")?, micros(l, "median")?, micros(l, "p90")?))
    };
    let (mut lo, mut hi) = (f64::MAX, 1.0f64);
    for k in &keys {
        for (a, _, c) in [dist(ours, k), dist(linux, k)].into_iter().flatten() {
            lo = lo.min(a);
            hi = hi.max(c);
        }
    }
    let lo = if lo == f64::MAX { 0.1 } else { (lo / 2.0).max(0.01) };
    let width = 200 + 70 * keys.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let labels: Vec<String> = keys.iter().map(|k| k.replace("shootdown op=", "").replace("remote_cpus=", "K=")).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("p10 / median / p90 per row (blue: ours, red: Linux)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(150)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(keys.len().max(1) as f64 - 0.5), (lo..hi * 2.0).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(keys.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            labels.get(i as usize).cloned().unwrap_or_default()
        })
        .x_label_style(("sans-serif", 11).into_font().transform(FontTransform::Rotate90))
        .y_desc("us (log)")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, k) in keys.iter().enumerate() {
        for (lines, colour, dx) in [(ours, OURS, -0.15), (linux, LINUX, 0.15)] {
            let Some((p10, med, p90)) = dist(lines, k) else { continue };
            let x = i as f64 + dx;
            chart
                .draw_series([
                    PathElement::new(vec![(x, p10), (x, p90)], colour.stroke_width(2)),
                    PathElement::new(vec![(x - 0.06, p10), (x + 0.06, p10)], colour.stroke_width(2)),
                    PathElement::new(vec![(x - 0.06, p90), (x + 0.06, p90)], colour.stroke_width(2)),
                ])
                .map_err(|x| e(&x))?;
            chart.draw_series(std::iter::once(Circle::new((x, med), 4, colour.filled()))).map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))
}
