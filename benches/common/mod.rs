//! Pieces shared by the engine bench and the side-by-side comparison: the 214-byte
//! telephony record, the bare sharded map, a counting allocator, and the set-up.
// Each bench binary uses a different subset.
#![allow(dead_code)]

pub mod bare_map;
pub mod heap;
pub mod record;
pub mod setup;
