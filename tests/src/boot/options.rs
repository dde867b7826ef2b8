//! Boot-option parsing: tolerant of file formats, strict about content.

use kernel::boot_options::{BootOptions, Crash, KeyInfo, OptionError, all_keys, parse};
use kernel::console::ConsoleChoice;
use log::LevelFilter;

kernel::ktests! {
    fn empty_text_gives_defaults() {
        let o = parse("").unwrap();
        assert_eq!(o.console, ConsoleChoice::Auto);
        assert_eq!(o.log_level, LevelFilter::Info);
        assert_eq!(o.crash, None);
        assert_eq!(o.ktest_skip, 0);
    }

    fn crlf_bom_comments_and_spaces_are_tolerated() {
        let o = parse("\u{feff}console=both\r\n# a comment line\r\nlog=debug   ktest.skip=3 # trailing\r\n\r\n").unwrap();
        assert_eq!(o.console, ConsoleChoice::Both);
        assert_eq!(o.log_level, LevelFilter::Debug);
        assert_eq!(o.ktest_skip, 3);
    }

    fn every_crash_kind_parses() {
        for (word, kind) in [
            ("crash=panic", Some(Crash::Panic)),
            ("crash=pagefault", Some(Crash::PageFault)),
            ("crash=gpf", Some(Crash::GeneralProtection)),
            ("crash=ud", Some(Crash::InvalidOpcode)),
            ("crash=doublefault", Some(Crash::DoubleFault)),
            ("crash=stackoverflow", Some(Crash::StackOverflow)),
            ("crash=triplefault", Some(Crash::TripleFault)),
            ("crash=none", None),
        ] {
            assert_eq!(parse(word).unwrap().crash, kind, "{word}");
        }
    }

    fn unknown_key_is_rejected_by_name() {
        assert_eq!(parse("log=info bogus=1").unwrap_err(), OptionError::UnknownKey("bogus"));
    }

    fn bad_value_names_key_value_and_choices() {
        let e = parse("console=vga").unwrap_err();
        let OptionError::BadValue { key, value, expected } = e else { panic!("got {e:?}") };
        assert_eq!((key, value), ("console", "vga"));
        assert!(expected.contains("serial"), "{expected}");
        // The message also says what the key is for (its table's help).
        let text = alloc::format!("{e}");
        assert!(text.contains("for 'console'") && text.contains("; console: console sinks"), "{text}");
        assert!(matches!(parse("ktest.skip=-1"), Err(OptionError::BadValue { .. })));
        assert!(matches!(parse("ktest.filter="), Err(OptionError::BadValue { .. })));
    }

    fn word_without_equals_and_duplicates_are_rejected() {
        assert_eq!(parse("console").unwrap_err(), OptionError::NotKeyValue("console"));
        assert_eq!(parse("=x").unwrap_err(), OptionError::NotKeyValue("=x"));
        assert_eq!(parse("log=info log=warn").unwrap_err(), OptionError::Duplicate("log"));
    }

    fn non_utf8_is_rejected() {
        static BAD: [u8; 3] = [b'a', 0xff, b'='];
        assert_eq!(kernel::boot_options::parse_bytes(&BAD).unwrap_err(), OptionError::NotUtf8);
    }

    fn smp_options_parse_with_bounds() {
        let o = parse("apic=xapic smp.ap_timeout_ms=500 smp.call_timeout_ms=30000").unwrap();
        assert!(o.force_xapic);
        assert_eq!((o.ap_timeout_ms, o.call_timeout_ms), (500, 30_000));
        assert!(matches!(parse("smp.ap_timeout_ms=0"), Err(OptionError::BadValue { .. })));
        assert!(matches!(parse("smp.call_timeout_ms=9999999"), Err(OptionError::BadValue { .. })));
        assert!(matches!(parse("apic=x2"), Err(OptionError::BadValue { .. })));
        assert_eq!(parse("rcu.stall_ms=250").unwrap().rcu_stall_ms, 250);
        assert!(matches!(parse("rcu.stall_ms=0"), Err(OptionError::BadValue { .. })));
    }

    fn wedge_cpu_parses_and_refuses_the_boot_cpu() {
        assert_eq!(parse("debug.wedge_cpu=3").unwrap().wedge_cpu, Some(3));
        assert_eq!(parse("").unwrap().wedge_cpu, None);
        for bad in ["debug.wedge_cpu=0", "debug.wedge_cpu=x", "debug.wedge_cpu=-1", "debug.wedge_cpu="] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, OptionError::BadValue { key: "debug.wedge_cpu", .. }), "{bad}: {e:?}");
        }
    }

    /// The key tables are the parser's list of keys (what `job=keys`
    /// prints): every listed key has a parser (a bad value is a bad value,
    /// not an unknown key), and a literal default changes nothing when
    /// given (a default in angle brackets describes what holds instead).
    fn every_listed_key_is_parsed_and_its_default_is_the_default() {
        let keys: alloc::vec::Vec<&KeyInfo> = all_keys().collect();
        assert!(keys.len() >= 60, "only {} keys listed", keys.len());
        let defaults = alloc::format!("{:?}", BootOptions::DEFAULT);
        let mut literal = 0;
        for k in &keys {
            assert!(!k.help.is_empty() && !k.values.is_empty() && !k.default.is_empty(), "{}", k.key);
            assert_eq!(keys.iter().filter(|o| o.key == k.key).count(), 1, "{} listed twice", k.key);
            let word: &'static str = alloc::format!("{}=\u{7f}bogus", k.key).leak();
            assert!(!matches!(parse(word), Err(OptionError::UnknownKey(_))), "{} is listed but not parsed", k.key);
            if k.default.starts_with('<') {
                assert!(k.default.ends_with('>'), "{}: default {}", k.key, k.default);
                continue;
            }
            let word: &'static str = alloc::format!("{}={}", k.key, k.default).leak();
            let o = parse(word).unwrap_or_else(|e| panic!("{word}: the listed default is refused: {e}"));
            assert_eq!(alloc::format!("{o:?}"), defaults, "{word} is not the default");
            literal += 1;
        }
        assert!(literal >= 40, "only {literal} literal defaults");
        assert_eq!(parse("job=keys").unwrap().job, kernel::scenario::job::Job::Keys);
    }

    fn end_action_parses() {
        use kernel::power::EndAction;
        assert_eq!(parse("").unwrap().end, EndAction::Halt);
        assert_eq!(parse("end=halt").unwrap().end, EndAction::Halt);
        assert_eq!(parse("end=reboot").unwrap().end, EndAction::Reboot);
        assert_eq!(parse("end=poweroff").unwrap().end, EndAction::Poweroff);
        assert!(matches!(parse("end=sleep"), Err(OptionError::BadValue { key: "end", .. })));
    }
}
