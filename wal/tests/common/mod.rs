//! Helpers shared by the WAL's integration tests: records derivable from their LSN,
//! and a seeded generator whose seed every randomised test prints.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use memdb_wal::{Entry, Lsn, Op, Record, Wal};

/// A deterministic record for `lsn`, `size` bytes of value, so a check needs no model.
pub fn value_for(lsn: Lsn, size: usize) -> Vec<u8> {
    let mut v = format!("{{\"lsn\":{lsn},\"pad\":\"").into_bytes();
    let fill = b'a' + (lsn % 26) as u8;
    v.resize(v.len().max(size.saturating_sub(2)), fill);
    v.extend_from_slice(b"\"}");
    v
}

/// Appends the record derived from the LSN it is going to get.
pub fn append_derived(wal: &Wal, size: usize) -> Result<Lsn, memdb_wal::Error> {
    let lsn = wal.next_lsn();
    let value = value_for(lsn, size);
    let key = format!("k{lsn}");
    let got = wal.append(&Entry { op: Op::Put, table: "t", key: &key, value: &value })?;
    assert_eq!(got, lsn, "single appender: LSNs are handed out in order");
    Ok(got)
}

/// Checks that `record` is the one `append_derived` wrote for its LSN.
pub fn assert_derived(record: &Record) {
    assert_eq!(record.key, format!("k{}", record.lsn), "key of LSN {}", record.lsn);
    let prefix = format!("{{\"lsn\":{},\"pad\":\"", record.lsn);
    assert!(
        record.value.starts_with(prefix.as_bytes()),
        "value of LSN {} is {:?}",
        record.lsn,
        String::from_utf8_lossy(&record.value)
    );
}

/// All records from `from` (by `replay`, checked against `replay_each`), failing the
/// test on an error.
pub fn replay_all(wal: &Wal, from: Lsn) -> Vec<Record> {
    let records = wal.replay(from).collect::<Result<Vec<_>, _>>().expect("replay");
    let mut borrowed = Vec::new();
    wal.replay_each(from, |r| {
        borrowed.push(Record::from(r));
        Ok::<_, memdb_wal::Error>(())
    })
    .expect("replay_each");
    assert_eq!(borrowed, records, "replay_each visits exactly what replay yields");
    records
}

/// splitmix64: small, deterministic, good enough to draw test cases from a seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The base seed of a randomised test: `MEMDB_SEED` if set, else the clock; printed.
pub fn base_seed(test: &str) -> u64 {
    let seed = std::env::var("MEMDB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("{test}: seed {seed} (replay with MEMDB_SEED={seed})");
    seed
}
