//! The race matrix (`testbed matrix`), small: every caught row of every
//! scenario on 2 CPUs under the default exploration with two seeds the
//! scenario tests do not use, 20 s bound (the caught runs end at their first
//! corruption); every run must be caught (so this fails if the exploration
//! stopped catching a row), and the table, CSV, JSON and SVG must say so.

use testbed::matrix::{self, MatrixOptions, RowFilter};

#[test]
fn a_small_matrix_catches_every_caught_row_and_writes_its_files() {
    let out = testbed::default_testbed_dir().join("matrix-test");
    let _ = std::fs::remove_dir_all(&out);
    let o = MatrixOptions {
        smp: vec![2],
        seeds: 2,
        first_seed: 2000,
        secs: 20,
        rows: RowFilter::Caught,
        out: Some(out.clone()),
        ..Default::default()
    };
    let m = matrix::run(&o, false).unwrap_or_else(|e| panic!("the matrix did not run: {e}"));
    let table = matrix::table(&m.cells).to_string();
    println!("{table}");
    assert!(m.cells.len() >= 6, "too few caught rows: {table}");
    for c in &m.cells {
        assert_eq!(c.expected, "caught", "{table}");
        assert_eq!((c.caught, c.ok), (c.runs, c.runs), "{} on {} CPUs: not caught every run:\n{table}", c.config, c.cpus);
        assert!(c.median_catch_ms.is_some() && !c.kinds.is_empty(), "{table}");
    }
    let csv = std::fs::read_to_string(&m.csv).unwrap();
    assert_eq!(csv.lines().count(), m.runs.len() + 1, "{csv}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&m.json).unwrap()).unwrap();
    assert_eq!(json["cells"].as_array().map(Vec::len), Some(m.cells.len()));
    let svg = std::fs::read_to_string(&m.svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<circle").count() >= m.runs.len(), "the plot lacks points");
}

#[test]
fn matrix_options_are_checked_by_the_binary() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["matrix", "--smp", "1"])
        .output()
        .expect("run testbed");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--smp"), "{}", String::from_utf8_lossy(&out.stderr));
}
