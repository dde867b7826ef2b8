//! RESULT lines of both kernels lined up: parsing, row identity (as the
//! peer's `compare.sh`), ratios, and the table, CSV and JSON forms.
//!
//! A line `RESULT <bench> key=value ...` belongs to the row named by the
//! bench and its identifying words (`ID_KEYS`, in the order the line has
//! them, as `compare.sh` builds them); every other `key=value` is a metric.
//! When one file has two lines of the same row, the last one wins (as in
//! `compare.sh`). The ratio of a metric is ours / Linux.

use std::fmt::Write as _;

use serde::Serialize;

/// The keys that identify a row (`compare.sh`'s list, in its order).
pub const ID_KEYS: [&str; 11] =
    ["op", "backing", "remote_cpus", "mib", "source", "pages_per_call", "cpus", "targets", "name", "control", "flush"];

/// The metrics shown per bench (`compare.sh`'s headline metrics).
pub fn headline(bench: &str) -> &'static [&'static str] {
    match bench {
        "shootdown" => &["median_ns", "mean_ns", "delta_median_ns"],
        "gup_fast" => &["get_ns_per_page", "put_ns_per_page", "get_slope_ns_per_page", "pin_unpin_slope_ns_per_page"],
        "ksm_merge" => &["t_first_merge_ms", "t_all_merged_ms", "merge_rate_pages_per_s"],
        "collapse" => &["median_us", "mean_us", "fails"],
        "pin_vs_collapse" => &["iters", "corruptions", "sentinel_errors", "collapses_ok", "collapses_eagain"],
        _ => &[],
    }
}

/// Whether a larger value of `metric` is better (rates, counts of work done);
/// otherwise smaller is (times, failures).
pub fn higher_is_better(metric: &str) -> bool {
    metric.ends_with("_per_s") || matches!(metric, "iters" | "collapses_ok")
}

/// One `RESULT` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultLine {
    pub bench: String,
    /// The identifying words, in line order.
    pub id: Vec<(String, String)>,
    /// Every other `key=value`, in line order.
    pub metrics: Vec<(String, String)>,
}

impl ResultLine {
    /// Parses one line (`\r` and surrounding blanks ignored); `None` unless it
    /// is `RESULT <bench> ...`.
    pub fn parse(line: &str) -> Option<ResultLine> {
        let mut words = line.trim().split_whitespace();
        if words.next()? != "RESULT" {
            return None;
        }
        let bench = words.next()?.to_string();
        let (mut id, mut metrics) = (Vec::new(), Vec::new());
        for w in words {
            let Some((k, v)) = w.split_once('=') else { continue };
            let pair = (k.to_string(), v.to_string());
            if ID_KEYS.contains(&k) { id.push(pair) } else { metrics.push(pair) }
        }
        Some(ResultLine { bench, id, metrics })
    }

    /// The row key: `bench k=v k=v` (compare.sh's identity).
    pub fn key(&self) -> String {
        let mut s = self.bench.clone();
        for (k, v) in &self.id {
            let _ = write!(s, " {k}={v}");
        }
        s
    }

    /// The text of identifying word or metric `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.id.iter().chain(&self.metrics).rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` as a number.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }
}

/// Every `RESULT` line of a console log or `run.sh` output.
pub fn parse_results(text: &str) -> Vec<ResultLine> {
    text.lines().filter_map(ResultLine::parse).collect()
}

/// The last line of `lines` with row key `key`.
pub fn find<'a>(lines: &'a [ResultLine], key: &str) -> Option<&'a ResultLine> {
    lines.iter().rev().find(|l| l.key() == key)
}

/// One (row, metric) of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub row: String,
    pub metric: String,
    pub ours: Option<String>,
    pub linux: Option<String>,
    /// ours / Linux, when both are numbers and Linux's is not 0.
    pub ratio: Option<f64>,
    pub higher_is_better: bool,
}

/// ours / linux; `None` when either is missing or not a number, or linux is 0.
pub fn ratio(ours: Option<&str>, linux: Option<&str>) -> Option<f64> {
    let (o, l): (f64, f64) = (ours?.parse().ok()?, linux?.parse().ok()?);
    (l != 0.0 && o.is_finite() && l.is_finite()).then(|| o / l)
}

/// The table: every row key of either side (ours in their order, then the
/// peer's rows we have no line for), each headline metric either side has.
pub fn rows(ours: &[ResultLine], linux: &[ResultLine]) -> Vec<Row> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for l in ours.iter().chain(linux) {
        if headline(&l.bench).is_empty() {
            continue;
        }
        let k = l.key();
        if !keys.iter().any(|(x, _)| *x == k) {
            keys.push((k, l.bench.clone()));
        }
    }
    let mut out = Vec::new();
    for (key, bench) in keys {
        let (o, l) = (find(ours, &key), find(linux, &key));
        for metric in headline(&bench) {
            let ov = o.and_then(|x| x.get(metric)).map(str::to_string);
            let lv = l.and_then(|x| x.get(metric)).map(str::to_string);
            if ov.is_none() && lv.is_none() {
                continue;
            }
            out.push(Row {
                row: key.clone(),
                metric: metric.to_string(),
                ratio: ratio(ov.as_deref(), lv.as_deref()),
                ours: ov,
                linux: lv,
                higher_is_better: higher_is_better(metric),
            });
        }
    }
    out
}

fn cell(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_string())
}

/// The ratio as printed (two decimals; three below 0.1).
pub fn ratio_text(r: Option<f64>) -> String {
    match r {
        None => "-".to_string(),
        Some(r) if r.abs() < 0.1 => format!("{r:.3}"),
        Some(r) => format!("{r:.2}"),
    }
}

/// The markdown table (`| row | metric | ours | Linux | ours/Linux |`).
pub fn table(rows: &[Row]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::ASCII_MARKDOWN);
    t.set_header(vec!["row", "metric", "ours", "Linux", "ours/Linux"]);
    let mut last = String::new();
    for r in rows {
        let name = if r.row == last { String::new() } else { r.row.clone() };
        last = r.row.clone();
        let ratio = match (r.ratio, r.higher_is_better) {
            (Some(_), true) => format!("{} (higher is better)", ratio_text(r.ratio)),
            _ => ratio_text(r.ratio),
        };
        t.add_row(vec![name, r.metric.clone(), cell(&r.ours), cell(&r.linux), ratio]);
    }
    t
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// The table as CSV: `row,metric,ours,linux,ratio` (empty for a missing value).
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from("row,metric,ours,linux,ratio\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            csv_field(&r.row),
            csv_field(&r.metric),
            csv_field(r.ours.as_deref().unwrap_or("")),
            csv_field(r.linux.as_deref().unwrap_or("")),
            r.ratio.map_or(String::new(), |x| format!("{x:.4}")),
        );
    }
    s
}
