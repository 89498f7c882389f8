#!/usr/bin/env bash
# uniffi bindings in CI: installs what the binding tests need (idempotently, cached outside the
# clone), then `cargo xtask test`: builds the haven-ffi cdylib, generates Swift/Kotlin/Python
# from it, builds the haven-test-relay launcher, runs the pytest suite and the Kotlin program against relay
# processes, and checks the generated Swift sources; the pytest suite's hostile relay tests use
# the haven-hostile-relay launcher built here. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/haven-ci-target}"

# JNA for Kotlin: Debian's libjna-java.
if [ ! -f /usr/share/java/jna.jar ]; then
  (apt-get install -y libjna-java >/dev/null 2>&1) \
    || { apt-get update >/dev/null && apt-get install -y libjna-java >/dev/null; }
fi
export JNA_JAR=/usr/share/java/jna.jar

# The Kotlin compiler (with kotlin-stdlib and kotlinx-coroutines) from the npm package, cached.
kotlin_cache="$HOME/.cache/haven-kotlin"
export KOTLIN_HOME="$kotlin_cache/node_modules/kotlin-compiler"
if [ ! -x "$KOTLIN_HOME/bin/kotlinc" ] || [ ! -f "$KOTLIN_HOME/lib/kotlinx-coroutines-core-jvm.jar" ]; then
  mkdir -p "$kotlin_cache"
  (cd "$kotlin_cache" && npm install --no-audit --no-fund --loglevel=error kotlin-compiler)
fi

# pytest.
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install --quiet pytest

start=$(date +%s)
# The hostile relay launcher (a real relay behind a lying proxy) for test_hostile_relay.py.
cargo build -p haven-e2e --bin haven-hostile-relay
export HAVEN_HOSTILE_RELAY_BIN="$CARGO_TARGET_DIR/debug/haven-hostile-relay"
cargo xtask test
echo "uniffi bindings: done in $(( $(date +%s) - start ))s"
