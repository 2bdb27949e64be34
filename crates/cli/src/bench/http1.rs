//! Just enough HTTP/1.1 to read responses: the head (status, framing, `Connection: close`) and a
//! streaming body decoder (chunked, length-delimited, or until close).
//!
//! Hand-written rather than hyper so that a client costs a few bytes of state and no task of
//! its own: the generator holds up to ~20,000 streams on one core and must not be the bottleneck.

/// A response head is refused past this size, so a broken server cannot grow the generator.
pub const MAX_HEAD_LEN: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is longer than [`MAX_HEAD_LEN`].
    #[error("response head longer than {MAX_HEAD_LEN} bytes")]
    HeadTooLong,
    /// The status line or a header line is malformed.
    #[error("malformed response head: {0}")]
    BadHead(&'static str),
    /// The chunked body is malformed.
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length` bytes.
    Length(u64),
    /// Until the server closes the connection.
    UntilClose,
}

/// The parts of a response head the generator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How the body ends.
    pub framing: Framing,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// Parses a response head at the start of `buf`: `Ok(None)` when it is not complete yet, else
/// the head and its length in bytes (the body starts there).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n").map(|at| at + 4) else {
        return if buf.len() > MAX_HEAD_LEN {
            Err(HttpError::HeadTooLong)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD_LEN {
        return Err(HttpError::HeadTooLong);
    }
    let mut lines = buf[..end - 4].split(|&byte| byte == b'\n').map(trim_cr);
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status(status_line).ok_or(HttpError::BadHead("status line"))?;
    let mut framing = Framing::UntilClose;
    let mut close = status_line.starts_with(b"HTTP/1.0 ");
    for line in lines {
        let colon = memchr::memchr(b':', line).ok_or(HttpError::BadHead("header line"))?;
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding decides the framing; anything else but chunked reads to close.
            let last = value
                .rsplit(|&byte| byte == b',')
                .next()
                .unwrap_or_default();
            if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") && framing != Framing::Chunked {
            let length = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or(HttpError::BadHead("content-length"))?;
            framing = Framing::Length(length);
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    // These statuses have no body whatever the headers say (RFC 9112, section 6.3).
    if status < 200 || status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    if framing == Framing::UntilClose {
        close = true;
    }
    Ok(Some((
        Head {
            status,
            framing,
            close,
        },
        end,
    )))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `HTTP/1.x NNN reason` → `NNN`.
fn parse_status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    code.iter().try_fold(0u16, |status, &digit| {
        Some(status * 10 + u16::from(digit - b'0'))
    })
}

/// Where a streaming body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size of the next chunk.
    Size { size: u64, digits: u8 },
    /// Skipping a chunk extension up to the end of the size line.
    Extension { size: u64 },
    /// After the CR of the size line.
    SizeLf { size: u64 },
    /// Inside a chunk, or inside a length-delimited body: bytes left.
    Data { left: u64, chunked: bool },
    /// After a chunk's data: expecting its CRLF.
    DataCr,
    /// After the CR that ends a chunk's data.
    DataLf,
    /// In the trailer section, at the start of a line (`true`) or inside one.
    Trailer { line_start: bool },
    /// Until the server closes.
    UntilClose,
    /// The body ended.
    Done,
}

/// Decodes a response body fed in pieces, handing the payload bytes to a callback without
/// copying them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Chunked => State::Size { size: 0, digits: 0 },
            Framing::Length(0) => State::Done,
            Framing::Length(left) => State::Data {
                left,
                chunked: false,
            },
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds `input`, calling `payload` with each run of body bytes. Returns how many bytes of
    /// `input` belong to this body: all of them, or fewer when the body ended inside `input`
    /// (the rest is the next response on a keep-alive connection).
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
        mut payload: impl FnMut(&'a [u8]),
    ) -> Result<usize, HttpError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Done => return Ok(at),
                State::UntilClose => {
                    payload(&input[at..]);
                    return Ok(input.len());
                }
                State::Data { left, chunked } => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - at);
                    payload(&input[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = match (left, chunked) {
                        (0, true) => State::DataCr,
                        (0, false) => State::Done,
                        (left, chunked) => State::Data { left, chunked },
                    };
                }
                _ => {
                    self.framing_byte(input[at])?;
                    at += 1;
                }
            }
        }
        Ok(at)
    }

    /// One byte of chunk framing (sizes, extensions, line ends, trailers). Bare LF is accepted
    /// where CRLF is due, as most clients do.
    fn framing_byte(&mut self, byte: u8) -> Result<(), HttpError> {
        self.state = match (self.state, byte) {
            (State::Size { size, digits }, _) if byte.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err(HttpError::BadChunk("chunk size too large"));
                }
                let digit = char::from(byte).to_digit(16).unwrap_or_default();
                State::Size {
                    size: size * 16 + u64::from(digit),
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => {
                return Err(HttpError::BadChunk("missing chunk size"));
            }
            (State::Size { size, .. }, b';' | b' ' | b'\t') => State::Extension { size },
            (
                State::Size { size, .. } | State::Extension { size } | State::SizeLf { size },
                b'\n',
            ) => {
                if size == 0 {
                    State::Trailer { line_start: true }
                } else {
                    State::Data {
                        left: size,
                        chunked: true,
                    }
                }
            }
            (State::Size { size, .. } | State::Extension { size }, b'\r') => State::SizeLf { size },
            (State::Size { .. } | State::SizeLf { .. }, _) => {
                return Err(HttpError::BadChunk("bad chunk size line"));
            }
            (State::Extension { size }, _) => State::Extension { size },
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataCr | State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
            (State::DataCr | State::DataLf, _) => {
                return Err(HttpError::BadChunk("chunk data longer than its size"));
            }
            (State::Trailer { line_start: true }, b'\n') => State::Done,
            (State::Trailer { line_start }, b'\r') => State::Trailer { line_start },
            (State::Trailer { .. }, b'\n') => State::Trailer { line_start: true },
            (State::Trailer { .. }, _) => State::Trailer { line_start: false },
            (state @ (State::Data { .. } | State::UntilClose | State::Done), _) => state,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        match parse_head(text.as_bytes()) {
            Ok(Some((head, len))) => {
                assert_eq!(len, text.len());
                head
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn heads() {
        assert_eq!(
            head(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Head {
                status: 200,
                framing: Framing::Chunked,
                close: false
            }
        );
        assert_eq!(
            head(
                "HTTP/1.1 500 Oops\r\nContent-Length: 12\r\nConnection: keep-alive, Close\r\n\r\n"
            ),
            Head {
                status: 500,
                framing: Framing::Length(12),
                close: true
            }
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\n\r\n"),
            Head {
                status: 200,
                framing: Framing::UntilClose,
                close: true
            }
        );
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\n\r\n").framing,
            Framing::Length(0)
        );
        assert!(head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").close);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n"), Ok(None));
        assert!(parse_head(b"HTTP/2 200\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert_eq!(
            parse_head(&vec![b'a'; MAX_HEAD_LEN + 1]),
            Err(HttpError::HeadTooLong)
        );
        // The body that follows is not part of the head.
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP")
                .ok()
                .flatten()
                .map(|(_, len)| len),
            Some(38)
        );
    }

    /// Feeds `input` in pieces of `step` bytes; returns the payload and the bytes consumed.
    fn decode_in_steps(framing: Framing, input: &[u8], step: usize) -> (Vec<u8>, usize, bool) {
        let mut decoder = BodyDecoder::new(framing);
        let mut payload = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(step) {
            let used = decoder
                .decode(piece, |bytes| payload.extend_from_slice(bytes))
                .unwrap();
            consumed += used;
            if used < piece.len() {
                break;
            }
        }
        (payload, consumed, decoder.is_done())
    }

    #[test]
    fn chunked_bodies_in_any_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..=body.len() {
            let (payload, consumed, done) = decode_in_steps(Framing::Chunked, body, step);
            assert_eq!(payload, b"hello, world", "step {step}");
            assert_eq!(consumed, body.len() - 4, "step {step}");
            assert!(done);
        }
        let (payload, _, done) = decode_in_steps(Framing::Chunked, b"A\n0123456789\n0\n\n", 3);
        assert_eq!(payload, b"0123456789");
        assert!(done);
    }

    #[test]
    fn bad_chunks() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"2\r\nabc\r\n",
            b"1234567890abcdef0\r\n",
        ] {
            let mut decoder = BodyDecoder::new(Framing::Chunked);
            assert!(decoder.decode(bad, |_| {}).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn length_and_close_bodies() {
        let (payload, consumed, done) = decode_in_steps(Framing::Length(5), b"helloHTTP", 2);
        assert_eq!(
            (payload.as_slice(), consumed, done),
            (&b"hello"[..], 5, true)
        );
        let (payload, consumed, done) = decode_in_steps(Framing::Length(0), b"HTTP", 2);
        assert_eq!((payload.as_slice(), consumed, done), (&b""[..], 0, true));
        let (payload, consumed, done) = decode_in_steps(Framing::UntilClose, b"abc", 2);
        assert_eq!(
            (payload.as_slice(), consumed, done),
            (&b"abc"[..], 3, false)
        );
    }
}
