//! The telephony record every benchmark writes (214 bytes of JSON), its keys, a seeded RNG.

use std::fmt::Write as _;
use std::sync::OnceLock;

use serde::Serialize;

/// Serialised size of every record, in bytes.
pub const RECORD_BYTES: usize = 214;
/// Length of every key (`call:0000000042`).
pub const KEY_LEN: usize = 15;

/// A live call, as a telephony daemon keeps it: 214 bytes of JSON for every `i`.
#[derive(Serialize)]
pub struct Call {
    pub call_id: u64,
    pub caller: String,
    pub callee: String,
    pub status: &'static str,
    pub start_time: String,
    pub codec: &'static str,
    pub turns: u32,
    pub agent: String,
    pub trunk: String,
}

impl Call {
    pub fn new(i: u64) -> Self {
        let mut call = Self::unpadded(i);
        call.trunk = trunk().to_owned();
        call
    }

    /// Every field has a fixed width, so every `i` gives the same size.
    pub fn unpadded(i: u64) -> Self {
        Self {
            call_id: 1_000_000_000 + i % 9_000_000_000,
            caller: format!("+1415555{:04}", i % 10_000),
            callee: format!("+4420718{:04}", i.wrapping_mul(7_919) % 10_000),
            status: "in_progress",
            start_time: format!("2026-11-26T03:{:02}:{:02}.{:03}Z", i / 60_000 % 60, i / 1_000 % 60, i % 1_000),
            codec: "opus/48000",
            turns: 10 + (i % 90) as u32,
            agent: format!("agent-{:04}", i % 1_000),
            trunk: String::new(),
        }
    }

    /// A cheap change for the throughput loops (fixed-width numbers only).
    pub fn vary(&mut self, i: u64) {
        self.call_id = 1_000_000_000 + i % 9_000_000_000;
        self.turns = 10 + (i % 90) as u32;
    }

    pub fn json(i: u64) -> String {
        serde_json::to_string(&Self::new(i)).expect("serialise a record")
    }
}

/// The states a call moves through, each 11 bytes so that every record stays 214 bytes.
pub const STATUSES: [&str; 5] = ["early_media", "established", "in_progress", "transferred", "terminating"];

impl Call {
    /// The `step`th update of a live call: a new status and one more turn (two digits
    /// always, so the size never changes).
    pub fn advance(&mut self, step: usize) {
        self.status = STATUSES[step % STATUSES.len()];
        self.turns = 10 + (self.turns + 1 - 10) % 90;
    }
}

/// The `trunk` text that pads every record to exactly [`RECORD_BYTES`].
pub fn trunk() -> &'static str {
    static TRUNK: OnceLock<String> = OnceLock::new();
    TRUNK.get_or_init(|| {
        let bare = serde_json::to_string(&Call::unpadded(0)).expect("serialise").len();
        let pad = RECORD_BYTES.checked_sub(bare).expect("the unpadded record fits 214 bytes");
        "sip-trunk-eu-west-1-primary-".chars().cycle().take(pad).collect()
    })
}

/// Keys `call:0000000042` laid end to end: reading them in order costs next to nothing,
/// so a lookup benchmark measures the map, not the key generation.
pub struct Keys {
    text: String,
    len: usize,
}

impl Keys {
    pub fn of(indices: impl Iterator<Item = u64>) -> Self {
        let mut text = String::new();
        let mut len = 0;
        for i in indices {
            write!(text, "call:{i:010}").expect("write to a String");
            len += 1;
        }
        Self { text, len }
    }

    pub fn sequential(n: u64) -> Self {
        Self::of(0..n)
    }

    /// `picks` keys drawn uniformly from the first `over`.
    pub fn random(over: u64, picks: usize, seed: u64) -> Self {
        let mut rng = Rng(seed);
        Self::of((0..picks).map(|_| rng.below(over)))
    }

    pub fn get(&self, i: u64) -> &str {
        let i = usize::try_from(i).unwrap_or(usize::MAX);
        let i = if i < self.len { i } else { i % self.len };
        &self.text[i * KEY_LEN..(i + 1) * KEY_LEN]
    }
}

pub fn key(i: u64) -> String {
    format!("call:{i:010}")
}

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}
