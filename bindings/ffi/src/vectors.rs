//! The SDK's published test vectors, recomputed by this build of the library, so the host
//! languages can check the compiled core against the committed `sdk/vectors/*.json`.

use crate::error::HavenError;

/// Names of the vector sets (each the stem of a file in `sdk/vectors/`): the SDK's and the
/// client core's.
#[uniffi::export]
pub fn test_vector_names() -> Vec<String> {
    haven_client_core::vectors::all_names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Recomputes the vector set `name` with this build of the core and returns it as JSON (equal,
/// once parsed, to `sdk/vectors/<name>.json`).
///
/// # Errors
/// [`HavenError::NotFound`] for an unknown name.
#[uniffi::export]
pub fn compute_test_vector(name: String) -> Result<String, HavenError> {
    if !haven_client_core::vectors::all_names().contains(&name.as_str()) {
        return Err(HavenError::NotFound(format!(
            "no test vector set named {name:?}"
        )));
    }
    // The builders assert as they go; a panic (this build disagreeing with itself) is caught
    // and reported instead of unwinding into the host.
    std::panic::catch_unwind(|| haven_client_core::vectors::build_any_json(&name))
        .map_err(|_| HavenError::Internal(format!("building the {name} vectors failed")))?
        .ok_or_else(|| HavenError::NotFound(format!("no test vector set named {name:?}")))
}
