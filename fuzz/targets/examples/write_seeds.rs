//! Writes the seed inputs of every target to `fuzz/corpus/<target>/seed-<sha256 prefix>`
//! (run before `cargo fuzz cmin`; see docs/ARCHITECTURE.md, "Fuzzing").

use std::path::Path;

use sha2::{Digest, Sha256};

fn main() -> std::io::Result<()> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seeds = haven_fuzz_targets::seeds::from_vectors(&fuzz.join("../sdk/vectors"));
    seeds.extend(haven_fuzz_targets::seeds::from_encoders());
    for (target, data) in &seeds {
        let dir = fuzz.join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        let digest = Sha256::digest(data);
        let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.join(format!("seed-{name}")), data)?;
    }
    println!("{} seeds written", seeds.len());
    Ok(())
}
