//! Server-sent event framing (the WHATWG `text/event-stream` rules), fed with arbitrary byte
//! chunks as they arrive from the network. Plugins receive whole events, never raw bytes.
//!
//! Lines end in `\n`, `\r\n` or `\r`; an empty line dispatches the event; `data:` lines are joined
//! with `\n`; `:` starts a comment; one space after the colon is dropped. An event cut off by the
//! end of the stream is discarded, as the spec says — the plugin then sees no end marker.

/// One server-sent event as framed here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no line end: a long line arriving in small chunks is
    /// scanned once, not once per chunk.
    scanned: usize,
    event: Option<String>,
    data: String,
    has_data: bool,
}

/// Most bytes one line may hold; a longer line means a broken or hostile stream.
pub const MAX_LINE: usize = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a server-sent event line exceeded {MAX_LINE} bytes")]
pub struct LineTooLong;

impl SseDecoder {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let (mut start, mut from) = (0, self.scanned);
        loop {
            let Some(offset) = self.buf[from..]
                .iter()
                .position(|b| *b == b'\n' || *b == b'\r')
            else {
                from = self.buf.len();
                break;
            };
            let end = from + offset;
            let terminator_len = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A lone `\r` at the end of the chunk may be the first half of `\r\n`.
                    None => {
                        from = end;
                        break;
                    }
                }
            } else {
                1
            };
            let line = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            start = end + terminator_len;
            from = start;
        }
        self.buf.drain(..start);
        self.scanned = from - start;
        if self.buf.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(events)
    }

    /// The stream ended. A trailing `\r` held back in case `\n` followed is a line end after all;
    /// an unterminated last line is dropped.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.buf.last() != Some(&b'\r') {
            return None;
        }
        self.buf.push(b'\n');
        let buf = std::mem::take(&mut self.buf);
        self.scanned = 0;
        self.push(&buf).ok()?.pop()
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the `\n` after the last data line
            return Some(SseEvent { event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            _ => {} // `id`, `retry` and unknown fields do not matter to providers' streams.
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        chunks
            .iter()
            .flat_map(|c| d.push(c).expect("short lines"))
            .collect()
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    #[test]
    fn frames_events_with_names_and_multiline_data() {
        let got = all(&[b"event: ping\ndata: {}\n\n: comment\ndata: a\ndata:b\n\n"]);
        assert_eq!(got, vec![ev(Some("ping"), "{}"), ev(None, "a\nb")]);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_terminator() {
        let got = all(&[b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"]);
        assert_eq!(got, vec![ev(None, "x"), ev(None, "y")]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] = b"event: a\r\ndata: 1\r\n\r\ndata: 2\n\ndata: 3\r\rdata: [DONE]\n\n";
        let whole = all(&[stream]);
        assert_eq!(whole.len(), 4);
        for cut in 0..stream.len() {
            assert_eq!(
                all(&[&stream[..cut], &stream[cut..]]),
                whole,
                "split at {cut}"
            );
        }
    }

    #[test]
    fn a_final_cr_terminator_is_honoured_at_eof() {
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: last\r\r").expect("short"), vec![]);
        assert_eq!(d.finish(), Some(ev(None, "last")));
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: unterminated").expect("short"), vec![]);
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn an_event_cut_off_by_eof_is_not_dispatched() {
        assert_eq!(
            all(&[b"data: complete\n\ndata: partial\n"]),
            vec![ev(None, "complete")]
        );
    }

    #[test]
    fn event_name_without_data_is_dropped_and_reset() {
        assert_eq!(all(&[b"event: x\n\ndata: d\n\n"]), vec![ev(None, "d")]);
    }
}
