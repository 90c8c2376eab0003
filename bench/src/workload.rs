//! Query workloads shared by the binary and the criterion benches: all drawn
//! from fixed seeds, so every run of a given size sees the same queries.

use rand::Rng;

use crate::synth::{fgram, mix, Gram, Spec, VOCAB, ZIPF_S};
use crate::zipf::RankSampler;

pub struct Workload {
    /// Stored n-grams, drawn by Zipf(1.1) rank.
    pub present: Vec<Gram>,
    /// Random n-grams of the same length mix that the table does not hold.
    pub absent: Vec<Gram>,
    /// Concatenated Zipf-drawn f-grams with a stray random token now and then.
    pub stream: Vec<u32>,
    /// Batches of Zipf-drawn slots (= ranks) for gathers.
    pub batches: Vec<Vec<u32>>,
}

/// Sizes of a workload.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub probes: usize,
    pub stream_tokens: usize,
    pub batch: usize,
    pub batches: usize,
}

/// Chance of a random token between two f-grams in the stream.
const STRAY: f64 = 0.2;

impl Workload {
    /// `is_present` filters the absent probes (a random bigram is stored with
    /// probability about rows / 50_000^2).
    pub fn new(spec: &Spec, sizes: Sizes, is_present: impl Fn(&[u32]) -> bool) -> Self {
        let n = spec.fgrams;
        let mut z = RankSampler::new(n, ZIPF_S, mix(spec.seed ^ 1));
        let present = (0..sizes.probes).map(|_| fgram(spec, z.next_rank())).collect();

        let mut absent = Vec::with_capacity(sizes.probes);
        while absent.len() < sizes.probes {
            let rng = z.rng();
            let len = match rng.gen_range(0..100) {
                0..40 => 2,
                40..75 => 3,
                _ => 4,
            };
            let mut t = [0u32; 4];
            for x in &mut t[..len] {
                *x = rng.gen_range(0..VOCAB);
            }
            if !is_present(&t[..len]) {
                absent.push(Gram::new(&t[..len]));
            }
        }

        let mut stream = Vec::with_capacity(sizes.stream_tokens + 8);
        while stream.len() < sizes.stream_tokens {
            stream.extend_from_slice(fgram(spec, z.next_rank()).as_slice());
            if z.rng().gen_bool(STRAY) {
                let t = z.rng().gen_range(0..VOCAB);
                stream.push(t);
            }
        }
        stream.truncate(sizes.stream_tokens);

        let batches = (0..sizes.batches).map(|_| (0..sizes.batch).map(|_| z.next_rank() as u32).collect()).collect();
        Workload { present, absent, stream, batches }
    }
}
