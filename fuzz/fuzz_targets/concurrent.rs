//! Racing cancels, derivations, waits, drops and after_func registrations and
//! stops on a small shared tree, with
//! Go's invariants checked after join; see `fuzz/harness/src/lib.rs`
//! (`concurrent`) and fuzz/README.md.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctxtree_fuzz_harness::concurrent::run(data);
});
