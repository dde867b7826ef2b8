//! `testbed compare` on recorded result files (no QEMU): the RESULT parsing,
//! the row identity shared with the peer's `compare.sh`, the ratio
//! arithmetic, the CSV/JSON/SVG outputs, and the report of ours when the
//! peer cannot run.
//!
//! Fixtures (`tests/fixtures/compare/`): `ours-tcg-smp2.txt`, RESULT lines
//! of a `compare --smp 2` run of this kernel (plus a noise line and a `\r`),
//! and `linux-tcg-smp2.txt`, the peer's `results/tcg-smp2-a.txt` without its
//! setup lines.

use std::path::PathBuf;

use testbed::compare::{self, CompareOptions, table};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compare").join(name)
}

fn lines(name: &str) -> Vec<table::ResultLine> {
    table::parse_results(&std::fs::read_to_string(fixture(name)).unwrap())
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("testbed-compare-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn result_lines_split_into_row_identity_and_metrics() {
    let l = table::ResultLine::parse(
        "RESULT gup_fast method=vmsplice op=get_user_pages_fast backing=4k thp_frac=0.00 pages_per_call=512 get_ns_per_page=126.18\r",
    )
    .unwrap();
    assert_eq!(l.bench, "gup_fast");
    // compare.sh: method is a metric; op, backing, pages_per_call identify, in line order.
    assert_eq!(l.key(), "gup_fast op=get_user_pages_fast backing=4k pages_per_call=512");
    assert_eq!(l.get("method"), Some("vmsplice"));
    assert_eq!(l.num("get_ns_per_page"), Some(126.18));
    assert!(table::ResultLine::parse("INFO shootdown ncpu=2").is_none());
    assert!(table::ResultLine::parse("RESULT").is_none());

    let ours = lines("ours-tcg-smp2.txt");
    let linux = lines("linux-tcg-smp2.txt");
    assert_eq!(ours.len(), 16, "every RESULT line of the fixture, none of the rest");
    assert_eq!(linux.len(), 14);
    // Our GUP-fast lines (method=gup_fast, extra ncpus=) key as the peer's (method=vmsplice / rds_info).
    for key in [
        "gup_fast op=get_user_pages_fast backing=4k pages_per_call=512",
        "gup_fast op=pin_user_pages_fast+unpin backing=thp pages_per_call=512",
        "shootdown op=madv_dontneed remote_cpus=1",
        "ksm_merge mib=64",
        "collapse remote_cpus=1",
    ] {
        assert!(table::find(&ours, key).is_some() && table::find(&linux, key).is_some(), "{key} not on both sides");
    }
}

#[test]
fn rows_pair_the_headline_metrics_and_divide_ours_by_linux() {
    let rows = table::rows(&lines("ours-tcg-smp2.txt"), &lines("linux-tcg-smp2.txt"));
    let get = |row: &str, metric: &str| {
        rows.iter().find(|r| r.row == row && r.metric == metric).unwrap_or_else(|| panic!("no row {row} {metric}"))
    };
    let r = get("shootdown op=mprotect_ro remote_cpus=1", "delta_median_ns");
    assert_eq!((r.ours.as_deref(), r.linux.as_deref()), (Some("5282"), Some("3297")));
    assert!((r.ratio.unwrap() - 5282.0 / 3297.0).abs() < 1e-12);
    assert_eq!(table::ratio_text(r.ratio), "1.60");
    let r = get("gup_fast op=pin_user_pages_fast+unpin backing=thp pages_per_call=512", "pin_unpin_slope_ns_per_page");
    assert!((r.ratio.unwrap() - 29.65 / 14.25).abs() < 1e-12);
    let r = get("ksm_merge mib=64", "merge_rate_pages_per_s");
    assert!(r.higher_is_better);
    assert!((r.ratio.unwrap() - 8865.0 / 87262.0).abs() < 1e-12);
    assert_eq!(table::ratio_text(r.ratio), "0.10");
    assert_eq!(table::ratio_text(Some(0.0123)), "0.012");
    // K = 0 has no delta on either side: no such row.
    assert!(!rows.iter().any(|r| r.row == "shootdown op=mprotect_ro remote_cpus=0" && r.metric == "delta_median_ns"));
    // One side only: a row with no ratio.
    let r = get("pin_vs_collapse source=brd:/dev/ram0", "corruptions");
    assert_eq!((r.ours.as_deref(), r.linux.as_deref(), r.ratio), (None, Some("0"), None));
    let r = get("gup_fast op=get_user_pages backing=4k pages_per_call=512", "get_ns_per_page");
    assert_eq!((r.ours.as_deref(), r.linux.as_deref(), r.ratio), (Some("704.46"), None, None));
    // Zero or non-numbers give no ratio.
    let r = get("collapse remote_cpus=0", "fails");
    assert_eq!(r.ratio, None, "0/0");
    assert_eq!(table::ratio(Some("3"), Some("0")), None);
    assert_eq!(table::ratio(Some("x"), Some("1")), None);
    assert_eq!(table::ratio(Some("3"), Some("1.5")), Some(2.0));
    // Ours first, in our order; the peer's own rows after.
    assert_eq!(rows[0].row, "shootdown op=mprotect_ro remote_cpus=0");
    assert_eq!(rows.last().unwrap().row, "pin_vs_collapse source=brd:/dev/ram0");

    let csv = table::csv(&rows);
    assert_eq!(csv.lines().count(), rows.len() + 1);
    assert!(csv.contains("\nshootdown op=mprotect_ro remote_cpus=1,delta_median_ns,5282,3297,1.6021\n"), "{csv}");
    let t = table::table(&rows).to_string();
    assert!(t.contains("| ours/Linux") && t.contains("0.10 (higher is better)"), "{t}");
}

#[test]
fn options_parse_and_reject() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let o = compare::parse(&args(&["--smp", "4", "--accel=tcg", "--out", "d", "--timeout", "600", "--mem", "512M"])).unwrap();
    assert_eq!((o.smp, o.timeout_s, o.mem_mib), (4, 600, 512));
    assert_eq!(o.out, Some(PathBuf::from("d")));
    assert_eq!(compare::parse(&[]).unwrap(), CompareOptions::default());
    for bad in [&["--smp", "0"][..], &["--accel", "auto"], &["--timeout", "5"], &["--bogus"], &["--out"]] {
        assert!(compare::parse(&args(bad)).is_err(), "{bad:?} accepted");
    }
    assert!(matches!(testbed::cli::parse(["compare", "--smp", "2"]), Ok(testbed::cli::Command::Compare(_))));
}

#[test]
fn recorded_files_give_the_table_csv_json_and_plots() {
    let out = tmp("files");
    let o = CompareOptions {
        ours_file: Some(fixture("ours-tcg-smp2.txt")),
        linux_file: Some(fixture("linux-tcg-smp2.txt")),
        out: Some(out.clone()),
        ..Default::default()
    };
    let r = compare::run(&o).unwrap();
    assert_eq!(compare::main(&o), 0, "both sides have figures");
    for f in ["compare.csv", "compare.json", "compare.md", "shootdown.svg", "pin.svg", "latency.svg"] {
        assert!(r.files.contains(&out.join(f)), "{f} not written");
    }
    for svg in ["shootdown.svg", "pin.svg", "latency.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.starts_with("<svg"), "{svg}");
        assert!(text.contains("<circle") || text.contains("<rect"), "{svg} draws nothing");
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["conditions"]["smp"], 2);
    assert_eq!(json["rows"].as_array().unwrap().len(), r.rows.len());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_peer_that_cannot_run_is_named_and_ours_still_reported() {
    let out = tmp("nopeer");
    let o = CompareOptions {
        ours_file: Some(fixture("ours-tcg-smp2.txt")),
        peer: Some(PathBuf::from("/nonexistent/peer/linux")),
        out: Some(out.clone()),
        ..Default::default()
    };
    let r = compare::run(&o).unwrap();
    assert!(r.linux.status.starts_with("not run: no run.sh"), "{}", r.linux.status);
    assert!(r.linux.status.contains("/nonexistent/peer/linux"), "{}", r.linux.status);
    assert!(r.rows.iter().any(|x| x.metric == "delta_median_ns" && x.ours.is_some() && x.linux.is_none()));
    assert_eq!(compare::main(&o), 1, "one side missing");
    let _ = std::fs::remove_dir_all(&out);
}
