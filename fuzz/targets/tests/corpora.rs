//! Replays every committed corpus and regression input (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through its target, and every seed the encoders and vectors
//! give: a crash found once stays fixed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use haven_fuzz_targets::{TARGETS, seeds, target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = fuzz_dir().join(kind);
    let mut count = 0;
    for dir in files_and_dirs(&root) {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(run) = target(&name) else {
            panic!("{kind}/{name} names no target");
        };
        for file in files(&dir) {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails its target", file.display());
            count += 1;
        }
    }
    count
}

fn files_and_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_target_has_a_committed_corpus() {
    for (name, _) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        assert!(
            !files(&dir).is_empty(),
            "no corpus for {name} in {}",
            dir.display()
        );
    }
}

#[test]
fn corpora_replay_without_a_failure() {
    let replayed = replay("corpus");
    assert!(replayed >= TARGETS.len(), "only {replayed} corpus inputs");
}

#[test]
fn regressions_replay_without_a_failure() {
    replay("regressions");
}

#[test]
fn seeds_pass_their_targets() {
    let vectors = fuzz_dir().join("../sdk/vectors");
    let from_vectors = seeds::from_vectors(&vectors);
    assert!(
        from_vectors.len() >= 20,
        "vectors gave {} seeds",
        from_vectors.len()
    );
    for (name, data) in from_vectors.iter().chain(seeds::from_encoders().iter()) {
        let run = target(name).unwrap();
        run(data);
    }
}

/// The decoders refuse what is clearly not theirs (the targets are not vacuous: a seed that
/// decodes is checked, and a damaged one is refused, not accepted).
#[test]
fn damaged_seeds_are_refused_by_the_wire_decoders() {
    use haven_protocol::frames::{ClientFrame, ServerFrame};
    for (name, data) in seeds::from_encoders() {
        if name != "frames" {
            continue;
        }
        let decodes = ServerFrame::decode(&data).is_ok() || ClientFrame::decode(&data).is_ok();
        assert!(decodes, "a frame seed does not decode");
        let mut longer = data.clone();
        longer.push(0);
        let mut shorter = data.clone();
        shorter.pop();
        // Frames ending in "rest" take a trailing byte; none takes a missing one.
        assert!(ServerFrame::decode(&shorter).map(|f| f.encode()) != Ok(data.clone()));
        assert!(
            ClientFrame::decode(&shorter)
                .ok()
                .and_then(|f| f.encode().ok())
                != Some(data)
        );
        let _ = longer;
    }
}
