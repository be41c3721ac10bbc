//! Bounded handling of a child's output: a ring buffer that keeps only the
//! last bytes of a stream, and a splitter that turns arbitrary chunks into
//! display lines of bounded length.
//!
//! Both exist so that a step printing gigabytes (a runaway `yes`, a log dump
//! without newlines) costs the engine a fixed amount of memory: nothing here
//! ever holds more than its configured limit.

/// The last `cap` bytes of a stream, plus how many bytes came before them.
pub(crate) struct Tail {
    /// Up to `cap` bytes. Until it is full, the oldest byte is at index 0;
    /// once full, it is a ring whose oldest byte is at `head`.
    buf: Vec<u8>,
    head: usize,
    cap: usize,
    /// Every byte ever pushed, kept or not.
    total: u64,
}

/// What a [`Tail`] kept, ready to become step outputs.
pub(crate) struct Captured {
    /// The kept text (lossy UTF-8), trailing newlines removed.
    pub(crate) text: String,
    /// Bytes dropped from the front (0 when nothing was cut). When output
    /// was cut, the partial first line is dropped too, so `text` starts at
    /// a line boundary whenever the kept bytes contain one.
    pub(crate) dropped: u64,
}

impl Captured {
    /// The note placed before cut output.
    pub(crate) fn note(&self) -> Option<String> {
        (self.dropped > 0).then(|| truncation_note(self.dropped))
    }

    /// The text with the truncation note as its first line when cut.
    pub(crate) fn into_text_with_note(self) -> String {
        match self.note() {
            Some(note) if self.text.is_empty() => note,
            Some(note) => format!("{note}\n{}", self.text),
            None => self.text,
        }
    }
}

/// The first line of a captured stream whose beginning was dropped.
pub(crate) fn truncation_note(dropped: u64) -> String {
    format!("[runbook: output truncated, first {dropped} bytes dropped]")
}

impl Tail {
    /// An empty tail keeping at most `cap` bytes (`cap` > 0).
    pub(crate) fn new(cap: usize) -> Self {
        Tail {
            buf: Vec::new(),
            head: 0,
            cap: cap.max(1),
            total: 0,
        }
    }

    /// Appends `data`, forgetting the oldest bytes beyond the limit.
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if data.len() >= self.cap {
            // The chunk alone fills the buffer: only its end survives.
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - self.cap..]);
            self.head = 0;
            return;
        }
        if self.buf.len() < self.cap {
            let n = (self.cap - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        // Full: overwrite the oldest bytes, wrapping around.
        while !data.is_empty() {
            let n = (self.cap - self.head).min(data.len());
            self.buf[self.head..self.head + n].copy_from_slice(&data[..n]);
            self.head = (self.head + n) % self.cap;
            data = &data[n..];
        }
    }

    /// Every byte pushed so far, kept or not.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The kept bytes in order, and how many bytes were dropped.
    pub(crate) fn finish(self) -> Captured {
        // Put in order where they are: a megabyte of output is copied once
        // on its way to the outputs, not once per step of the conversion.
        let mut bytes = self.buf;
        bytes.rotate_left(self.head);
        let mut dropped = self.total - bytes.len() as u64;
        if dropped > 0 {
            // The first kept line is a fragment; a reader is better served
            // by whole lines, so drop the fragment too, unless it is most of
            // what was kept (a single huge line would leave nothing). Then
            // only a split character at its start goes.
            let cut = match memchr::memchr(b'\n', &bytes) {
                Some(newline) if newline <= bytes.len() / 2 => newline + 1,
                _ => bytes
                    .iter()
                    .take(3)
                    .take_while(|&&b| b & 0xC0 == 0x80)
                    .count(),
            };
            bytes.drain(..cut);
            dropped += cut as u64;
        }
        let kept = bytes.iter().rposition(|&b| b != b'\n' && b != b'\r');
        bytes.truncate(kept.map_or(0, |last| last + 1));
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(invalid) => String::from_utf8_lossy(invalid.as_bytes()).into_owned(),
        };
        Captured { text, dropped }
    }
}

/// Complete display lines waiting to be sent as one message: each line is
/// followed by `\n`.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) text: String,
}

impl Batch {
    /// Appends one line (which contains no `\n`).
    fn push_line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Appends complete lines, each already followed by `\n`.
    fn push_block(&mut self, block: &str) {
        self.text.push_str(block);
    }

    /// Takes the lines gathered so far, leaving the batch empty.
    pub(crate) fn take(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

/// Masks what a cut leaves of a secret: the pieces of an over-long line are
/// shown, and redacted, one by one, so a secret cut in two would otherwise
/// show as two halves that each look harmless.
pub(crate) struct CutMasks<'a> {
    /// For a piece whose end was cut.
    pub(crate) end: &'a (dyn Fn(&str) -> String + Sync),
    /// For a piece whose start was cut.
    pub(crate) start: &'a (dyn Fn(&str) -> String + Sync),
}

/// Splits a byte stream into lines for live display. A line longer than
/// `max` bytes is emitted in pieces of at most `max` bytes, cut at a UTF-8
/// character boundary where possible, so one endless line cannot grow
/// memory without bound.
pub(crate) struct LineSplitter<'a> {
    pending: Vec<u8>,
    max: usize,
    /// Whether the start of the line in `pending` was cut off (a piece of
    /// it was emitted or skipped).
    continued: bool,
    masks: Option<CutMasks<'a>>,
}

impl<'a> LineSplitter<'a> {
    /// A splitter emitting lines of at most `max` bytes (`max` >= 4).
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max: max.max(4),
            continued: false,
            masks: None,
        }
    }

    /// Passes each piece of an over-long line through `masks`.
    pub(crate) fn with_cut_masks(mut self, masks: CutMasks<'a>) -> Self {
        self.masks = Some(masks);
        self
    }

    /// Emits `pending` as the end of its line, and starts a new line.
    fn emit_pending(&mut self, out: &mut Batch) {
        let line = self.pending.strip_suffix(b"\r").unwrap_or(&self.pending);
        let text = lossy(line);
        match (&self.masks, self.continued) {
            (Some(masks), true) => out.push_line(&(masks.start)(&text)),
            _ => out.push_line(&text),
        }
        self.pending.clear();
        self.continued = false;
    }

    /// Feeds a chunk; `out` receives every complete line (without its line
    /// ending) and every full-length piece of an over-long line.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut Batch) {
        if !self.pending.is_empty() {
            // Finish the line started by an earlier chunk first.
            let Some(newline) = memchr::memchr(b'\n', data) else {
                self.pending.extend_from_slice(data);
                self.emit_long_pieces(out);
                return;
            };
            self.pending.extend_from_slice(&data[..newline]);
            self.emit_long_pieces(out);
            self.emit_pending(out);
            data = &data[newline + 1..];
        }
        // memchr's vectorized search: a plain byte loop cost 3 instructions
        // per byte of output (a 50 MB line is all one search).
        if let Some(last) = memchr::memrchr(b'\n', data) {
            let (complete, rest) = data.split_at(last + 1);
            // The common case, and the one that matters for a step printing
            // millions of short lines: the chunk's complete lines are valid
            // UTF-8 without carriage returns and none can be over-long, so
            // they go to the batch as they are, in one copy, without looking
            // at each line.
            let fast = complete.len() <= self.max + 1 && memchr::memchr(b'\r', complete).is_none();
            match std::str::from_utf8(complete) {
                Ok(block) if fast => out.push_block(block),
                _ => {
                    for segment in complete[..last].split(|&b| b == b'\n') {
                        if segment.len() <= self.max {
                            emit_line(segment, out);
                        } else {
                            self.pending.extend_from_slice(segment);
                            self.emit_long_pieces(out);
                            self.emit_pending(out);
                        }
                    }
                }
            }
            data = rest;
        }
        self.pending.extend_from_slice(data);
        self.emit_long_pieces(out);
    }

    /// Takes a chunk whose lines are not to be shown: keeps the state of the
    /// line in progress as [`Self::feed`] would and returns how many lines
    /// (or pieces of over-long lines) it would have emitted. Counting is
    /// all a flood costs past the live output's allowance.
    pub(crate) fn skip(&mut self, data: &[u8]) -> u64 {
        let mut skipped = memchr::memchr_iter(b'\n', data).count() as u64;
        match memchr::memrchr(b'\n', data) {
            Some(last) => {
                self.pending.clear();
                self.pending.extend_from_slice(&data[last + 1..]);
                self.continued = false;
            }
            None => self.pending.extend_from_slice(data),
        }
        if self.pending.len() > self.max {
            // Whole pieces of an endless line; the rest stays pending.
            let pieces = (self.pending.len() - 1) / self.max;
            skipped += pieces as u64;
            self.pending.drain(..pieces * self.max);
            self.continued = true;
        }
        skipped
    }

    /// Emits what is left after the stream ended without a final newline.
    pub(crate) fn finish(&mut self, out: &mut Batch) {
        if !self.pending.is_empty() {
            self.emit_pending(out);
        }
    }

    /// While `pending` is longer than `max`, emits its first piece.
    fn emit_long_pieces(&mut self, out: &mut Batch) {
        while self.pending.len() > self.max {
            let mut cut = self.max;
            // Do not split a multi-byte character: back off over at most
            // three continuation bytes (0b10xx_xxxx).
            for _ in 0..3 {
                if self.pending[cut] & 0xC0 == 0x80 {
                    cut -= 1;
                } else {
                    break;
                }
            }
            if self.pending[cut] & 0xC0 == 0x80 {
                // Not UTF-8 anyway: cut at the limit.
                cut = self.max;
            }
            let piece = lossy(&self.pending[..cut]);
            match &self.masks {
                Some(masks) => {
                    let piece = if self.continued {
                        (masks.start)(&piece)
                    } else {
                        piece.into_owned()
                    };
                    out.push_line(&(masks.end)(&piece));
                }
                None => out.push_line(&piece),
            }
            self.pending.drain(..cut);
            self.continued = true;
        }
    }
}

/// Emits one line, without a trailing carriage return (CRLF output).
fn emit_line(line: &[u8], out: &mut Batch) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    out.push_line(&lossy(line));
}

/// `bytes` as text, invalid UTF-8 replaced. Valid text (nearly all output)
/// takes `from_utf8`'s fast path: `from_utf8_lossy` walks valid input in
/// small chunks, and was a seventh of the engine's time on a 50 MB line.
fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut batch = Batch::default();
        let mut take = |batch: &mut Batch| {
            let text = batch.take();
            assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
            out.extend(text.split_terminator('\n').map(str::to_string));
        };
        for chunk in chunks {
            splitter.feed(chunk, &mut batch);
            take(&mut batch);
        }
        splitter.finish(&mut batch);
        take(&mut batch);
        out
    }

    #[test]
    fn tail_keeps_everything_under_the_limit() {
        let mut tail = Tail::new(16);
        tail.push(b"hello\n");
        tail.push(b"world\n");
        let captured = tail.finish();
        assert_eq!(captured.text, "hello\nworld");
        assert_eq!(captured.dropped, 0);
        assert_eq!(captured.into_text_with_note(), "hello\nworld");
    }

    #[test]
    fn tail_keeps_the_last_bytes_across_wraps() {
        let mut tail = Tail::new(10);
        for i in 0..100u8 {
            tail.push(&[b'a' + i % 26]);
        }
        tail.push(b"\n0123");
        // Last 10 bytes: "rstuv\n0123"; the fragment before the newline goes.
        let captured = tail.finish();
        assert_eq!(captured.text, "0123");
        assert_eq!(captured.dropped, 101);
        assert_eq!(
            captured.into_text_with_note(),
            "[runbook: output truncated, first 101 bytes dropped]\n0123"
        );
    }

    #[test]
    fn a_huge_last_line_keeps_its_end_instead_of_vanishing() {
        let mut tail = Tail::new(10);
        tail.push("abcdefghijklmnop".as_bytes());
        tail.push(b"\nxy");
        // Last 10 bytes: "jklmnop\nxy"; the fragment is most of them.
        let captured = tail.finish();
        assert_eq!(captured.text, "jklmnop\nxy");
        assert_eq!(captured.dropped, 9);
        // A character split by the cut is dropped, not shown as U+FFFD.
        let mut tail = Tail::new(11);
        tail.push("aaaaaéééééé\nz".as_bytes());
        let captured = tail.finish();
        assert_eq!(captured.text, "éééé\nz");
    }

    #[test]
    fn tail_handles_a_chunk_larger_than_the_limit() {
        let mut tail = Tail::new(4);
        tail.push(b"ab");
        tail.push(b"cdefgh");
        let captured = tail.finish();
        assert_eq!(captured.text, "efgh");
        assert_eq!(captured.dropped, 4);
    }

    #[test]
    fn splitter_joins_lines_across_chunks_and_strips_cr() {
        assert_eq!(
            lines(64, &[b"one\r\ntw", b"o\nthr", b"ee"]),
            vec!["one", "two", "three"]
        );
    }

    #[test]
    fn splitter_cuts_long_lines() {
        assert_eq!(
            lines(4, &[b"abcdefghij\nxy\n"]),
            vec!["abcd", "efgh", "ij", "xy"]
        );
        assert_eq!(
            lines(4, &[b"abc", b"defgh", b"ij"]),
            vec!["abcd", "efgh", "ij"]
        );
    }

    #[test]
    fn a_secret_cut_between_two_pieces_is_masked_in_both() {
        let redactor = runbook_engine::Redactor::new();
        redactor.add("TOPSECRETPASSWORD1234");
        let end = |t: &str| redactor.redact_cut_end(t);
        let start = |t: &str| redactor.redact_cut_start(t);
        let line = format!(
            "{}TOPSECRETPASSWORD1234{}\n",
            "x".repeat(25),
            "y".repeat(10)
        );
        // Every way of cutting the stream into chunks gives the same pieces.
        for size in [1, 7, 32, line.len()] {
            let mut splitter = LineSplitter::new(32).with_cut_masks(CutMasks {
                end: &end,
                start: &start,
            });
            let mut batch = Batch::default();
            for chunk in line.as_bytes().chunks(size) {
                splitter.feed(chunk, &mut batch);
            }
            splitter.finish(&mut batch);
            let shown = batch.take();
            assert_eq!(
                shown,
                format!("{}***\n***{}\n", "x".repeat(25), "y".repeat(10)),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn splitter_does_not_split_characters() {
        // "aéé" is 5 bytes: a, c3 a9, c3 a9. A cut at 4 would split the
        // second é, so the first piece is "aé".
        assert_eq!(lines(4, &["aééb".as_bytes()]), vec!["aé", "éb"]);
    }

    #[test]
    fn splitter_batches_whatever_the_chunk_boundaries() {
        // Every way of cutting the input into equal chunks gives the same
        // lines, whether a chunk's complete lines take the one-copy path
        // (short, clean lines) or the line-by-line path (a CR, invalid
        // UTF-8, a split character, a line longer than `max`).
        let inputs: [&[u8]; 2] = [
            b"1\n22\n\n333\n4444\n55555\n666666\n",
            b"a\r\nb\xffc\n\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\ntoo-long-line\n\nend",
        ];
        for input in inputs {
            let whole = lines(8, &[input]);
            for size in 1..=input.len() {
                let chunks: Vec<&[u8]> = input.chunks(size).collect();
                assert_eq!(lines(8, &chunks), whole, "chunks of {size}");
            }
        }
        assert_eq!(
            lines(8, &[inputs[0]]),
            ["1", "22", "", "333", "4444", "55555", "666666"]
        );
        assert_eq!(
            lines(8, &[inputs[1]]),
            [
                "a",
                "b\u{fffd}c",
                "\u{e9}\u{e9}\u{e9}\u{e9}",
                "\u{e9}",
                "too-long",
                "-line",
                "",
                "end"
            ]
        );
    }

    #[test]
    fn splitter_batches_complete_lines_and_keeps_the_partial_one() {
        let mut splitter = LineSplitter::new(64);
        let mut batch = Batch::default();
        splitter.feed(b"a\nb\nc\npartial", &mut batch);
        assert_eq!(batch.take(), "a\nb\nc\n");
        assert_eq!(batch.text, "");
        splitter.feed(b" line\n", &mut batch);
        splitter.finish(&mut batch);
        assert_eq!(batch.take(), "partial line\n");
    }

    #[test]
    fn skipping_counts_the_lines_feeding_would_emit_and_keeps_the_partial_one() {
        let chunks: [&[u8]; 5] = [b"ab", b"c\nd\ne", b"fgh", b"ijklmnopqrstu", b"v\nw\n"];
        for skipped in 0..chunks.len() {
            // Feed every chunk but one, which is skipped: the lines emitted
            // and the lines counted add up to what feeding all would emit,
            // and what follows the skipped chunk is unaffected by it.
            let mut splitter = LineSplitter::new(4);
            let mut batch = Batch::default();
            let mut counted = 0;
            for (i, chunk) in chunks.iter().enumerate() {
                if i == skipped {
                    counted += splitter.skip(chunk);
                } else {
                    splitter.feed(chunk, &mut batch);
                }
            }
            splitter.finish(&mut batch);
            let emitted = batch.text.lines().count() as u64;
            assert_eq!(
                emitted + counted,
                lines(4, &chunks).len() as u64,
                "{skipped}"
            );
            if skipped < chunks.len() - 1 {
                assert!(
                    batch.text.ends_with("uv\nw\n"),
                    "{skipped}: {:?}",
                    batch.text
                );
            }
        }
    }

    #[test]
    fn splitter_converts_invalid_utf8_lossily() {
        assert_eq!(lines(64, &[b"a\xffb\n"]), vec!["a\u{fffd}b"]);
    }
}
