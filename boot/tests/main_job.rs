//! The main job: the main kernel with no options (as `cargo run` and
//! `./run-qemu.sh` boot it) runs every row of every scenario's table in one
//! boot (ksm-vs-gupfast, collapse-vs-gupfast, uprobe-vs-pin) and prints the
//! table and one verdict; `job=list` lists the rows (the
//! race matrix reads them); `job=none` only boots (boot_main.rs).

use testbed::cli::KernelChoice;
use testbed::qemu::Firmware;
use testbed::testkit as common;

#[test]
fn the_default_boot_shows_every_row_held_and_broken() {
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 2, &[], 420);
    let all = common::everything(&r);
    let rows = common::boot(KernelChoice::Main, Firmware::Bios, 2, &["job=list"], 120);
    common::expect_exit(&rows, 0);
    let listed: Vec<&String> = rows.output.console.results.iter().filter(|l| l.starts_with("RESULT row ")).collect();
    assert!(listed.len() >= 9, "the kernel listed too few rows: {listed:?}");
    assert!(all.contains("MAIN JOB: the seed's protocol held and broken"), "no table:\n{all}");
    for row in &listed {
        let (scenario, config, expected) = (
            common::result_field(row, "scenario").unwrap(),
            common::result_field(row, "config").unwrap(),
            common::result_field(row, "expected").unwrap(),
        );
        // The table has the row, seen as expected ...
        let seen = if expected == "caught" { "caught" } else { "safe" };
        assert!(
            r.output.console.lines.iter().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 4 && w[0] == scenario && w[1] == config && w[2] == expected && w[3] == seen && w.last() == Some(&"ok")
            }),
            "no table line '{scenario} {config} {expected} {seen} ... ok':\n{all}"
        );
        // ... and its RESULT line, run under the default exploration.
        let line = r
            .output
            .console
            .results
            .iter()
            .find(|l| l.starts_with(&format!("RESULT scenario name={scenario} config={config} ")))
            .unwrap_or_else(|| panic!("no RESULT line for {scenario} {config}:\n{all}"));
        assert_eq!(common::result_field(line, "explore"), Some("auto"), "{line}");
        assert_eq!(common::result_field(line, "verdict"), Some("ok"), "{line}");
    }
    // collapse-vs-gupfast's nine rows are among them, each caught row by the
    // oracle its bug trips: the pin that slipped past the isolate step loses
    // a device write; the table freed under a walker is a use after free.
    let collapse: Vec<&&String> =
        listed.iter().filter(|l| common::result_field(l, "scenario") == Some("collapse-vs-gupfast")).collect();
    assert_eq!(collapse.len(), 9, "the kernel does not list collapse-vs-gupfast's nine rows: {listed:?}");
    for (config, expected, kind) in [
        ("default", "safe", None),
        ("collapse.check_before_clear:on", "caught", Some("dma_lost")),
        ("gup.pmd_recheck:off", "safe", None),
        ("gup.pmd_recheck:off,tlb:nmi,ptfree:rcu", "caught", Some("dma_lost")),
        ("tlb:nmi,ptfree:rcu", "safe", None),
        ("gup.recheck:off,gup.pmd_recheck:off,tlb:nmi,ptfree:rcu,sync:rcu", "safe", None),
        ("collapse.no_table_sync:on,tlb:nmi", "caught", Some("uaf")),
        ("tlb:nmi", "safe", None),
        ("gup.recheck:off,gup.pmd_recheck:off,tlb:nmi,ptfree:rcu", "caught", Some("dma_lost")),
    ] {
        let line = r
            .output
            .console
            .results
            .iter()
            .find(|l| l.starts_with(&format!("RESULT scenario name=collapse-vs-gupfast config={config} ")))
            .unwrap_or_else(|| panic!("no RESULT line for collapse-vs-gupfast {config}:\n{all}"));
        assert_eq!(common::result_field(line, "expected"), Some(expected), "{line}");
        assert_eq!(common::result_field(line, "verdict"), Some("ok"), "{line}");
        let get = |k: &str| common::result_value::<u64>(line, k).unwrap_or_else(|| panic!("no {k}= in {line}"));
        assert!(get("collapses") > 0, "nothing was collapsed: {line}");
        match kind {
            None => assert!(get("corruptions") + get("uaf") == 0 && get("overlaps") > 0, "{line}"),
            Some(k) => assert!(get(k) >= 1, "caught, but not by {k}: {line}"),
        }
    }
    assert!(all.contains("VERDICT: ok"), "no passing verdict line:\n{all}");
    let job = r.output.console.results.iter().find(|l| l.starts_with("RESULT job ")).unwrap_or_else(|| panic!("no RESULT job line:\n{all}"));
    assert_eq!(common::result_value::<usize>(job, "rows"), Some(listed.len()), "{job}");
    assert_eq!(common::result_field(job, "verdict"), Some("ok"), "{job}");
    common::expect_exit(&r, 0);
}

#[test]
fn a_bad_job_is_a_usage_error() {
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 1, &["job=sometimes"], 120);
    common::expect_exit(&r, 2);
    assert!(common::everything(&r).contains("job"), "{}", common::everything(&r));
}

#[test]
fn job_rows_beyond_the_tables_are_a_usage_error() {
    // job.rows= is checked against the tables once they are known: row 127
    // (the option's largest index) is far beyond them.
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 2, &["job.rows=0,127"], 120);
    common::expect_exit(&r, 2);
    let all = common::everything(&r);
    assert!(all.contains("job.rows: row 127 does not exist"), "{all}");
    assert!(!all.contains("RESULT scenario"), "a row ran before the option was checked:\n{all}");
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 2, &["job.rows=0,x"], 120);
    common::expect_exit(&r, 2);
}

/// `job=keys` lists every boot key with its values, default and help, from
/// the tables the kernel's parser checks keys against: keys of several
/// subsystems are there, the list is the one an unknown key's error names,
/// and the README documents every key it lists. (That every listed key is
/// parsed and every literal default is the default: the boot suite,
/// `tests/src/boot/options.rs`.)
#[test]
fn job_keys_lists_every_boot_key_with_its_default_and_help() {
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 1, &["job=keys"], 120);
    common::expect_exit(&r, 0);
    let all = common::everything(&r);
    let lines = &r.output.console.lines;
    let start = lines.iter().position(|l| l.starts_with("BOOT KEYS: ")).unwrap_or_else(|| panic!("no listing:\n{all}"));
    // key=values (default D), then the help, indented.
    let mut listed: Vec<String> = Vec::new();
    for pair in lines[start + 1..].windows(2) {
        let (entry, help) = (&pair[0], &pair[1]);
        if entry.starts_with("RESULT keys ") {
            break;
        }
        if entry.starts_with("    ") {
            continue;
        }
        let (key, rest) = entry.split_once('=').unwrap_or_else(|| panic!("not key=values: '{entry}'\n{all}"));
        assert!(rest.contains(" (default ") && rest.ends_with(')'), "no default: '{entry}'");
        assert!(help.starts_with("    ") && help.trim().len() > 10, "no help after '{entry}': '{help}'");
        listed.push(key.to_string());
    }
    let count = r.output.console.results.iter().find_map(|l| l.strip_prefix("RESULT keys count=")).unwrap_or_else(|| panic!("no count:\n{all}"));
    assert_eq!(count.parse::<usize>().ok(), Some(listed.len()), "{all}");
    // Keys of the boot options' own table, the TLB, SMP, the race switches and
    // widenings, the scenario runs, khugepaged and KSM.
    for key in [
        "console",
        "job",
        "bench",
        "smp.call_timeout_ms",
        "tlb",
        "ptfree",
        "dma.delay_us",
        "gup.recheck",
        "widen.gup.pre_ref",
        "explore",
        "scenario",
        "cpus",
        "khugepaged.pages_to_scan",
        "ksm.max_page_sharing",
    ] {
        assert!(listed.iter().any(|k| k == key), "{key} is not listed:\n{all}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("gup.recheck=on|off (default on)")),
        "gup.recheck's line does not say its default:\n{all}"
    );
    // The same keys as an unknown key's error names (both come from the tables).
    let bad = common::boot(KernelChoice::Main, Firmware::Bios, 1, &["no.such.key=1"], 120);
    common::expect_exit(&bad, 2);
    let text = common::everything(&bad);
    // The longest of the lines that name them (a status line may shorten it).
    let known: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("known keys:"))
        .map(|(_, keys)| keys.split_whitespace().collect::<Vec<&str>>())
        .max_by_key(Vec::len)
        .unwrap_or_else(|| panic!("the error does not list the keys:\n{text}"));
    assert_eq!(known, listed, "job=keys and the unknown-key error disagree");
    // Every listed key is documented in the README.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for key in &listed {
        assert!(readme.contains(&format!("`{key}`")), "README does not document `{key}`");
    }
}
