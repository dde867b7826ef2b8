//! Parsing the kernel's serial console (COM1) stream.
//!
//! QEMU runs with `-serial stdio`; the host reads the raw bytes, cuts them into lines,
//! cleans each line ([`clean_line`]) and classifies it ([`parse_line`]). The cleaned
//! line is what is echoed to the terminal and saved with `--serial-log`.
//!
//! # The kernel <-> host protocol
//!
//! * **Lines** end with `"\n"`; a `"\r"` anywhere is dropped. Under UEFI the stream
//!   also carries OVMF's ANSI/VT100 escape sequences (`ESC [ ... letter`, `ESC c`,
//!   `ESC ( B`, ...), and the BIOS stages leave some without a newline in front of the
//!   kernel's first line: all escape sequences and other control characters (except
//!   TAB) are removed before a line is parsed or echoed.
//! * **Log lines** look like `[    0.123456 cpu0 INFO ] text`. The bracketed prefix is
//!   skipped when recognising the lines below, so they may be printed raw or through
//!   the logger.
//! * **End marker**: right before it exits, the kernel prints
//!   `TESTBED-END status=pass|fail|usage|fatal` and writes a byte V to the
//!   isa-debug-exit port 0xf4; QEMU then exits with status `(V << 1) | 1`:
//!
//!   | V    | QEMU status | meaning                                  | `testbed run` exit |
//!   |------|-------------|------------------------------------------|--------------------|
//!   | 0x10 | 33          | pass                                     | 0                  |
//!   | 0x11 | 35          | failure reported by the kernel           | 1                  |
//!   | 0x12 | 37          | usage error (bad boot option)            | 2                  |
//!   | 0x13 | 39          | fatal: panic or CPU exception, after a report | 1             |
//!
//!   QEMU exiting with 0 under `-no-reboot` means a triple fault / reset: no handler
//!   could report. Any exit without the end marker is "the kernel never reported an
//!   end" (host exit 4); a wall-clock timeout is host exit 3. See [`crate::qemu`].
//! * **Crash reports** begin with a line starting `FATAL:`.
//! * **Benchmark results** are lines `RESULT <bench> key=value ...`; they are
//!   collected verbatim ([`Console::results`]).
//! * **Kernel test suites** print, in order:
//!   - `ktest: suite name=<suite> tests=<N> skip=<K>`
//!   - per test: `ktest: start index=<i> name=<path>`, then
//!     `test <path> ... ok`, `test <path> ... FAILED (<one-line reason>)` or
//!     `test <path> ... ignored, <reason>` (skipped, e.g. it needs more CPUs)
//!   - `test result: ok. P passed; F failed; 0 ignored; 0 measured; X filtered out; finished in S.SSs`
//!     (or `test result: FAILED. ...`), then the end marker and exit 0x10 / 0x11.
//!
//!   A panic or CPU exception inside a test prints its own `test <path> ... FAILED
//!   (panicked at ...)` line when it can, then a report, then
//!   `TESTBED-END status=fatal` and exit 0x13. The boot options `ktest.skip=K` (skip
//!   the first K tests; indices are 0-based) and `ktest.filter=<substring>` are
//!   understood by the kernel; the host uses `ktest.skip` to resume after a crash
//!   (see [`crate::suite`]).

use std::fmt;

/// The status named by the kernel's `TESTBED-END status=...` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndStatus {
    Pass,
    Fail,
    Usage,
    Fatal,
}

impl EndStatus {
    fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "pass" => EndStatus::Pass,
            "fail" => EndStatus::Fail,
            "usage" => EndStatus::Usage,
            "fatal" => EndStatus::Fatal,
            _ => return None,
        })
    }
}

impl fmt::Display for EndStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndStatus::Pass => "pass",
            EndStatus::Fail => "fail",
            EndStatus::Usage => "usage",
            EndStatus::Fatal => "fatal",
        })
    }
}

/// The counts of a `test result:` line.
#[derive(Clone, Debug, PartialEq)]
pub struct TestSummary {
    pub ok: bool,
    pub passed: usize,
    pub failed: usize,
    pub filtered_out: usize,
    /// The `finished in` figure, in seconds, if present.
    pub seconds: Option<f64>,
}

/// What one cleaned console line means.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// `ktest: suite name=<suite> tests=<N> skip=<K>`
    SuiteHeader { name: String, tests: usize, skip: usize },
    /// `ktest: start index=<i> name=<path>`
    TestStart { index: usize, name: String },
    /// `test <path> ... ok`
    TestOk { name: String },
    /// `test <path> ... FAILED (<reason>)`
    TestFailed { name: String, reason: Option<String> },
    /// `test <path> ... ignored, <reason>` (the kernel skipped it)
    TestIgnored { name: String, reason: Option<String> },
    /// `test result: ok|FAILED. ...`
    TestResult(TestSummary),
    /// `TESTBED-END status=...`
    End(EndStatus),
    /// `RESULT ...` (the payload, from `RESULT` on)
    Result(String),
    /// A line starting `FATAL:` (the payload)
    Fatal(String),
    /// Anything else.
    Other,
}

/// Removes ANSI/VT100 escape sequences, `\r` and other control characters (TAB is
/// kept) from one line of console output (without its `\n`), and decodes it as
/// UTF-8, replacing invalid bytes.
pub fn clean_line(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == 0x1b {
            i += 1;
            match raw.get(i) {
                // CSI: ESC [ params(0x30-0x3f)* intermediates(0x20-0x2f)* final(0x40-0x7e)
                Some(b'[') => {
                    i += 1;
                    while i < raw.len() && (0x20..=0x3f).contains(&raw[i]) {
                        i += 1;
                    }
                    if i < raw.len() && (0x40..=0x7e).contains(&raw[i]) {
                        i += 1;
                    }
                }
                // OSC / DCS / PM / APC strings: up to BEL or ESC \ .
                Some(b']') | Some(b'P') | Some(b'^') | Some(b'_') => {
                    i += 1;
                    while i < raw.len() {
                        if raw[i] == 0x07 {
                            i += 1;
                            break;
                        }
                        if raw[i] == 0x1b && raw.get(i + 1) == Some(&b'\\') {
                            i += 2;
                            break;
                        }
                        i += 1;
                    }
                }
                // Character-set designation: ESC ( B, ESC ) 0, ESC # 8, ...
                Some(b'(') | Some(b')') | Some(b'*') | Some(b'+') | Some(b'#') | Some(b'%') => {
                    i += 2;
                }
                // Any other two-byte sequence: ESC c, ESC 7, ESC 8, ESC =, ESC >, ESC M ...
                Some(_) => i += 1,
                None => {}
            }
            continue;
        }
        if b == b'\t' || b >= 0x20 && b != 0x7f {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Skips a log prefix `[ ... ] ` if the line has one.
pub fn strip_log_prefix(line: &str) -> &str {
    if line.starts_with('[')
        && let Some(end) = line.find(']') {
            return line[end + 1..].trim_start();
        }
    line
}

/// The value of `key=` among the whitespace-separated words of `s`.
fn word_value<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Classifies one cleaned line.
pub fn parse_line(line: &str) -> Line {
    let p = strip_log_prefix(line.trim_end());
    if let Some(rest) = p.strip_prefix("ktest: suite ") {
        let name = word_value(rest, "name");
        let tests = word_value(rest, "tests").and_then(|v| v.parse().ok());
        let skip = word_value(rest, "skip").and_then(|v| v.parse().ok()).unwrap_or(0);
        if let (Some(name), Some(tests)) = (name, tests) {
            return Line::SuiteHeader { name: name.to_string(), tests, skip };
        }
        return Line::Other;
    }
    if let Some(rest) = p.strip_prefix("ktest: start ") {
        let index = word_value(rest, "index").and_then(|v| v.parse().ok());
        // The name is the rest of the line after `name=` (paths have no spaces, but
        // be lenient).
        let name = rest.find("name=").map(|i| rest[i + 5..].trim().to_string());
        if let (Some(index), Some(name)) = (index, name) {
            return Line::TestStart { index, name };
        }
        return Line::Other;
    }
    if let Some(rest) = p.strip_prefix("test result: ") {
        if let Some(s) = parse_summary(rest) {
            return Line::TestResult(s);
        }
        return Line::Other;
    }
    if let Some(rest) = p.strip_prefix("test ") {
        if let Some((name, verdict)) = rest.split_once(" ... ") {
            let name = name.trim().to_string();
            let verdict = verdict.trim();
            if verdict == "ok" {
                return Line::TestOk { name };
            }
            if let Some(r) = verdict.strip_prefix("ignored") {
                let reason = r.trim_start_matches(',').trim();
                let reason = (!reason.is_empty()).then(|| reason.to_string());
                return Line::TestIgnored { name, reason };
            }
            if let Some(r) = verdict.strip_prefix("FAILED") {
                let r = r.trim();
                let reason = r
                    .strip_prefix('(')
                    .map(|r| r.strip_suffix(')').unwrap_or(r).trim().to_string())
                    .filter(|r| !r.is_empty());
                return Line::TestFailed { name, reason };
            }
        }
        return Line::Other;
    }
    if let Some(i) = p.find("TESTBED-END ")
        && let Some(st) = word_value(&p[i..], "status").and_then(EndStatus::from_word) {
            return Line::End(st);
        }
    if p.starts_with("RESULT ") {
        return Line::Result(p.to_string());
    }
    if p.starts_with("FATAL:") {
        return Line::Fatal(p.to_string());
    }
    Line::Other
}

/// Parses what follows `test result: `.
fn parse_summary(rest: &str) -> Option<TestSummary> {
    let (verdict, counts) = rest.split_once('.')?;
    let ok = match verdict.trim() {
        "ok" => true,
        "FAILED" => false,
        _ => return None,
    };
    let mut s = TestSummary { ok, passed: 0, failed: 0, filtered_out: 0, seconds: None };
    let mut have_passed = false;
    for part in counts.split(';') {
        let part = part.trim();
        if let Some(t) = part.strip_prefix("finished in ") {
            s.seconds = t.trim_end_matches('s').parse().ok();
            continue;
        }
        let mut it = part.splitn(2, ' ');
        let (Some(n), Some(what)) = (it.next(), it.next()) else { continue };
        let Ok(n) = n.parse::<usize>() else { continue };
        match what.trim() {
            "passed" => {
                s.passed = n;
                have_passed = true;
            }
            "failed" => s.failed = n,
            "filtered out" => s.filtered_out = n,
            _ => {}
        }
    }
    have_passed.then_some(s)
}

/// Splits a byte stream into lines. Feed it chunks as they arrive; it hands back
/// complete, cleaned lines.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Adds bytes; returns the lines they completed (cleaned).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(clean_line(&self.partial));
                self.partial.clear();
            } else {
                self.partial.push(b);
            }
        }
        lines
    }

    /// The unterminated rest, cleaned, if it has any visible content (call at EOF).
    pub fn finish(&mut self) -> Option<String> {
        let rest = clean_line(&std::mem::take(&mut self.partial));
        (!rest.trim().is_empty()).then_some(rest)
    }
}

/// Everything learned from one boot's console.
#[derive(Clone, Debug, Default)]
pub struct Console {
    /// All cleaned lines.
    pub lines: Vec<String>,
    /// The status of the `TESTBED-END` line, if one was seen.
    pub end: Option<EndStatus>,
    /// `RESULT` lines, in order.
    pub results: Vec<String>,
    /// The first `FATAL:` line, if any.
    pub fatal: Option<String>,
}

impl Console {
    /// Records one cleaned line; returns what it means.
    pub fn push(&mut self, line: String) -> Line {
        let parsed = parse_line(&line);
        match &parsed {
            Line::End(st) => self.end = Some(*st),
            Line::Result(r) => self.results.push(r.clone()),
            Line::Fatal(f) if self.fatal.is_none() => self.fatal = Some(f.clone()),
            _ => {}
        }
        self.lines.push(line);
        parsed
    }

    /// The last `n` lines (fewer if there are fewer).
    pub fn tail(&self, n: usize) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(n)..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_csi_and_cr() {
        assert_eq!(clean_line(b"\x1b[0mhello\x1b[1;31m world\x1b[0m\r"), "hello world");
        assert_eq!(clean_line(b"a\rb"), "ab");
    }

    #[test]
    fn strips_ovmf_sequences() {
        // What OVMF's terminal driver emits around its boot messages.
        let raw = b"\x1bc\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H\x1b[0m\x1b[37m\x1b[40mBdsDxe: loading";
        assert_eq!(clean_line(raw), "BdsDxe: loading");
        assert_eq!(clean_line(b"\x1b[?25l\x1b[25;01Hx\x1b[?25h"), "x");
        assert_eq!(clean_line(b"\x1b(Bcharset\x1b)0"), "charset");
        assert_eq!(clean_line(b"\x1b]0;title\x07text"), "text");
        assert_eq!(clean_line(b"\x1b]0;title\x1b\\text"), "text");
        assert_eq!(clean_line(b"\x1b7saved\x1b8"), "saved");
        // Truncated sequence at end of line.
        assert_eq!(clean_line(b"end\x1b["), "end");
        assert_eq!(clean_line(b"end\x1b"), "end");
    }

    #[test]
    fn strips_other_controls_keeps_tab_and_utf8() {
        assert_eq!(clean_line(b"a\x00b\x08c\td\x7f"), "abc\td");
        assert_eq!(clean_line("µs ✓".as_bytes()), "µs ✓");
        assert_eq!(clean_line(b"bad\xffbyte"), "bad\u{fffd}byte");
    }

    #[test]
    fn splitter_handles_chunks_and_crlf() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\n\x1b[0"), vec!["world"]);
        assert_eq!(s.push(b"mx\n"), vec!["x"]);
        assert!(s.push(b"\x1b[2J").is_empty());
        assert_eq!(s.finish(), None);
        s.push(b"tail");
        assert_eq!(s.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn log_prefix() {
        assert_eq!(strip_log_prefix("[    0.123456 cpu0 INFO ] text"), "text");
        assert_eq!(strip_log_prefix("plain"), "plain");
        assert_eq!(
            parse_line("[    0.123456 cpu1 INFO ] RESULT shootdown op=x n=3"),
            Line::Result("RESULT shootdown op=x n=3".into())
        );
    }

    #[test]
    fn suite_lines() {
        assert_eq!(
            parse_line("ktest: suite name=boot tests=12 skip=3"),
            Line::SuiteHeader { name: "boot".into(), tests: 12, skip: 3 }
        );
        assert_eq!(
            parse_line("ktest: start index=4 name=mm::frame::alloc_free"),
            Line::TestStart { index: 4, name: "mm::frame::alloc_free".into() }
        );
        assert_eq!(parse_line("test mm::a ... ok"), Line::TestOk { name: "mm::a".into() });
        assert_eq!(
            parse_line("test smp::x ... ignored, needs 2 CPUs"),
            Line::TestIgnored { name: "smp::x".into(), reason: Some("needs 2 CPUs".into()) }
        );
        assert_eq!(
            parse_line("test mm::b ... FAILED (assertion failed: x == 1 (left 2))"),
            Line::TestFailed {
                name: "mm::b".into(),
                reason: Some("assertion failed: x == 1 (left 2)".into())
            }
        );
        assert_eq!(
            parse_line("test mm::c ... FAILED"),
            Line::TestFailed { name: "mm::c".into(), reason: None }
        );
        assert_eq!(parse_line("test mm::d ... running"), Line::Other);
        assert_eq!(parse_line("ktest: start index=x name=y"), Line::Other);
    }

    #[test]
    fn result_line() {
        assert_eq!(
            parse_line(
                "test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out; finished in 0.42s"
            ),
            Line::TestResult(TestSummary {
                ok: true,
                passed: 5,
                failed: 0,
                filtered_out: 2,
                seconds: Some(0.42)
            })
        );
        assert_eq!(
            parse_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s"),
            Line::TestResult(TestSummary {
                ok: false,
                passed: 3,
                failed: 2,
                filtered_out: 0,
                seconds: Some(1.0)
            })
        );
        assert_eq!(parse_line("test result: maybe. 1 passed"), Line::Other);
    }

    #[test]
    fn end_marker_result_fatal() {
        assert_eq!(parse_line("TESTBED-END status=pass"), Line::End(EndStatus::Pass));
        assert_eq!(parse_line("TESTBED-END status=fail\r"), Line::End(EndStatus::Fail));
        assert_eq!(parse_line("[ 1.0 cpu0 INFO ] TESTBED-END status=usage"), Line::End(EndStatus::Usage));
        assert_eq!(parse_line("\u{1}TESTBED-END status=fatal"), Line::End(EndStatus::Fatal));
        assert_eq!(parse_line("TESTBED-END status=bogus"), Line::Other);
        assert_eq!(parse_line("RESULT gup op=x"), Line::Result("RESULT gup op=x".into()));
        assert_eq!(parse_line("RESULTS are in"), Line::Other);
        assert_eq!(parse_line("FATAL: PAGE FAULT"), Line::Fatal("FATAL: PAGE FAULT".into()));
    }

    #[test]
    fn console_collects() {
        let mut c = Console::default();
        let mut s = LineSplitter::default();
        let stream = b"\x1b[2J\x1b[01;01Hboot\r\nRESULT a x=1\r\nFATAL: boom\nFATAL: again\nRESULT b y=2\nTESTBED-END status=fatal\r\n";
        for l in s.push(stream) {
            c.push(l);
        }
        assert_eq!(c.lines[0], "boot");
        assert_eq!(c.results, vec!["RESULT a x=1", "RESULT b y=2"]);
        assert_eq!(c.fatal.as_deref(), Some("FATAL: boom"));
        assert_eq!(c.end, Some(EndStatus::Fatal));
        assert_eq!(c.tail(2), &["RESULT b y=2".to_string(), "TESTBED-END status=fatal".to_string()]);
        assert_eq!(c.tail(100).len(), 6);
    }
}
