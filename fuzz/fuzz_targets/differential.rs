//! ctxtree against a single-threaded reference model of Go's `context`
//! rules; see `fuzz/harness/src/lib.rs` (`differential`) and fuzz/README.md.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctxtree_fuzz_harness::differential::run(data);
});
