//! The race matrix (`testbed matrix`), tiny: the machinery end to end
//! (rows listed by the kernel, one bounded boot per run, both exploration
//! modes, table, CSV, JSON and SVG) on the two caught rows that are caught
//! within a second with or without exploration (`ksm.no_flush`, a lost user
//! write; `uprobes:legacy`, a DMA loss), 2 CPUs, two seeds the scenario tests
//! do not use. Whether the exploration catches every row is the scenario
//! tests' assertion (`boot/tests/scenario.rs`); a matrix of every row takes
//! many minutes here and is a host run (README "The race matrix").

use testbed::matrix::{self, MatrixOptions, RowFilter};

const CONFIGS: [&str; 2] = ["ksm.no_flush:on", "uprobes:legacy"];

#[test]
fn a_small_matrix_catches_its_rows_and_writes_its_files() {
    let out = testbed::default_testbed_dir().join("matrix-test");
    let _ = std::fs::remove_dir_all(&out);
    let o = MatrixOptions {
        smp: vec![2],
        seeds: 2,
        first_seed: 2000,
        secs: 20,
        configs: CONFIGS.iter().map(|c| c.to_string()).collect(),
        rows: RowFilter::Caught,
        explore: vec![true, false],
        out: Some(out.clone()),
        ..Default::default()
    };
    let m = matrix::run(&o, false).unwrap_or_else(|e| panic!("the matrix did not run: {e}"));
    let table = matrix::table(&m.cells).to_string();
    println!("{table}");
    assert_eq!(m.runs.len(), CONFIGS.len() * 2 * 2, "runs: 2 rows x 2 seeds x 2 exploration modes:\n{table}");
    for config in CONFIGS {
        for explore in [true, false] {
            assert!(
                m.cells.iter().any(|c| c.config == config && c.explore == explore),
                "no cell for {config} with explore={explore}:\n{table}"
            );
        }
    }
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
