use trainer::{count_ngrams, kjv, select_fgrams, CountConfig, WordTokenizer};

#[test]
fn bundled_kjv_end_to_end() {
    let verses = kjv().unwrap();
    assert_eq!(verses.len(), 31102);
    assert_eq!(verses[0].reference, "Genesis 1:1");
    assert_eq!(verses[0].text, "In the beginning God created the heaven and the earth.");
    assert_eq!(verses.last().unwrap().reference, "Revelation 22:21");

    let tok = WordTokenizer::train(verses.iter().map(|v| v.text.as_str()), 50_000, 1);
    let ids = tok.encode("In the beginning God created the heaven and the earth.");
    assert_eq!(ids.len(), 11);
    assert!(!ids.contains(&0), "{ids:?}");
    assert!(tok.id("the").is_some_and(|id| id < 5));

    // Smoke test of the pipeline on a slice of the corpus.
    let docs: Vec<Vec<u32>> = verses[..2000].iter().map(|v| tok.encode(&v.text)).collect();
    let counts = count_ngrams(&docs, &CountConfig::default()).unwrap();
    let top = select_fgrams(counts, 10, 2);
    assert_eq!(top.len(), 10);
    assert!(top.windows(2).all(|w| w[0].count >= w[1].count));
    let words: Vec<_> = top[0].tokens.iter().map(|&i| tok.token(i).unwrap()).collect();
    assert_eq!(words.len(), 2, "hottest f-gram {words:?}");
}
