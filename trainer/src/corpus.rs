//! Training corpora: the bundled King James Bible and plain text files.

use std::io::Read;
use std::path::{Path, PathBuf};

use lz4_flex::frame::FrameDecoder;
use thiserror::Error;

/// The KJV as an LZ4 frame (made by the `lz4` CLI): one verse per line,
/// `Book C:V<TAB>verse text`. Bundled so tests and demos need no download.
const KJV_LZ4: &[u8] = include_bytes!("../../data/kjv.txt.lz4");

/// One verse of the bundled corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verse {
    /// e.g. `Genesis 1:1`.
    pub reference: String,
    /// The verse text, without the reference.
    pub text: String,
}

/// Errors from loading or parsing a corpus.
#[derive(Debug, Error)]
pub enum CorpusError {
    #[error("bundled KJV corpus: {0}")]
    Bundled(#[source] std::io::Error),
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: not valid UTF-8 (byte offset {offset})")]
    NotUtf8 { what: String, offset: usize },
    #[error("line {line}: expected `reference<TAB>text`, found no tab")]
    MissingTab { line: usize },
    #[error("line {line}: empty verse reference")]
    EmptyReference { line: usize },
}

/// Decompresses and parses the bundled KJV (31102 verses, Genesis 1:1 to
/// Revelation 22:21).
pub fn kjv() -> Result<Vec<Verse>, CorpusError> {
    let mut raw = Vec::new();
    FrameDecoder::new(KJV_LZ4).read_to_end(&mut raw).map_err(CorpusError::Bundled)?;
    let text = utf8(raw, "bundled KJV corpus")?;
    parse_verses(&text)
}

/// Parses `reference<TAB>text` lines. Blank lines are skipped; a trailing
/// `\r` is tolerated so CRLF files parse too. Line numbers in errors are
/// 1-based.
pub fn parse_verses(text: &str) -> Result<Vec<Verse>, CorpusError> {
    let mut verses = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (reference, body) = line.split_once('\t').ok_or(CorpusError::MissingTab { line: line_no })?;
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(CorpusError::EmptyReference { line: line_no });
        }
        verses.push(Verse { reference: reference.to_owned(), text: body.trim().to_owned() });
    }
    Ok(verses)
}

/// Reads one document per non-empty line from a plain UTF-8 text file, or
/// from an LZ4 frame file when the extension is `.lz4`. Lines are trimmed.
pub fn read_text_file(path: impl AsRef<Path>) -> Result<Vec<String>, CorpusError> {
    let path = path.as_ref();
    let io_err = |source| CorpusError::Io { path: path.to_path_buf(), source };
    let raw = std::fs::read(path).map_err(io_err)?;
    let is_lz4 = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("lz4"));
    let raw = if is_lz4 {
        let mut out = Vec::new();
        FrameDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(io_err)?;
        out
    } else {
        raw
    };
    let text = utf8(raw, &path.display().to_string())?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

fn utf8(raw: Vec<u8>, what: &str) -> Result<String, CorpusError> {
    String::from_utf8(raw)
        .map_err(|e| CorpusError::NotUtf8 { what: what.to_owned(), offset: e.utf8_error().valid_up_to() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reports_line_without_tab() {
        let err = parse_verses("Genesis 1:1\tIn the beginning\n\nno tab here\n").unwrap_err();
        assert!(matches!(err, CorpusError::MissingTab { line: 3 }), "{err}");
        assert!(err.to_string().contains("line 3"));
    }

    #[test]
    fn parse_handles_crlf_and_blank_lines() {
        let v = parse_verses("A 1:1\tx y\r\n\r\nB 2:2\tz\r\n").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].text, "x y");
        assert_eq!(v[1].reference, "B 2:2");
    }

    #[test]
    fn read_text_file_plain_lz4_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("docs.txt");
        std::fs::write(&plain, "one two\n\n  three \n").unwrap();
        assert_eq!(read_text_file(&plain).unwrap(), vec!["one two", "three"]);

        let packed = dir.path().join("docs.txt.lz4");
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut enc, b"alpha\nbeta\n").unwrap();
        std::fs::write(&packed, enc.finish().unwrap()).unwrap();
        assert_eq!(read_text_file(&packed).unwrap(), vec!["alpha", "beta"]);

        let missing = dir.path().join("nope.txt");
        let err = read_text_file(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.txt"), "{err}");

        let bad = dir.path().join("bad.lz4");
        std::fs::write(&bad, b"not an lz4 frame").unwrap();
        let err = read_text_file(&bad).unwrap_err();
        assert!(err.to_string().contains("bad.lz4"), "{err}");
    }
}
