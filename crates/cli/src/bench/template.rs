//! The push body template: `{seq}` and `{ts}` replaced on every push.

use std::io::Write;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<[u8]>),
    Seq,
    Ts,
}

/// A body template, parsed once so that rendering a push is a few copies and two number
/// formats, with no allocation once the output buffer has grown.
///
/// Only the exact placeholders `{seq}` and `{ts}` are replaced; every other brace is text,
/// because bodies are usually JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut literal_start = 0;
        let mut at = 0;
        while at < bytes.len() {
            let placeholder = if bytes[at..].starts_with(b"{seq}") {
                Some((Part::Seq, "{seq}".len()))
            } else if bytes[at..].starts_with(b"{ts}") {
                Some((Part::Ts, "{ts}".len()))
            } else {
                None
            };
            match placeholder {
                Some((part, len)) => {
                    if literal_start < at {
                        parts.push(Part::Text(bytes[literal_start..at].into()));
                    }
                    parts.push(part);
                    at += len;
                    literal_start = at;
                }
                None => at += 1,
            }
        }
        if literal_start < bytes.len() {
            parts.push(Part::Text(bytes[literal_start..].into()));
        }
        Self { parts }
    }

    /// Whether `{seq}` comes before `{ts}`, as the reader expects (it takes the first run of
    /// digits of an event's data as the sequence number and the second as the timestamp).
    pub fn has_seq_then_ts(&self) -> bool {
        let seq = self.parts.iter().position(|part| *part == Part::Seq);
        let ts = self.parts.iter().position(|part| *part == Part::Ts);
        matches!((seq, ts), (Some(seq), Some(ts)) if seq < ts)
    }

    /// Appends the body of push `seq`, published at `ts` (ns since the UNIX epoch), to `out`.
    pub fn render(&self, seq: u64, ts: u64, out: &mut Vec<u8>) {
        for part in &self.parts {
            // Writing a number into a Vec cannot fail.
            let _ = match part {
                Part::Text(text) => {
                    out.extend_from_slice(text);
                    Ok(())
                }
                Part::Seq => write!(out, "{seq}"),
                Part::Ts => write!(out, "{ts}"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, seq: u64, ts: u64) -> String {
        let mut out = Vec::new();
        Template::parse(template).render(seq, ts, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn placeholders_are_replaced_and_other_braces_kept() {
        assert_eq!(
            render(
                r#"{"events":[{"data":"{seq} {ts} x"}]}"#,
                7,
                1_700_000_000_123_456_789
            ),
            r#"{"events":[{"data":"7 1700000000123456789 x"}]}"#
        );
        assert_eq!(render("{seq} {ts}", 0, 1), "0 1");
        assert_eq!(render("{ts}{seq}{seq}", 1, 2), "211");
        assert_eq!(render("{se{seq}q}{t}s}", 5, 6), "{se5q}{t}s}");
        assert_eq!(render("", 1, 2), "");
        assert_eq!(render("no placeholders {}", 1, 2), "no placeholders {}");
        assert_eq!(render("é{seq}ü", 3, 4), "é3ü");
    }

    #[test]
    fn order_of_placeholders() {
        assert!(Template::parse("{seq} {ts}").has_seq_then_ts());
        assert!(Template::parse(r#"{"events":[{"data":"{seq}-{ts}"}]}"#).has_seq_then_ts());
        assert!(!Template::parse("{ts} {seq}").has_seq_then_ts());
        assert!(!Template::parse("{seq}").has_seq_then_ts());
        assert!(!Template::parse("{ts}").has_seq_then_ts());
        assert!(!Template::parse("plain").has_seq_then_ts());
    }
}
