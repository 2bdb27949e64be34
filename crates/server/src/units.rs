//! The two value types of the settings that are not plain numbers: durations (`30s`, `5m`,
//! `24h`) and byte sizes (`512KiB`, `1GiB`), from a flag, a variable or the TOML file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as `humantime` reads it (`30s`, `5m`, `1h 30m`, `250ms`); a bare number
/// is seconds, and `0` is zero (which some settings read as "off").
///
/// ```
/// use ssehub_server::units::Span;
///
/// assert_eq!("90".parse::<Span>()?.0, std::time::Duration::from_secs(90));
/// assert_eq!("1h 30m".parse::<Span>()?.0, std::time::Duration::from_secs(5400));
/// assert!("soon".parse::<Span>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(seconds) = text.parse::<u64>() {
            return Ok(Self(Duration::from_secs(seconds)));
        }
        humantime::parse_duration(text).map(Self).map_err(|error| {
            format!("{text:?} is not a duration ({error}); write e.g. 30s, 5m, 24h")
        })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        text_or_number(deserializer)
    }
}

/// A size in bytes: a number, optionally with a unit (`K`/`KiB` = 1024, `KB` = 1000; likewise
/// `M`, `G`; `B` for bytes).
///
/// ```
/// use ssehub_server::units::Size;
///
/// assert_eq!("1MiB".parse::<Size>()?.0, 1 << 20);
/// assert_eq!("64 KB".parse::<Size>()?.0, 64_000);
/// assert_eq!("4096".parse::<Size>()?.0, 4096);
/// assert!("1 ton".parse::<Size>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let bad = || format!("{text:?} is not a size; write e.g. 4096, 512KiB, 64MiB, 1GiB");
        let number: u64 = number.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "kb" => 1_000,
            "m" | "mib" => 1 << 20,
            "mb" => 1_000_000,
            "g" | "gib" => 1 << 30,
            "gb" => 1_000_000_000,
            _ => return Err(bad()),
        };
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if bytes >= size && bytes.is_multiple_of(size) {
                return write!(f, "{}{unit}", bytes / size);
            }
        }
        write!(f, "{bytes}B")
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        text_or_number(deserializer)
    }
}

/// A TOML value that may be a string (`"30s"`) or a bare integer (`30`), parsed as text.
fn text_or_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(u64),
    }
    let text = match Raw::deserialize(deserializer)? {
        Raw::Text(text) => text,
        Raw::Number(number) => number.to_string(),
    };
    text.parse().map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_spans_read_and_print_back() {
        assert_eq!("2 GiB".parse::<Size>(), Ok(Size(2 << 30)));
        assert_eq!(Size(2 << 30).to_string(), "2GiB");
        assert_eq!(Size(1000).to_string(), "1000B");
        assert!("99999999999999999999G".parse::<Size>().is_err());
        assert!("-1".parse::<Size>().is_err());
        assert_eq!("0".parse::<Span>(), Ok(Span(Duration::ZERO)));
        assert_eq!(Span(Duration::from_secs(90)).to_string(), "1m 30s");
        assert_eq!(Span(Duration::ZERO).to_string(), "0s");
    }
}
