//! The value parsers of boot options, for every subsystem that owns keys.
//!
//! A subsystem's key parser (`race::config`, `khugepaged`, `ksm`) lives with
//! the subsystem and uses these helpers; they sit low in the layer order so
//! that any layer may. They know nothing of the key tables: a bad value is a
//! [`BadValue`] naming the key and the value, and `boot_options` (at the top)
//! adds what the key accepts from the tables when it reports it.

/// One documented key (for error messages, `job=keys` and the README's
/// table). The tables of these are also the parser's list of keys: a key
/// no table has is unknown.
pub struct KeyInfo {
    /// The key.
    pub key: &'static str,
    /// Accepted values.
    pub values: &'static str,
    /// What holds when the key is not given: a value the key accepts that
    /// changes nothing when given, or, in angle brackets, a description
    /// (`<none>`, `<all online>`) where no such value exists.
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// A known key with a value it does not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadValue {
    /// The key.
    pub key: &'static str,
    /// The value given.
    pub value: &'static str,
}

/// The error for a bad value of `key`.
pub fn bad_value(key: &'static str, value: &'static str) -> BadValue {
    BadValue { key, value }
}

/// `on` or `off`, else the key's error.
pub fn on_off(key: &'static str, value: &'static str) -> Result<bool, BadValue> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(bad_value(key, value)),
    }
}

/// `value` as a number in `min..=max`, else the key's error.
pub fn number_in(key: &'static str, value: &'static str, min: u64, max: u64) -> Result<u64, BadValue> {
    value.parse().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| bad_value(key, value))
}
