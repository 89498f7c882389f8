//! uniffi's `uniffi-bindgen` command, built from this workspace so the generator always matches
//! the uniffi version `haven-ffi` is compiled with (a mismatch fails at load time with a
//! checksum or contract-version error).

fn main() {
    uniffi::uniffi_bindgen_main();
}
