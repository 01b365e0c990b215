//! Fuzz target: any bytes as one segment image; the parser must never panic, and what it
//! reports must hold together and round-trip (see `memdb_wal::internals::check_parse`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memdb_wal::internals::check_parse(data));
