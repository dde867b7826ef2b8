//! The race matrix (`testbed matrix`), small: the machinery end to end
//! (rows listed by the kernel, one bounded boot per seed running two rows
//! one after the other, `--boot-per-row` with both exploration modes,
//! table, CSV, JSON and SVG), and the exploration's catch power:
//! `gup.recheck:off,tlb:nmi` (a DMA loss: the reference taken after KSM's
//! check) under `explore=auto` on 2 CPUs with two seeds the scenario tests do
//! not use must be caught in every run. That row is rarely caught by the
//! natural race (`explore=off`, README "The race matrix"), so this fails if
//! the exploration stops catching it. `ksm.no_flush` (a lost user write,
//! caught within a second either way) runs after it in the same boots, and
//! again with both exploration modes, one boot per run, for the
//! side-by-side plot. Every row's catch is asserted by
//! `boot/tests/scenario.rs`; a matrix of every row takes many minutes here
//! and is a host run (README "The race matrix").

use testbed::matrix::{self, MatrixOptions, RowFilter};

/// Caught by the exploration only: explore=auto.
const EXPLORED: &str = "gup.recheck:off,tlb:nmi";
/// Caught either way: both exploration modes.
const BOTH: &str = "ksm.no_flush:on";

fn small(configs: &[&str], seeds: u32, secs: u64, explore: Vec<bool>, boot_per_row: bool, out: &std::path::Path) -> matrix::MatrixReport {
    let o = MatrixOptions {
        smp: vec![2],
        seeds,
        first_seed: 2000,
        secs,
        scenario: Some("ksm-vs-gupfast".to_string()),
        configs: configs.iter().map(|c| c.to_string()).collect(),
        rows: RowFilter::Caught,
        explore,
        out: Some(out.to_path_buf()),
        boot_per_row,
        ..Default::default()
    };
    matrix::run(&o, false).unwrap_or_else(|e| panic!("the matrix did not run: {e}"))
}

fn assert_caught_every_run(m: &matrix::MatrixReport, runs: usize) -> String {
    let table = matrix::table(&m.cells).to_string();
    println!("{table}");
    assert_eq!(m.runs.len(), runs, "{table}");
    for c in &m.cells {
        assert_eq!(c.expected, "caught", "{table}");
        assert_eq!((c.caught, c.ok), (c.runs, c.runs), "{} on {} CPUs: not caught every run:\n{table}", c.config, c.cpus);
        assert!(c.median_catch_ms.is_some() && !c.kinds.is_empty(), "{table}");
    }
    table
}

#[test]
fn a_small_matrix_catches_its_rows_and_writes_its_files() {
    let out = testbed::default_testbed_dir().join("matrix-test");
    let _ = std::fs::remove_dir_all(&out);
    // The exploration's catch: explore=auto only, two seeds, each a boot
    // running both rows. A run ends at its first corruption (1-3 s on a
    // quiet host); the bound is for a loaded one (2-10 s there at a load of
    // 17, one seed 12.9 s).
    let m = small(&[EXPLORED, BOTH], 2, 30, vec![true], false, &out.join("explored"));
    let table = assert_caught_every_run(&m, 4);
    assert!(m.cells.iter().all(|c| c.explore), "{table}");
    assert!(
        m.cells.iter().filter(|c| c.config == EXPLORED).all(|c| c.kinds == ["dma"]),
        "a GUP-side row loses DMA writes:\n{table}"
    );
    assert!(m.cells.iter().any(|c| c.config == BOTH && c.kinds.iter().any(|k| k == "write")), "ksm.no_flush loses user writes:\n{table}");
    // The machinery with both exploration modes side by side, one boot per run.
    let m = small(&[BOTH], 1, 20, vec![true, false], true, &out.join("both"));
    let table = assert_caught_every_run(&m, 2);
    for explore in [true, false] {
        assert!(
            m.cells.iter().any(|c| c.config == BOTH && c.explore == explore),
            "no cell for {BOTH} with explore={explore}:\n{table}"
        );
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
