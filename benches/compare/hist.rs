//! A log-linear latency histogram: 32 buckets per power of two (about 3% wide), so a
//! percentile costs nothing to record and histograms of many tasks merge by addition.

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any `u64` of nanoseconds.
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * SUB as usize;

/// Nanosecond latencies of one kind of operation.
#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

/// The bucket of `n`: exact below 32, then 32 per power of two.
fn index(n: u64) -> usize {
    if n < SUB {
        return n as usize;
    }
    let exp = 63 - n.leading_zeros();
    let sub = (n >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// The smallest value in bucket `i`.
fn lower(i: usize) -> u64 {
    let (group, sub) = ((i as u64) / SUB, (i as u64) % SUB);
    if group == 0 { sub } else { (SUB + sub) << (group - 1) }
}

impl Hist {
    pub fn record(&mut self, nanos: u64) {
        self.counts[index(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `p` quantile (0..=1) in nanoseconds: the upper edge of its bucket (never
    /// above the maximum seen), so a reported tail is never flattered.
    pub fn quantile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (lower(i + 1).saturating_sub(1)).min(self.max);
            }
        }
        self.max
    }

    pub fn max(&self) -> u64 {
        self.max
    }
}
