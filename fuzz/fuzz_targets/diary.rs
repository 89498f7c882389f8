#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| haven_fuzz_targets::crypto::diary(data));
