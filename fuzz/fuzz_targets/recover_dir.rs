//! Fuzz target: any bytes as a small directory of segments; opening the log on it must
//! never panic, and a log that opens must replay, append and reopen consistently (see
//! `memdb_wal::internals::check_recover`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memdb_wal::internals::check_recover(data));
