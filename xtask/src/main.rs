//! Developer tasks, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! - `cargo xtask bindings [--release]`: builds the `haven-ffi` cdylib and generates the Swift,
//!   Kotlin and Python bindings from the compiled library (uniffi library mode) into
//!   `<target>/haven-bindings/{swift,kotlin,python}`, with the library copied next to the
//!   Python and Kotlin sources.
//! - `cargo xtask test [--python] [--kotlin] [--swift]`: the above, the `haven-test-relay` launcher,
//!   then the pytest suite, the Kotlin program and the Swift shape check (all three when none
//!   is named).
//!
//! - `cargo xtask flakes [--runs N] [--parallel M]`: builds the README's test command's tests
//!   once, then runs the whole suite N times in a row, M copies at once (load), and reports every
//!   test that ever failed (with its first failure) and every test reported as skipped.
//!
//! `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/`. Kotlin comes from
//! `$KOTLIN_HOME` (default `~/.cache/haven-kotlin/node_modules/kotlin-compiler`, the npm
//! `kotlin-compiler` package) and JNA from `$JNA_JAR` (default Debian's
//! `/usr/share/java/jna.jar`).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

mod cycles;
mod flakes;
use xshell::{Shell, cmd};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "xtask", about = "Haven developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the haven-ffi library and generate Swift, Kotlin and Python bindings.
    Bindings {
        /// Build the library with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Generate the bindings, build the test-relay launcher and run the binding tests.
    Test {
        /// Run the pytest suite.
        #[arg(long)]
        python: bool,
        /// Compile and run the Kotlin program.
        #[arg(long)]
        kotlin: bool,
        /// Check the generated Swift sources.
        #[arg(long)]
        swift: bool,
    },
    /// Report import cycles between the source files of a crate (default: the relay) and fail if
    /// there is one.
    Cycles {
        /// The crate's source directory, relative to the workspace root.
        #[arg(long, default_value = "server/src")]
        src: String,
    },
    /// Run the whole test suite several times, several copies at once, and report every test
    /// that ever failed.
    Flakes {
        /// Rounds in a row.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Copies of the suite run at the same time in each round.
        #[arg(long, default_value_t = 2)]
        parallel: usize,
    },
}

/// Where things are.
struct Paths {
    root: PathBuf,
    target: PathBuf,
}

impl Paths {
    fn new() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("xtask is not inside the workspace")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    root.join(dir)
                }
            }
            _ => root.join("target"),
        };
        Ok(Self { root, target })
    }

    fn out(&self) -> PathBuf {
        self.target.join("haven-bindings")
    }

    fn library(&self, profile: &str) -> PathBuf {
        self.target.join(profile).join(library_file())
    }
}

fn library_file() -> String {
    format!(
        "{}haven_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let paths = Paths::new()?;
    let sh = Shell::new()?;
    sh.change_dir(&paths.root);
    match cli.command {
        Command::Bindings { release } => bindings(&sh, &paths, release, &[]),
        Command::Test {
            python,
            kotlin,
            swift,
        } => {
            let all = !(python || kotlin || swift);
            // One cargo invocation for the library, the generator and the relay: one feature
            // resolution, so shared dependencies are compiled once.
            bindings(&sh, &paths, false, &["-p", "haven-testkit"])?;
            let relay = paths
                .target
                .join("debug")
                .join(format!("haven-test-relay{}", std::env::consts::EXE_SUFFIX));
            if all || swift {
                check_swift(&paths)?;
            }
            if all || python {
                test_python(&sh, &paths, &relay)?;
            }
            if all || kotlin {
                test_kotlin(&sh, &paths, &relay)?;
            }
            Ok(())
        }
        Command::Flakes { runs, parallel } => flakes::run(&paths.root, runs, parallel),
        Command::Cycles { src } => cycles::run(&paths.root.join(src)).map_err(Into::into),
    }
}

/// Builds the cdylib (and the `extra` packages) and generates the three bindings from it.
fn bindings(sh: &Shell, paths: &Paths, release: bool, extra: &[&str]) -> Result<()> {
    let cargo = cargo();
    if release {
        cmd!(sh, "{cargo} build --locked --release -p haven-ffi").run()?;
        cmd!(sh, "{cargo} build --locked -p uniffi-bindgen {extra...}").run()?;
    } else {
        cmd!(
            sh,
            "{cargo} build --locked -p haven-ffi -p uniffi-bindgen {extra...}"
        )
        .run()?;
    }
    let profile = if release { "release" } else { "debug" };
    let library = paths.library(profile);
    let generator = paths
        .target
        .join("debug")
        .join(format!("uniffi-bindgen{}", std::env::consts::EXE_SUFFIX));
    let out = paths.out();
    for language in ["python", "kotlin", "swift"] {
        let dir = out.join(language);
        if dir.exists() {
            sh.remove_path(&dir)?;
        }
        sh.create_dir(&dir)?;
        cmd!(
            sh,
            "{generator} generate --library {library} --language {language} --out-dir {dir} --no-format"
        )
        .run()?;
    }
    // The Python module and JNA load the library from next to the sources.
    sh.copy_file(&library, out.join("python"))?;
    sh.copy_file(&library, out.join("kotlin"))?;
    println!("bindings generated in {}", out.display());
    Ok(())
}

/// Files the Swift generator must produce and declarations the Swift module must have (no
/// Swift toolchain here: the sources are checked in form; docs/BINDINGS.md builds them).
fn check_swift(paths: &Paths) -> Result<()> {
    let dir = paths.out().join("swift");
    for file in ["Haven.swift", "HavenFFI.h", "HavenFFI.modulemap"] {
        if !dir.join(file).is_file() {
            return Err(format!("swift: {file} was not generated").into());
        }
    }
    let swift = std::fs::read_to_string(dir.join("Haven.swift"))?;
    let expected = [
        "open class Messenger",
        "open class Diary",
        "open class StorageKey",
        "public protocol EventListener",
        "enum HavenError: Swift.Error",
        "public enum Event",
        "public enum Conversation",
        "public struct Message",
        "public struct DiaryEntry",
        "public static func register(",
        "open func sendText(",
        "open func nextEvent(",
        "open func safetyNumbers(",
        "public static func unlock(",
        "public static func fromHex(",
        "public func safetyNumber(",
        "public func havenVersion(",
        "async throws",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|e| !swift.contains(e))
        .collect();
    if !missing.is_empty() {
        return Err(format!("swift: Haven.swift lacks {missing:?}").into());
    }
    let header = std::fs::read_to_string(dir.join("HavenFFI.h"))?;
    if !header.contains("uniffi_haven_ffi_fn_method_messenger_send_text") {
        return Err("swift: HavenFFI.h lacks the send_text symbol".into());
    }
    println!("swift: Haven.swift declares all {} items", expected.len());
    Ok(())
}

fn test_python(sh: &Shell, paths: &Paths, relay: &Path) -> Result<()> {
    let module_dir = paths.out().join("python");
    let tests = paths.root.join("bindings/ffi/tests/python");
    let _path = sh.push_env("PYTHONPATH", &module_dir);
    let _relay = sh.push_env("HAVEN_TEST_RELAY_BIN", relay);
    let _vectors = sh.push_env("HAVEN_VECTORS_DIR", paths.root.join("sdk/vectors"));
    cmd!(sh, "python3 -m pytest -q -p no:cacheprovider {tests}").run()?;
    Ok(())
}

fn kotlin_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("KOTLIN_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/haven-kotlin/node_modules/kotlin-compiler"))
}

/// Compiles the generated Kotlin and the test program (skipped when neither changed) and runs
/// it with JNA pointed at the library.
fn test_kotlin(sh: &Shell, paths: &Paths, relay: &Path) -> Result<()> {
    let home = kotlin_home()?;
    let kotlinc = home.join("bin/kotlinc");
    let lib = home.join("lib");
    let jna = std::env::var_os("JNA_JAR")
        .map_or_else(|| PathBuf::from("/usr/share/java/jna.jar"), PathBuf::from);
    for needed in [&kotlinc, &jna] {
        if !needed.exists() {
            return Err(format!("kotlin: {} is missing (see .ci/ffi.sh)", needed.display()).into());
        }
    }
    let coroutines = lib.join("kotlinx-coroutines-core-jvm.jar");
    let stdlib = lib.join("kotlin-stdlib.jar");
    let out = paths.out().join("kotlin");
    let generated = out.join("haven/haven.kt");
    let program = paths.root.join("bindings/ffi/tests/kotlin/Main.kt");
    let jar = paths.out().join("kotlin-test.jar");
    let stamp = paths.out().join("kotlin-test.jar.sources");

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(&generated)?.hash(&mut hasher);
    std::fs::read(&program)?.hash(&mut hasher);
    let key = format!("{:016x}", hasher.finish());
    let fresh = jar.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == key);
    let sep = if cfg!(windows) { ";" } else { ":" };
    let compile_cp = format!("{}{sep}{}", jna.display(), coroutines.display());
    if fresh {
        println!("kotlin: sources unchanged, reusing {}", jar.display());
    } else {
        cmd!(
            sh,
            "{kotlinc} -nowarn -cp {compile_cp} -d {jar} {generated} {program}"
        )
        .run()?;
        std::fs::write(&stamp, key)?;
    }
    let run_cp = format!(
        "{}{sep}{}{sep}{}{sep}{}",
        jar.display(),
        jna.display(),
        coroutines.display(),
        stdlib.display()
    );
    let library_path = format!("-Djna.library.path={}", out.display());
    let _relay = sh.push_env("HAVEN_TEST_RELAY_BIN", relay);
    cmd!(sh, "java {library_path} -cp {run_cp} MainKt").run()?;
    Ok(())
}
