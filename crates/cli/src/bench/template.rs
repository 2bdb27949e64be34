//! The push body template: `{seq}`, `{ts}` and, in a uni-cast run, `{uid}` and `{uids}` replaced
//! on every push; the push URL's path and query are a template too ([`Template::parse_url`]).

use std::io::Write;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<[u8]>),
    Seq,
    Ts,
    /// `{uid}`: the first addressed client's index.
    Uid,
    /// `{uids}` or `{uids:PREFIX}`: every addressed client as a JSON string, `PREFIX` then the
    /// index, separated by commas (the items of a JSON array; the brackets are the template's).
    Uids(Box<[u8]>),
    /// `{uids}` or `{uids:PREFIX}` in a URL: every addressed client, `PREFIX` then the index,
    /// separated by commas, without quotes (`c17,c42`).
    UidList(Box<[u8]>),
}

/// A body template, parsed once so that rendering a push is a few copies and two number
/// formats, with no allocation once the output buffer has grown.
///
/// Only the exact placeholders `{seq}`, `{ts}`, `{uid}`, `{uids}` and `{uids:PREFIX}` (PREFIX
/// without braces) are replaced; every other brace is text, because bodies are usually JSON.
/// With uids 17 and 42, `{"uids":["c{uid}"]}` becomes `{"uids":["c17"]}` and
/// `{"uids":[{uids:c}]}` becomes `{"uids":["c17","c42"]}`: the uid's prefix is the template's,
/// as the stream URL's `{client}` has its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Self {
        Self::parse_as(text, false)
    }

    /// Parses the path and query of a push URL: the same placeholders, but `{uids}` and
    /// `{uids:PREFIX}` become a bare comma-separated list (`/push?uids={uids:c}` becomes
    /// `/push?uids=c17,c42`), as a server that takes its channels from the URL wants them.
    pub fn parse_url(text: &str) -> Self {
        Self::parse_as(text, true)
    }

    fn parse_as(text: &str, url: bool) -> Self {
        let list = |prefix: Box<[u8]>| {
            if url {
                Part::UidList(prefix)
            } else {
                Part::Uids(prefix)
            }
        };
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut literal_start = 0;
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let placeholder = if rest.starts_with(b"{seq}") {
                Some((Part::Seq, "{seq}".len()))
            } else if rest.starts_with(b"{ts}") {
                Some((Part::Ts, "{ts}".len()))
            } else if rest.starts_with(b"{uid}") {
                Some((Part::Uid, "{uid}".len()))
            } else if rest.starts_with(b"{uids}") {
                Some((list(Box::default()), "{uids}".len()))
            } else if rest.starts_with(b"{uids:") {
                // The prefix runs to the next `}`; a `{` before it means this is no placeholder.
                let prefix = &rest["{uids:".len()..];
                match prefix.iter().position(|&b| b == b'{' || b == b'}') {
                    Some(end) if prefix[end] == b'}' => {
                        Some((list(prefix[..end].into()), "{uids:".len() + end + 1))
                    }
                    _ => None,
                }
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

    /// Whether `{uid}` is in the template.
    pub fn has_uid(&self) -> bool {
        self.parts.contains(&Part::Uid)
    }

    /// Whether `{uids}` or `{uids:PREFIX}` is in the template.
    pub fn has_uids(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Uids(_) | Part::UidList(_)))
    }

    /// Whether the template has any placeholder at all (rendering it is then more than a copy).
    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|part| !matches!(part, Part::Text(_)))
    }

    /// Appends the body of push `seq`, published at `ts` (ns since the UNIX epoch) for the
    /// clients `uids` (empty in a broadcast run), to `out`.
    pub fn render(&self, seq: u64, ts: u64, uids: &[u64], out: &mut Vec<u8>) {
        for part in &self.parts {
            // Writing a number into a Vec cannot fail.
            let _ = match part {
                Part::Text(text) => {
                    out.extend_from_slice(text);
                    Ok(())
                }
                Part::Seq => write!(out, "{seq}"),
                Part::Ts => write!(out, "{ts}"),
                Part::Uid => match uids.first() {
                    Some(uid) => write!(out, "{uid}"),
                    None => Ok(()),
                },
                Part::Uids(prefix) => {
                    for (i, uid) in uids.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.push(b'"');
                        out.extend_from_slice(prefix);
                        let _ = write!(out, "{uid}");
                        out.push(b'"');
                    }
                    Ok(())
                }
                Part::UidList(prefix) => {
                    for (i, uid) in uids.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(prefix);
                        let _ = write!(out, "{uid}");
                    }
                    Ok(())
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, seq: u64, ts: u64) -> String {
        render_for(template, seq, ts, &[])
    }

    fn render_for(template: &str, seq: u64, ts: u64, uids: &[u64]) -> String {
        let mut out = Vec::new();
        Template::parse(template).render(seq, ts, uids, &mut out);
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

    #[test]
    fn uid_placeholders() {
        let body = r#"{"uids":["c{uid}"],"events":[{"data":"{seq} {ts}"}]}"#;
        assert_eq!(
            render_for(body, 3, 4, &[17]),
            r#"{"uids":["c17"],"events":[{"data":"3 4"}]}"#
        );
        // `{uid}` is the first of several.
        assert_eq!(render_for("u{uid}", 0, 0, &[5, 6]), "u5");
        assert_eq!(
            render_for(r#"{"uids":[{uids:c}],"x":{seq}}"#, 9, 0, &[17, 42, 3]),
            r#"{"uids":["c17","c42","c3"],"x":9}"#
        );
        assert_eq!(render_for("[{uids}]", 0, 0, &[1, 2]), r#"["1","2"]"#);
        assert_eq!(render_for("[{uids:user-}]", 0, 0, &[8]), r#"["user-8"]"#);
        assert_eq!(render_for("[{uids:}]", 0, 0, &[8]), r#"["8"]"#);
        // Without uids (a broadcast run) they render as nothing.
        assert_eq!(render_for("[{uids:c}]{uid}", 0, 0, &[]), "[]");
        // Near misses are text.
        assert_eq!(render_for("{uids:c{seq}}", 1, 0, &[2]), "{uids:c1}");
        assert_eq!(render_for("{uids:c", 1, 0, &[2]), "{uids:c");
        assert_eq!(
            render_for("{uid }{UID}{uidx}", 1, 0, &[2]),
            "{uid }{UID}{uidx}"
        );
    }

    #[test]
    fn which_placeholders() {
        let template = Template::parse(r#"{"uids":["c{uid}"],"events":[{"data":"{seq} {ts}"}]}"#);
        assert!(template.has_uid() && !template.has_uids() && template.has_seq_then_ts());
        let template = Template::parse("[{uids:c}] {seq} {ts}");
        assert!(!template.has_uid() && template.has_uids());
        assert!(Template::parse("[{uids}]").has_uids());
        let broadcast = Template::parse(r#"{"events":[{"data":"{seq} {ts}"}]}"#);
        assert!(!broadcast.has_uid() && !broadcast.has_uids());
    }

    fn render_url(template: &str, seq: u64, uids: &[u64]) -> String {
        let mut out = Vec::new();
        Template::parse_url(template).render(seq, 0, uids, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn url_placeholders() {
        // `{uid}`: the first client's index, as in a body.
        assert_eq!(render_url("/push?uid=c{uid}", 0, &[17]), "/push?uid=c17");
        assert_eq!(render_url("/push/{uid}", 0, &[5, 6]), "/push/5");
        // `{uids:PREFIX}`: a bare comma-separated list, no quotes.
        assert_eq!(
            render_url("/push?uids={uids:c}", 0, &[17, 42, 3]),
            "/push?uids=c17,c42,c3"
        );
        assert_eq!(
            render_url("/push?uids={uids}&x=1", 0, &[1, 2]),
            "/push?uids=1,2&x=1"
        );
        assert_eq!(
            render_url("/p?s={seq}&u={uids:u-}", 9, &[8]),
            "/p?s=9&u=u-8"
        );
        // Near misses are text; no placeholder, no change.
        assert_eq!(
            render_url("/push?uids={uids:c", 0, &[2]),
            "/push?uids={uids:c"
        );
        assert_eq!(render_url("/push?x={}", 0, &[2]), "/push?x={}");
        assert_eq!(render_url("/push", 0, &[2]), "/push");
        // Without uids, they render as nothing.
        assert_eq!(
            render_url("/push?uids={uids:c}&uid={uid}", 0, &[]),
            "/push?uids=&uid="
        );
    }

    #[test]
    fn which_url_placeholders() {
        let url = Template::parse_url("/push?uids={uids:c}");
        assert!(url.has_uids() && !url.has_uid() && url.has_placeholders());
        let url = Template::parse_url("/push?uid=c{uid}");
        assert!(url.has_uid() && !url.has_uids() && url.has_placeholders());
        assert!(!Template::parse_url("/push?x={}&y={uid").has_placeholders());
        assert!(!Template::parse_url("/push").has_placeholders());
        // The body's `{uids}` keeps its quotes.
        assert!(Template::parse("[{uids}]").has_placeholders());
    }
}
