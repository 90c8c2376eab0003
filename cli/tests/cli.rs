//! End-to-end tests of the `scone` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scone")).args(args).output().expect("run scone")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The bytes of a version 1 .npy header for a C-order `[rows, dim]` array
/// of `descr` (e.g. `<f4`), padded to 64 bytes.
fn npy_header(descr: &str, rows: usize, dim: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes
}

/// Writes a little-endian f64 .npy file of shape [1, dim].
fn write_npy_f64(path: &Path, row: &[f64]) {
    let mut bytes = npy_header("<f8", 1, row.len());
    bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// Writes a little-endian f32 .npy file of shape [rows, dim].
fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let dim = rows.first().map_or(0, |r| r.len());
    let mut bytes = npy_header("<f4", rows.len(), dim);
    for r in rows {
        for v in r {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

struct Inputs {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    npy: PathBuf,
    ngrams: PathBuf,
}

fn inputs(ngram_lines: &str, rows: &[Vec<f32>]) -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().to_path_buf();
    let npy = p.join("emb.npy");
    let ngrams = p.join("ngrams.txt");
    write_npy(&npy, rows);
    std::fs::write(&ngrams, ngram_lines).unwrap();
    Inputs { _dir: dir, dir: p, npy, ngrams }
}

fn build_args<'a>(i: &'a Inputs, out: &'a str) -> Vec<String> {
    vec![
        "build".into(),
        "--embeddings".into(),
        i.npy.display().to_string(),
        "--ngrams".into(),
        i.ngrams.display().to_string(),
        "--out".into(),
        i.dir.join(out).display().to_string(),
        "--vocab-size".into(),
        "100".into(),
        "--n-max".into(),
        "3".into(),
        "--dtype".into(),
        "f32".into(),
    ]
}

fn run_build(i: &Inputs, out: &str) -> Output {
    let args = build_args(i, out);
    scone(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn build_then_query_with_json() {
    let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, -6.5]];
    let i = inputs("1 2\t10\n2 3 4\t30\n7 8\t20\n", &rows);
    let o = run_build(&i, "t.scone");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 rows"), "{}", stdout(&o));
    let t = i.dir.join("t.scone");
    let t = t.to_str().unwrap();

    let o = scone(&["info", t, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // The key seed is a random u64: a decimal string, which the text output's hex matches.
    let seed: u64 = v["key_seed"].as_str().expect("key_seed is a string").parse().unwrap();
    let text = stdout(&scone(&["info", t]));
    assert!(text.contains(&format!("key seed     {seed:#018x}")), "{text}");
    assert_eq!(v["rows"], 3);
    assert_eq!(v["dim"], 2);
    assert_eq!(v["dtype"], "f32");
    assert_eq!(v["hottest_first"], true);
    assert!(v["index"]["bytes_per_key"].as_f64().unwrap() > 0.0);

    let o = scone(&["get", t, "2", "3", "4", "--json", "--full"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["found"], true);
    assert_eq!(v["slot"], 0, "count 30 is the hottest");
    assert_eq!(v["count"], "30", "counts are u64: strings (docs/CLI.md)");
    assert_eq!(v["row"]["values"], serde_json::json!([3.0, 4.0]));
    let o = scone(&["get", t, "8", "7"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("not in the table"));

    // 7 8 then 1 2 3 4: positions 1 (7 8), 3 (1 2) and 5 (2 3 4) hit.
    let o = scone(&["match", t, "7", "8", "1", "2", "3", "4", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let hits: Vec<(u64, u64)> = v["positions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["hit"] == true)
        .map(|p| (p["pos"].as_u64().unwrap(), p["len"].as_u64().unwrap()))
        .collect();
    assert_eq!(hits, vec![(1, 2), (3, 2), (5, 3)]);
    let o = scone(&["verify", t]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("all 4 sections verified"), "{}", stdout(&o));
    // --text needs an embedded tokenizer, which this table lacks.
    let o = scone(&["match", t, "--text", "hello"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no embedded tokenizer"), "{}", stderr(&o));
}

#[test]
fn bad_input_names_the_line_and_writes_no_table() {
    let cases: &[(&str, Vec<Vec<f32>>, &str)] = &[
        ("1 2\n3 x\n", vec![vec![0.0], vec![1.0]], "line 2"),
        ("1 2\n3 4\n", vec![vec![0.0], vec![f32::NAN]], "row 1"),
        ("1 2\n3 400\n", vec![vec![0.0], vec![1.0]], "line 2 (embedding row 1): token id 400"),
        ("1 2\n1 2\n", vec![vec![0.0], vec![1.0]], "line 2: duplicate n-gram [1, 2] (first at line 1)"),
        ("1 2 3 4\n", vec![vec![0.0]], "line 1 (embedding row 0): n-gram has 4 tokens"),
        ("5\n", vec![vec![0.0]], "n-gram has 1 tokens"),
        ("1 2\n", vec![vec![0.0], vec![1.0]], "2 rows"),
    ];
    for (lines, rows, want) in cases {
        let i = inputs(lines, rows);
        let o = run_build(&i, "t.scone");
        assert!(!o.status.success(), "{lines:?} should fail");
        let err = stderr(&o);
        assert!(err.contains(want), "{lines:?}: {err:?} should contain {want:?}");
        assert!(err.starts_with("error: "), "{err}");
        let left: Vec<_> = std::fs::read_dir(&i.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("scone"))
            .collect();
        assert!(left.is_empty(), "{lines:?}: left {left:?}");
    }
    // A truncated embeddings file.
    let i = inputs("1 2\n", &[vec![0.0, 1.0]]);
    let bytes = std::fs::read(&i.npy).unwrap();
    std::fs::write(&i.npy, &bytes[..bytes.len() - 2]).unwrap();
    let o = run_build(&i, "t.scone");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("emb.npy"), "{}", stderr(&o));
}

#[test]
fn errors_on_missing_or_foreign_tables() {
    let o = scone(&["info", "/nonexistent/t.scone"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/t.scone"));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.scone");
    std::fs::write(&f, b"definitely not a table").unwrap();
    let o = scone(&["verify", f.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a scone table"));
    // Every command has --help.
    let serving = ["build", "info", "get", "match", "verify", "catalog"];
    let training: &[&str] = if cfg!(feature = "train") { &["demo", "train"] } else { &[] };
    for &cmd in serving.iter().chain(training) {
        let o = scone(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help");
        assert!(stdout(&o).contains("Usage"));
    }
}

/// Without the `train` feature the binary has no trainer: its training
/// commands are unknown rather than present and failing.
#[test]
#[cfg(not(feature = "train"))]
fn the_serving_build_has_no_training_commands() {
    for cmd in ["demo", "train"] {
        let o = scone(&[cmd]);
        assert!(!o.status.success(), "{cmd}");
        assert!(stderr(&o).contains(&format!("unrecognized subcommand '{cmd}'")), "{cmd}: {}", stderr(&o));
    }
    let help = stdout(&scone(&["--help"]));
    let listed = |cmd: &str| help.lines().any(|l| l.split_whitespace().next() == Some(cmd));
    assert!(listed("match") && !listed("demo") && !listed("train"), "{help}");
}

/// A table built with an embedded word tokenizer answers text queries; this
/// needs only the tokenizer crate, so it holds with and without `train`.
#[test]
fn text_queries_use_the_embedded_word_tokenizer() {
    let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]];
    // Ids: <unk> 0, the 1, lord 2, spake 3, unto 4, moses 5.
    let i = inputs("1 2\n4 5\n3 4 5\n", &rows);
    let tok = i.dir.join("words.txt");
    std::fs::write(&tok, "scone-word-tokenizer v1\n<unk>\nthe\nlord\nspake\nunto\nmoses\n").unwrap();
    let mut args = build_args(&i, "t.scone");
    let vocab = args.iter().position(|a| a == "--vocab-size").unwrap() + 1;
    args[vocab] = "6".into();
    args.extend(["--tokenizer".into(), tok.display().to_string()]);
    let o = scone(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let t = i.dir.join("t.scone");
    let t = t.to_str().unwrap();

    let o = scone(&["match", t, "--text", "And the LORD spake unto Moses", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let pos = v["positions"].as_array().unwrap();
    let tokens: Vec<u64> = pos.iter().map(|p| p["token"].as_u64().unwrap()).collect();
    assert_eq!(tokens, [0, 1, 2, 3, 4, 5], "`and` is unknown, the rest lowercased");
    assert_eq!(pos[2]["piece"], "lord");
    assert_eq!(pos[2]["ngram_text"], "the lord");
    assert_eq!(pos[5]["len"], 3);
    assert_eq!(pos[5]["ngram_text"], "spake unto moses", "the longest f-gram wins");
    assert_eq!(v["hits"], 2, "only `the lord` and `spake unto moses` end an f-gram");

    let o = scone(&["get", t, "--text", "the Lord", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["found"], true);
    assert_eq!(v["pieces"], serde_json::json!(["the", "lord"]));
}

#[test]
#[cfg(feature = "train")]
fn demo_runs_the_whole_flow_on_the_bundled_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = scone(&["demo", "--out", out.to_str().unwrap(), "--steps", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("29547 verses"), "{s}");
    assert!(s.contains("20000 with count >= 2 kept"), "{s}");
    assert!(s.contains("perplexity (a)"), "{s}");
    assert!(s.contains("(c) from the table"), "{s}");
    assert!(s.contains("\"In the\""), "{s}");
    assert!(s.contains("M tokens/s"));
    for f in ["tokenizer.json", "fgrams.txt", "results.json", "runs/baseline/loss.csv"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // (b) and (c) agree to f16 precision in the results file.
    let (_, runs): (serde_json::Value, Vec<serde_json::Value>) =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let scone_run = runs.iter().find(|r| r["k"] == 20000).expect("a SCONE run");
    let (b, c) = (scone_run["ppl_model"].as_f64().unwrap(), scone_run["ppl_table"].as_f64().unwrap());
    assert!((b - c).abs() / b < 2e-3, "{b} vs {c}");

    let t = out.join("scone-k20000-f0.scone");
    let o = scone(&["match", t.to_str().unwrap(), "--text", "And the LORD spake unto Moses", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let last = &v["positions"][5];
    assert_eq!(last["piece"], " Moses");
    assert_eq!(last["hit"], true);
    assert!(last["ngram_text"].as_str().unwrap().ends_with("unto Moses"), "{last}");

    // Running again resumes the finished checkpoints instead of retraining.
    let o = scone(&["demo", "--out", out.to_str().unwrap(), "--steps", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("resuming from step 3"), "{}", stdout(&o));
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let rows = vec![vec![1.0, 2.0]; 1];
    let i = inputs("1 2\n", &rows);
    assert!(run_build(&i, "t.scone").status.success());
    let t = i.dir.join("t.scone");
    // The reader goes away before scone writes: the write fails with a broken pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_scone"))
        .args(["info", t.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(o.status.success());
}

/// A built 3-row table of dim 1024 f32 (4 KiB rows) in a temporary directory.
fn mode_table() -> (Inputs, String) {
    let rows: Vec<Vec<f32>> = (0..3).map(|r| (0..1024).map(|c| (r * 1024 + c) as f32).collect()).collect();
    let i = inputs("1 2\t10\n2 3 4\t30\n7 8\t20\n", &rows);
    let o = run_build(&i, "t.scone");
    assert!(o.status.success(), "{}", stderr(&o));
    let t = i.dir.join("t.scone").display().to_string();
    (i, t)
}

fn info_mode(t: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let mut args = vec!["info", t];
    args.extend_from_slice(extra);
    let o = scone(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o).lines().find(|l| l.starts_with("read mode")).expect("a read mode line").to_string();
    args.push("--json");
    let o = scone(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["read_mode"]["description"].as_str().unwrap(), line.trim_start_matches("read mode").trim());
    (line, v["read_mode"].clone())
}

#[test]
fn info_shows_the_mmap_mode_by_default() {
    let (_i, t) = mode_table();
    let (line, v) = info_mode(&t, &[]);
    assert_eq!(line, "read mode    mmap (page cache)");
    assert_eq!(v["mode"], "mmap");
    assert_eq!(v["backend"], serde_json::Value::Null);
    let (line2, _) = info_mode(&t, &["--mode", "mmap"]);
    assert_eq!(line, line2);
}

#[test]
fn info_shows_the_resident_mode() {
    let (_i, t) = mode_table();
    let (line, v) = info_mode(&t, &["--mode", "resident"]);
    assert_eq!(line, "read mode    resident (rows in huge-page memory)");
    assert_eq!(v["mode"], "resident");
}

#[test]
fn info_shows_the_direct_mode_over_pread_with_a_hot_prefix() {
    let (_i, t) = mode_table();
    let (line, v) =
        info_mode(&t, &["--mode", "direct", "--backend", "pread", "--queue-depth", "8", "--hot-bytes", "8192"]);
    assert!(line.starts_with("read mode    direct (pread pool, 8 threads, "), "{line}");
    assert!(line.ends_with("hot prefix 2 rows in 8192 bytes)"), "{line}");
    assert_eq!(v["mode"], "direct");
    assert_eq!(v["backend"], "pread");
    assert_eq!(v["queue_depth"], 8);
    assert_eq!(v["pread_threads"], 8);
    assert_eq!(v["hot_rows"], 2);
    assert_eq!(v["fallback"], serde_json::Value::Null);
}

#[test]
fn info_shows_the_direct_mode_over_io_uring_or_its_fallback() {
    let (_i, t) = mode_table();
    let o = scone(&["info", &t, "--mode", "direct", "--backend", "uring", "--queue-depth", "32"]);
    if o.status.success() {
        let (line, v) = info_mode(&t, &["--mode", "direct", "--backend", "uring", "--queue-depth", "32"]);
        assert!(line.starts_with("read mode    direct (io_uring, queue depth 32, "), "{line}");
        assert!(line.ends_with("hot prefix 0 rows)"), "{line}");
        assert_eq!(v["backend"], "io_uring");
        assert_eq!(v["queue_depth"], 32);
        let (auto, _) = info_mode(&t, &["--mode", "direct", "--queue-depth", "32"]);
        assert_eq!(auto, line, "auto picks io_uring where it works");
    } else {
        eprintln!("io_uring is not available here: {}", stderr(&o));
        assert!(stderr(&o).contains("cannot open"), "{}", stderr(&o));
    }
    // SQPOLL: on where the kernel allows it, otherwise a plain ring; pread ignores it.
    let o = scone(&["info", &t, "--mode", "direct", "--queue-depth", "8", "--sqpoll", "10", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let on = v["read_mode"]["sqpoll"].as_bool().unwrap();
    assert_eq!(v["read_mode"]["description"].as_str().unwrap().contains(" with SQPOLL"), on);
    assert!(!on || v["read_mode"]["backend"] == "io_uring");
    let (line, v) = info_mode(&t, &["--mode", "direct", "--backend", "pread", "--sqpoll", "10"]);
    assert_eq!(v["sqpoll"], false);
    assert!(!line.contains("SQPOLL"), "{line}");
    // Auto falls back to the pread pool and says why.
    let (line, v) = info_mode(&t, &["--mode", "direct", "--queue-depth", "4", "--simulate-uring-failure"]);
    assert!(line.starts_with("read mode    direct (pread pool fallback: io_uring unavailable ("), "{line}");
    assert!(line.contains(", 4 threads, "), "{line}");
    assert_eq!(v["backend"], "pread");
    assert!(v["fallback"].as_str().unwrap().starts_with("io_uring unavailable"));
    // Uring alone does not fall back.
    let o = scone(&["info", &t, "--mode", "direct", "--backend", "uring", "--simulate-uring-failure"]);
    assert!(!o.status.success());
}

#[test]
fn get_reads_the_row_in_every_mode() {
    let (_i, t) = mode_table();
    let mut want = None;
    for extra in [
        &["--mode", "mmap"][..],
        &["--mode", "resident"],
        &["--mode", "direct", "--backend", "pread"],
        &["--mode", "direct", "--backend", "auto", "--hot-bytes", "4096"],
        &["--mode", "direct", "--sqpoll", "5", "--registered-buffers"],
    ] {
        let mut args = vec!["get", &t, "2", "3", "4", "--json", "--full"];
        args.extend_from_slice(extra);
        let o = scone(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["read_mode"]["mode"], extra[1]);
        let values = v["row"]["values"].clone();
        assert_eq!(values[0], 1024.0, "slot 0 holds the count-30 row (input row 1)");
        match &want {
            None => want = Some(values),
            Some(w) => assert_eq!(&values, w, "{extra:?}"),
        }
    }
}

#[test]
#[cfg(feature = "train")]
fn train_refuses_bad_overrides_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t");
    for (flag, value, says) in [
        ("--fgram-lr-scale", "-1", "--fgram-lr-scale must be a number >= 0"),
        ("--fgram-lr-scale", "NaN", "--fgram-lr-scale must be a number >= 0"),
        ("--lr", "0", "--lr must be a positive number"),
        ("--clip-norm", "0", "--clip-norm must be positive"),
    ] {
        let arg = format!("{flag}={value}");
        let o = scone(&["train", "--preset", "quick", "--out", out.to_str().unwrap(), &arg]);
        assert!(!o.status.success(), "{flag} {value} should fail");
        assert!(stderr(&o).contains(says), "{flag} {value}: {}", stderr(&o));
        assert!(!out.exists(), "{flag} {value}: wrote {}", out.display());
    }
}

/// Every file under `dir`, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn build_errors_name_the_output_file_and_the_fix_once() {
    let i = inputs("1 2\n", &[vec![0.0, 1.0]]);
    // A missing output folder: the user's path, the OS error once, no temporary file.
    let o = run_build(&i, "no-such-folder/t.scone");
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains(&format!("{}: cannot create", i.dir.join("no-such-folder/t.scone").display())), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains(".tmp-"), "{err}");
    // A missing --temp-dir leaves nothing behind.
    let mut args = build_args(&i, "t.scone");
    args.extend(["--temp-dir".into(), i.dir.join("no-such-tmp").display().to_string()]);
    let o = scone(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("no-such-tmp") && err.matches("No such file or directory").count() == 1, "{err}");
    assert_eq!(tree(&i.dir), ["emb.npy", "ngrams.txt"]);
    // An existing table: the message names --force.
    assert!(run_build(&i, "t.scone").status.success());
    let err = stderr(&run_build(&i, "t.scone"));
    assert!(err.contains("a table already exists there") && err.contains("--force"), "{err}");
}

#[test]
fn catalog_add_swap_list_gc_with_a_reader_in_another_process() {
    let i = inputs("1 2\t10\n2 3 4\t30\n", &[vec![1.0, 2.0], vec![3.0, 4.0]]);
    let cat = i.dir.join("cat");
    let cat_s = cat.display().to_string();
    let table = |name: &str| i.dir.join(name).display().to_string();
    let ok = |args: &[&str]| {
        let o = scone(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert!(ok(&["catalog", "init", &cat_s]).contains("created catalog"));
    assert!(run_build(&i, "t1.scone").status.success());
    assert!(ok(&["catalog", "add", &cat_s, "emb", &table("t1.scone")]).contains("emb: version 1 added (2 rows"));
    assert!(!i.dir.join("t1.scone").exists(), "add moves the table in");
    // This process reads version 1 while `scone` (another process) swaps and collects.
    let reader = engine::Catalog::open(&cat).unwrap().reader("emb").unwrap();
    assert!(run_build(&i, "t2.scone").status.success());
    let out = ok(&["catalog", "swap", &cat_s, "emb", &table("t2.scone")]);
    assert!(out.contains("emb: version 2 is current"), "{out}");
    assert!(out.contains("kept 1 still held by readers") && out.contains("held: tables/emb/1.scone"), "{out}");
    assert!(cat.join("tables/emb/1.scone").exists());
    reader.verify().unwrap();
    let list: serde_json::Value = serde_json::from_str(&ok(&["catalog", "list", &cat_s, "--json"])).unwrap();
    assert_eq!(list[0]["name"], "emb");
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["retired_versions"], serde_json::json!([1]));
    let text = ok(&["catalog", "list", &cat_s]);
    assert!(text.lines().nth(1).unwrap().starts_with("emb "), "{text}");
    // The last snapshot of a replaced version removes its file as it lets go;
    // gc then only forgets the record.
    drop(reader);
    assert_eq!(tree(&cat), ["lock", "manifest", "tables/emb/2.scone"]);
    assert!(ok(&["catalog", "gc", &cat_s]).contains("removed 0 replaced versions, kept 0"));
    let list: serde_json::Value = serde_json::from_str(&ok(&["catalog", "list", &cat_s, "--json"])).unwrap();
    assert_eq!(list[0]["retired_versions"], serde_json::json!([]));
    // Errors name the fix.
    let o = scone(&["catalog", "swap", &cat_s, "other", &table("t2.scone")]);
    assert!(stderr(&o).contains("no table named `other`; add it with `scone catalog add`"), "{}", stderr(&o));
    let o = scone(&["catalog", "add", &cat_s, "x", &table("missing.scone")]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("missing.scone"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let o = scone(&["catalog", "list", &i.dir.display().to_string()]);
    assert!(stderr(&o).contains("not a catalog"), "{}", stderr(&o));
}

/// A stored NaN or infinity (a damaged or foreign table: the builder refuses
/// them) prints as a string in `--json`, never as `null`, and values print
/// in their shortest f32 form.
#[test]
fn json_rows_keep_non_finite_values() {
    let rows = vec![vec![1234.5, 0.1, -7.25]];
    let i = inputs("1 2\n", &rows);
    assert!(run_build(&i, "t.scone").status.success());
    let t = i.dir.join("t.scone");
    let mut bytes = std::fs::read(&t).unwrap();
    let at = bytes.windows(4).position(|w| w == 1234.5f32.to_le_bytes()).expect("the row is in the file");
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    bytes[at + 8..at + 12].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
    std::fs::write(&t, bytes).unwrap();
    let o = scone(&["get", t.to_str().unwrap(), "1", "2", "--json", "--full"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["row"]["values"], serde_json::json!(["NaN", 0.1, "-Infinity"]));
    assert_eq!(v["row"]["head"], serde_json::json!(["NaN", 0.1, "-Infinity"]));
    assert_eq!(v["row"]["min"], "-Infinity");
    assert_eq!(v["count"], serde_json::Value::Null);
}

/// f64 embeddings round once to the table's dtype: 65519.99 is stored as
/// f16's largest value, and 65520 (which rounds to infinity) is refused with
/// the value as the file holds it.
#[test]
fn f64_embeddings_overflow_message_names_the_value() {
    let i = inputs("1 2\n", &[vec![0.0]]);
    let mut args = build_args(&i, "h.scone");
    *args.last_mut().unwrap() = "f16".into();
    write_npy_f64(&i.npy, &[0.5, 65519.99]);
    let o = scone(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let t = i.dir.join("h.scone");
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&scone(&["get", t.to_str().unwrap(), "1", "2", "--json", "--full"]))).unwrap();
    assert_eq!(v["row"]["values"], serde_json::json!([0.5, 65504.0]));
    write_npy_f64(&i.npy, &[0.5, 65520.0]);
    let mut args = build_args(&i, "o.scone");
    *args.last_mut().unwrap() = "f16".into();
    let o = scone(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("value 65520 at column 1 overflows f16"), "{}", stderr(&o));
}

#[test]
fn get_verify_rows_refuses_a_damaged_row_that_plain_get_serves() {
    let i = inputs("1 2\n2 3\n", &[vec![1.0, 2.0], vec![3.0, 4.0]]);
    assert!(run_build(&i, "t.scone").status.success());
    let t = i.dir.join("t.scone");
    let mut bytes = std::fs::read(&t).unwrap();
    bytes[4096] ^= 0x01; // the first row's first byte
    std::fs::write(&t, &bytes).unwrap();
    let ts = t.to_str().unwrap();
    assert!(scone(&["get", ts, "1", "2"]).status.success(), "rows are not checked by default");
    let o = scone(&["get", ts, "1", "2", "--verify-rows"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("t.scone") && err.contains("rows") && err.contains("checksum"), "{err}");
    let o = scone(&["verify", ts]);
    assert!(!o.status.success() && stderr(&o).contains("rows"), "{}", stderr(&o));
}
