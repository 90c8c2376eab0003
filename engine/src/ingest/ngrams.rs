//! Streaming reader for the n-gram text file.
//!
//! One n-gram a line, in the same order as the embedding rows:
//!
//! ```text
//! t1 t2 ... tn[<TAB>count]
//! ```
//!
//! * token ids are decimal `u32`s separated by one or more spaces (leading
//!   and trailing spaces are ignored);
//! * an optional count (decimal `u64`) follows the **first** tab; spaces
//!   around it are ignored, a second tab is an error;
//! * lines end with `\n` (a `\r` before it is dropped); the newline after
//!   the last line is optional;
//! * blank lines and comments are not allowed: every line is a record.
//!
//! Line numbers in errors are **1-based**.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::error::IngestError;

/// Lines longer than this are rejected (a guard against being handed a
/// binary file, which would otherwise be buffered whole).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Iterator over the records of an n-gram text file, yielding
/// `(token ids, optional count)` per line.
///
/// After a [`IngestError::BadLine`] the iterator can be resumed with the
/// next line. After an I/O error, or a line longer than [`MAX_LINE_BYTES`],
/// it ends.
#[derive(Debug)]
pub struct NgramLines<R = BufReader<File>> {
    path: PathBuf,
    reader: R,
    buf: Vec<u8>,
    scratch: Vec<u32>,
    /// Lines consumed so far (= 1-based number of the last line read).
    line: u64,
    done: bool,
}

impl NgramLines<BufReader<File>> {
    /// Opens `path` for buffered streaming.
    pub fn open(path: &Path) -> Result<Self, IngestError> {
        let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
        Ok(Self::from_reader(path, BufReader::with_capacity(1 << 16, file)))
    }
}

impl<R: BufRead> NgramLines<R> {
    /// Reads records from `reader`; `path` is only used in errors.
    pub fn from_reader(path: impl Into<PathBuf>, reader: R) -> Self {
        NgramLines {
            path: path.into(),
            reader,
            buf: Vec::with_capacity(256),
            scratch: Vec::with_capacity(16),
            line: 0,
            done: false,
        }
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of lines consumed so far, i.e. the 1-based number of the last
    /// line returned.
    pub fn lines_read(&self) -> u64 {
        self.line
    }

    /// Whether iteration has ended (end of input, I/O error, overlong line).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Like [`Iterator::next`], but writes the token ids into `tokens`
    /// (cleared first) instead of allocating, and returns only the count.
    pub fn next_into(&mut self, tokens: &mut Vec<u32>) -> Option<Result<Option<u64>, IngestError>> {
        tokens.clear();
        if self.done {
            return None;
        }
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        match (&mut self.reader).take(limit).read_until(b'\n', &mut self.buf) {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.done = true;
                return Some(Err(IngestError::io(&self.path, e)));
            }
        }
        self.line += 1;
        let mut line = self.buf.as_slice();
        if let Some(rest) = line.strip_suffix(b"\n") {
            line = rest.strip_suffix(b"\r").unwrap_or(rest);
        } else if self.buf.len() > MAX_LINE_BYTES {
            self.done = true;
            return Some(Err(IngestError::bad_line(
                &self.path,
                self.line,
                format!("line is longer than {MAX_LINE_BYTES} bytes (is this a text file?)"),
            )));
        } else {
            // Last line without a newline.
            line = line.strip_suffix(b"\r").unwrap_or(line);
        }
        Some(parse_line(line, tokens).map_err(|r| IngestError::bad_line(&self.path, self.line, r)))
    }

    /// Consumes the rest of the input without parsing it and returns how
    /// many lines it held (a final line without a newline counts).
    pub fn count_remaining(&mut self) -> Result<u64, IngestError> {
        if self.done {
            return Ok(0);
        }
        self.done = true;
        let mut count = 0u64;
        let mut at_line_start = true;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(IngestError::io(&self.path, e)),
            };
            let Some(&last) = chunk.last() else { break };
            count += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            at_line_start = last == b'\n';
            let n = chunk.len();
            self.reader.consume(n);
        }
        if !at_line_start {
            count += 1;
        }
        self.line += count;
        Ok(count)
    }
}

impl<R: BufRead> Iterator for NgramLines<R> {
    type Item = Result<(Vec<u32>, Option<u64>), IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let item = self.next_into(&mut scratch).map(|r| r.map(|count| (scratch.as_slice().to_vec(), count)));
        self.scratch = scratch;
        item
    }
}

/// Counts the lines of an n-gram file without parsing them (for an up-front
/// check against the embedding row count).
pub fn count_ngram_lines(path: &Path) -> Result<u64, IngestError> {
    NgramLines::open(path)?.count_remaining()
}

/// Parses one line (without its line terminator) into `tokens`; returns the
/// optional count, or a reason.
fn parse_line(line: &[u8], tokens: &mut Vec<u32>) -> Result<Option<u64>, String> {
    if line.iter().all(|&b| b == b' ') {
        return Err("empty line: every line must hold an n-gram (blank lines and comments \
                    are not allowed)"
            .into());
    }
    let (token_part, count_part) = match line.iter().position(|&b| b == b'\t') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    for tok in token_part.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        let id = parse_decimal(tok, u64::from(u32::MAX)).map_err(|e| match e {
            NumError::Invalid => format!("token '{}' is not an unsigned integer", shown(tok)),
            NumError::TooLarge => format!("token id '{}' does not fit in u32 (max {})", shown(tok), u32::MAX),
        })?;
        tokens.push(id as u32);
    }
    if tokens.is_empty() {
        return Err("no token ids before the tab".into());
    }
    let Some(count) = count_part else {
        return Ok(None);
    };
    if count.contains(&b'\t') {
        return Err("more than one tab: the format is `t1 t2 ... tn<TAB>count`".into());
    }
    let count = trim_spaces(count);
    if count.is_empty() {
        return Err("missing count after the tab".into());
    }
    match parse_decimal(count, u64::MAX) {
        Ok(c) => Ok(Some(c)),
        Err(NumError::Invalid) => Err(format!("count '{}' is not an unsigned integer", shown(count))),
        Err(NumError::TooLarge) => Err(format!("count '{}' does not fit in u64", shown(count))),
    }
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let Some(rest) = s.strip_prefix(b" ") {
        s = rest;
    }
    while let Some(rest) = s.strip_suffix(b" ") {
        s = rest;
    }
    s
}

enum NumError {
    Invalid,
    TooLarge,
}

/// Plain ASCII digits only (no sign, no `_`), value at most `max`.
fn parse_decimal(s: &[u8], max: u64) -> Result<u64, NumError> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(NumError::Invalid);
    }
    s.iter()
        .try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')).filter(|&v| v <= max))
        .ok_or(NumError::TooLarge)
}

/// A token for an error message: lossy UTF-8, at most 32 characters.
fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().take(32).collect();
    if s.chars().count() > 32 {
        out.push('…');
    }
    out.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Rec = (Vec<u32>, Option<u64>);

    fn lines(text: &str) -> NgramLines<&[u8]> {
        NgramLines::from_reader("mem.txt", text.as_bytes())
    }

    fn parse_all(text: &str) -> Result<Vec<Rec>, IngestError> {
        lines(text).collect()
    }

    fn bad_line(text: &str) -> (u64, String) {
        match parse_all(text) {
            Err(IngestError::BadLine { path, line, reason }) => {
                assert_eq!(path, Path::new("mem.txt"));
                (line, reason)
            }
            other => panic!("expected BadLine, got {other:?}"),
        }
    }

    #[test]
    fn basic() {
        let got = parse_all("1 2 3\n4\t17\n  5   6  \t 9 \r\n4294967295 0").unwrap();
        assert_eq!(
            got,
            vec![(vec![1, 2, 3], None), (vec![4], Some(17)), (vec![5, 6], Some(9)), (vec![u32::MAX, 0], None),]
        );
        assert!(parse_all("").unwrap().is_empty());
        assert_eq!(parse_all("7\n").unwrap(), vec![(vec![7], None)]);
        assert_eq!(parse_all("7\r\n").unwrap(), vec![(vec![7], None)]);
        assert_eq!(parse_all("7\t18446744073709551615\n").unwrap(), vec![(vec![7], Some(u64::MAX))]);
    }

    #[test]
    fn blank_lines_are_errors_naming_the_line() {
        let (line, reason) = bad_line("1 2\n3\n\n4\n");
        assert_eq!(line, 3);
        assert!(reason.contains("empty line"), "{reason}");
        assert_eq!(bad_line("1\n   \n").0, 2);
        assert_eq!(bad_line("1\n\r\n").0, 2);
        // A trailing empty line after the final newline is a blank line too.
        assert_eq!(bad_line("1\n\n").0, 2);
        assert_eq!(bad_line("\n").0, 1);
    }

    #[test]
    fn bad_tokens() {
        for (text, line, want) in [
            ("1 2\n1 x 3\n", 2, "token 'x' is not an unsigned integer"),
            ("1 -2\n", 1, "token '-2'"),
            ("+2\n", 1, "token '+2'"),
            ("1,2\n", 1, "token '1,2'"),
            ("1 2\n3\n# comment\n", 3, "token '#'"),
            ("4294967296\n", 1, "does not fit in u32"),
            ("99999999999999999999999\n", 1, "does not fit in u32"),
            ("\t5\n", 1, "no token ids"),
            ("1\t\n", 1, "missing count"),
            ("1\t5\t6\n", 1, "more than one tab"),
            ("1\t-5\n", 1, "count '-5' is not an unsigned integer"),
            ("1\t5 6\n", 1, "count '5 6'"),
            ("1\t18446744073709551616\n", 1, "does not fit in u64"),
            ("1 2.0\n", 1, "token '2.0'"),
            ("1\u{a0}2\n", 1, "not an unsigned integer"),
        ] {
            let (l, reason) = bad_line(text);
            assert_eq!(l, line, "{text:?}");
            assert!(reason.contains(want), "{text:?}: {reason}");
        }
        let e = parse_all("1 2\nabc\n").unwrap_err();
        assert_eq!(e.to_string(), "mem.txt: line 2: token 'abc' is not an unsigned integer");
    }

    #[test]
    fn resumes_after_bad_line() {
        let got: Vec<_> = lines("1\nx\n3\t4\n").collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap(), &(vec![1], None));
        assert!(matches!(got[1], Err(IngestError::BadLine { line: 2, .. })));
        assert_eq!(got[2].as_ref().unwrap(), &(vec![3], Some(4)));
    }

    #[test]
    fn next_into_reuses_buffer() {
        let mut it = lines("1 2 3\n4\t5\n");
        let mut toks = Vec::new();
        assert_eq!(it.next_into(&mut toks).unwrap().unwrap(), None);
        assert_eq!(toks, [1, 2, 3]);
        assert_eq!(it.next_into(&mut toks).unwrap().unwrap(), Some(5));
        assert_eq!(toks, [4]);
        assert!(it.next_into(&mut toks).is_none());
        assert!(toks.is_empty());
        assert_eq!(it.lines_read(), 2);
    }

    #[test]
    fn counting() {
        for (text, n) in [("", 0), ("1", 1), ("1\n", 1), ("1\n2", 2), ("1\n\n", 2), ("\n", 1)] {
            assert_eq!(lines(text).count_remaining().unwrap(), n, "{text:?}");
        }
        let mut it = lines("1\n2\n3\n4");
        it.next().unwrap().unwrap();
        assert_eq!(it.count_remaining().unwrap(), 3);
        assert_eq!(it.lines_read(), 4);
        assert!(it.next().is_none());

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.txt");
        std::fs::write(&p, "1 2\n3\t4\n5\n").unwrap();
        assert_eq!(count_ngram_lines(&p).unwrap(), 3);
        let got: Vec<Rec> = NgramLines::open(&p).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, vec![(vec![1, 2], None), (vec![3], Some(4)), (vec![5], None)]);
    }

    #[test]
    fn overlong_line_ends_iteration() {
        let text = format!("1\n{}\n2\n", "7 ".repeat(MAX_LINE_BYTES));
        let mut it = lines(&text);
        assert!(it.next().unwrap().is_ok());
        let e = it.next().unwrap().unwrap_err();
        assert!(matches!(e, IngestError::BadLine { line: 2, .. }), "{e:?}");
        assert!(it.next().is_none());
    }

    #[test]
    fn missing_file_is_io() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing.txt");
        assert!(matches!(NgramLines::open(&p), Err(IngestError::Io { path, .. }) if path == p));
    }

    proptest! {
        #[test]
        fn round_trip(recs in proptest::collection::vec(
            (proptest::collection::vec(any::<u32>(), 1..6), proptest::option::of(any::<u64>())),
            0..20,
        ), crlf in any::<bool>(), final_newline in any::<bool>()) {
            let mut text = String::new();
            for (i, (toks, count)) in recs.iter().enumerate() {
                let t: Vec<String> = toks.iter().map(u32::to_string).collect();
                text.push_str(&t.join(" "));
                if let Some(c) = count {
                    text.push_str(&format!("\t{c}"));
                }
                if i + 1 < recs.len() || final_newline {
                    text.push_str(if crlf { "\r\n" } else { "\n" });
                }
            }
            prop_assert_eq!(parse_all(&text).unwrap(), recs.clone());
            prop_assert_eq!(lines(&text).count_remaining().unwrap(), recs.len() as u64);
        }
    }
}
