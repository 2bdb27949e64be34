//! The lean event-stream parser: finds the event boundaries and, in each event's data, the first
//! two runs of ASCII digits (the push's sequence number and its publish time).
//!
//! It keeps a few words of state and never buffers a line: bytes are looked at once, as they
//! arrive, so a client costs no read buffer of its own and an event no allocation. The line rules
//! are the spec's (LF, CRLF or CR end a line, also split across reads; `:` starts a comment; a
//! blank line dispatches; the `data` lines of an event are joined with LF), but only the `data`
//! field is read (of an `event` field, only that it is there: see [`Parsed::Stamped::typed`]),
//! and a UTF-8 BOM is not skipped (the generator's own pushes never start
//! with digits hidden behind one).

/// What one dispatched event carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Its data had two runs of digits: the sequence number and the publish time.
    Stamped {
        /// The first run of digits.
        seq: u64,
        /// The second run of digits: ns since the UNIX epoch.
        ts: u64,
        /// The event had an `event` field with a type (any but empty): so a run can tell the pushes of another
        /// publisher (`--typed`) from its own, both stamped, on the same streams.
        typed: bool,
    },
    /// An event whose data had fewer than two runs of digits (a server's own event).
    Other,
}

/// Where in a line the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Nothing of the line yet.
    Start,
    /// The field name so far matches the first `n` bytes of `data`.
    Name(u8),
    /// The field name so far matches the first `n` bytes of `event`.
    TypeName(u8),
    /// In the value of an `event` field, before its first byte that counts; `true` while the
    /// next byte may be the one space the spec drops.
    TypeValue(bool),
    /// In the value of a `data` field; `true` until the first byte, which may be the one
    /// space the spec drops.
    Data(bool),
    /// In a comment, a field other than `data`, or a value whose digits are all found.
    Skip,
}

/// The incremental parser of one stream.
#[derive(Debug, Clone)]
pub struct SseParser {
    line: Line,
    /// The last byte was CR: an LF right after it ends no second line.
    after_cr: bool,
    /// The event has at least one `data` field.
    has_data: bool,
    /// The event has an `event` field.
    typed: bool,
    /// Runs of digits completed in this event's data (only the first two matter).
    runs: u8,
    /// Inside a run of digits.
    in_run: bool,
    /// The value of the current run (saturating: a number too large for u64 cannot be ours).
    value: u64,
    seq: u64,
    ts: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

const DATA: &[u8; 4] = b"data";
const EVENT: &[u8; 5] = b"event";

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self {
            line: Line::Start,
            after_cr: false,
            has_data: false,
            typed: false,
            runs: 0,
            in_run: false,
            value: 0,
            seq: 0,
            ts: 0,
        }
    }

    /// Feeds the next bytes of the stream; `on_event` is called for each event dispatched.
    pub fn feed(&mut self, input: &[u8], mut on_event: impl FnMut(Parsed)) {
        let mut at = 0;
        while at < input.len() {
            let byte = input[at];
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    at += 1;
                    continue;
                }
            }
            if byte == b'\r' || byte == b'\n' {
                self.end_line(&mut on_event);
                self.after_cr = byte == b'\r';
                at += 1;
                continue;
            }
            match self.line {
                Line::Start => {
                    self.line = if byte == DATA[0] {
                        Line::Name(1)
                    } else if byte == EVENT[0] {
                        Line::TypeName(1)
                    } else {
                        // A comment (`:`) or a field we do not read.
                        Line::Skip
                    };
                }
                Line::Name(4) => {
                    self.line = if byte == b':' {
                        self.has_data = true;
                        Line::Data(true)
                    } else {
                        Line::Skip
                    };
                }
                Line::Name(matched) => {
                    self.line = if byte == DATA[usize::from(matched)] {
                        Line::Name(matched + 1)
                    } else {
                        Line::Skip
                    };
                }
                Line::TypeName(5) => {
                    self.line = if byte == b':' {
                        Line::TypeValue(true)
                    } else {
                        Line::Skip
                    };
                }
                Line::TypeValue(first) => {
                    // Any value but the empty one (which is `message`); which does not matter.
                    if !(first && byte == b' ') {
                        self.typed = true;
                        self.line = Line::Skip;
                    } else {
                        self.line = Line::TypeValue(false);
                    }
                }
                Line::TypeName(matched) => {
                    self.line = if byte == EVENT[usize::from(matched)] {
                        Line::TypeName(matched + 1)
                    } else {
                        Line::Skip
                    };
                }
                Line::Data(first) => {
                    self.line = Line::Data(false);
                    if !(first && byte == b' ') {
                        self.data_byte(byte);
                    }
                }
                Line::Skip => {
                    // Jump to the line end: most bytes of a stream are skipped here.
                    at = memchr::memchr2(b'\r', b'\n', &input[at..])
                        .map_or(input.len(), |end| at + end);
                    continue;
                }
            }
            at += 1;
        }
    }

    fn data_byte(&mut self, byte: u8) {
        if byte.is_ascii_digit() {
            self.in_run = true;
            self.value = self
                .value
                .saturating_mul(10)
                .saturating_add(u64::from(byte - b'0'));
        } else {
            self.end_run();
            if self.runs >= 2 {
                // Both numbers found: the rest of the line cannot change the result.
                self.line = Line::Skip;
            }
        }
    }

    fn end_run(&mut self) {
        if !self.in_run {
            return;
        }
        match self.runs {
            0 => self.seq = self.value,
            1 => self.ts = self.value,
            _ => {}
        }
        self.runs = self.runs.saturating_add(1);
        self.in_run = false;
        self.value = 0;
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(Parsed)) {
        match self.line {
            // A blank line: dispatch.
            Line::Start => {
                if self.has_data {
                    on_event(if self.runs >= 2 {
                        Parsed::Stamped {
                            seq: self.seq,
                            ts: self.ts,
                            typed: self.typed,
                        }
                    } else {
                        Parsed::Other
                    });
                }
                self.has_data = false;
                self.typed = false;
                self.runs = 0;
            }
            // `data` with no colon: a data field with an empty value.
            Line::Name(4) => self.has_data = true,
            // An empty type (`event`, `event:` or `event: `) is no type: `message`.
            Line::TypeName(_) | Line::TypeValue(_) => {}
            // The LF that joins data lines ends a run of digits.
            Line::Data(_) => self.end_run(),
            Line::Name(_) | Line::Skip => {}
        }
        self.line = Line::Start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes and collects the events.
    fn parse(input: &str, step: usize) -> Vec<Parsed> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for piece in input.as_bytes().chunks(step) {
            parser.feed(piece, |event| events.push(event));
        }
        events
    }

    fn stamped(seq: u64, ts: u64) -> Parsed {
        Parsed::Stamped {
            seq,
            ts,
            typed: false,
        }
    }

    /// Every way of cutting `input` gives `expected`.
    fn check(input: &str, expected: &[Parsed]) {
        for step in 1..=input.len().max(1) {
            assert_eq!(
                parse(input, step),
                expected,
                "{input:?} in pieces of {step}"
            );
        }
    }

    #[test]
    fn line_ends() {
        let expected = [stamped(1, 100), stamped(2, 200)];
        check("data: 1 100\n\ndata: 2 200\n\n", &expected);
        check("data: 1 100\r\n\r\ndata: 2 200\r\n\r\n", &expected);
        check("data: 1 100\r\rdata: 2 200\r\r", &expected);
        check("data: 1 100\r\n\ndata: 2 200\r\r\n", &expected);
    }

    #[test]
    fn comments_and_other_fields_are_ignored() {
        check(
            ":ok\n: 5 6\nid: 01ABC 7 8\nretry: 11\ndata:3 300 x\n\n:\n\n",
            &[stamped(3, 300)],
        );
        // Field names that only start like `data`.
        check("dat: 1 2\ndatas: 3 4\ndata 5 6\n\n", &[]);
        // An event without data is not dispatched at all.
        check("id: 1\n\n", &[]);
    }

    #[test]
    fn an_event_field_marks_the_event_typed_whatever_its_value() {
        let typed = |seq, ts| Parsed::Stamped {
            seq,
            ts,
            typed: true,
        };
        check(
            "event: 9 10\ndata: 3 300\n\ndata: 4 400\n\ndata: 5 500\nevent:x\n\n",
            &[typed(3, 300), stamped(4, 400), typed(5, 500)],
        );
        // Only the field named exactly `event`, and an empty value is no type.
        check(
            "even: x\nevents: y\nevent\nevent:\nevent: \ndata: 1 2\n\n",
            &[stamped(1, 2)],
        );
    }

    #[test]
    fn events_without_two_numbers_are_other() {
        check(
            "data: hello_world_1\n\ndata\n\ndata:\n\ndata: 7\n\n",
            &[Parsed::Other, Parsed::Other, Parsed::Other, Parsed::Other],
        );
    }

    #[test]
    fn multi_line_data_joins_with_lf() {
        // The LF between two data lines separates runs of digits.
        check("data: 12\ndata: 34 rest\n\n", &[stamped(12, 34)]);
        check("data: {\"x\":\ndata: \"5 6\"}\n\n", &[stamped(5, 6)]);
        // Only one leading space is dropped; digits in JSON around them are fine.
        check(
            "data:  {\"events\":[\"42 1700000000000000000 xx 99\"]}\n\n",
            &[stamped(42, 1_700_000_000_000_000_000)],
        );
    }

    #[test]
    fn state_does_not_leak_between_events() {
        check(
            "data: 1\n\ndata: 2 3 4\n\ndata: x\n\n",
            &[Parsed::Other, stamped(2, 3), Parsed::Other],
        );
        check(
            &format!("data: {} 5\n\ndata: 6 7\n\n", "9".repeat(40)),
            &[stamped(u64::MAX, 5), stamped(6, 7)],
        );
    }
}
