#!/usr/bin/env bash
# The web bindings: builds `haven-wasm` for wasm32 and its JS package (wasm-bindgen), runs the
# wasm-bindgen-test suite under Node, the Node tests over the built package (test vectors
# recomputed through the wasm build, errors across the boundary), and the browser end-to-end
# tests (headless Debian Chromium + playwright-core, users 1:1 and in a group through a real
# relay process; and one group shared by a browser user, a `haven-chat` CLI user and a Python
# user of the uniffi module; each lie of a hostile relay refused with an error and an event; the
# relay's admin page with a key made by `haven-relay admin create-key`).
# Installs what it needs idempotently, cached outside the clone: wasm-bindgen-cli in
# ~/.cargo/bin, npm's cache in ~/.cache/haven-npm, Chromium from Debian only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
t0=$(date +%s)
say() { echo "--- wasm: $* ($(( $(date +%s) - t0 ))s)"; }

say "toolchain: wasm32 target, wasm-bindgen-cli matching Cargo.lock"
rustup target add wasm32-unknown-unknown >/dev/null
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! "$HOME/.cargo/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $wb_version"; then
  # --locked first; without it when the CLI's own lockfile names a version the index lacks.
  cargo install wasm-bindgen-cli --version "$wb_version" --locked \
    || cargo install wasm-bindgen-cli --version "$wb_version"
fi
export PATH="$HOME/.cargo/bin:$PATH"

say "Chromium (Debian package) and playwright-core (npm, package-lock'd)"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
(cd examples/web && npm ci --cache "$HOME/.cache/haven-npm" --prefer-offline --no-audit --no-fund --loglevel=error)

say "build haven-wasm for wasm32 and generate the JS packages"
cargo build -p haven-wasm --target wasm32-unknown-unknown --locked --features test-vectors
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/debug/haven_wasm.wasm"
web_pkg="$CARGO_TARGET_DIR/haven-web-pkg"
node_pkg="$CARGO_TARGET_DIR/haven-node-pkg"
wasm-bindgen --target web --out-dir "$web_pkg" "$wasm"
wasm-bindgen --target nodejs --out-dir "$node_pkg" "$wasm"

say "wasm-bindgen-test under Node"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p haven-wasm --target wasm32-unknown-unknown --locked --features test-vectors --test web

say "Node tests over the built package (test vectors, errors across the boundary)"
HAVEN_NODE_PKG="$node_pkg" node --test bindings/wasm/tests/node/

say "end-to-end: browser users (1:1, a group, the diary, a file); a browser, a CLI and a Python user in one group; the relay's admin page"
# The test-relay launcher and the haven-chat binary the test command built (their own tests run
# them); built here when absent.
launcher="$CARGO_TARGET_DIR/debug/haven-test-relay"
chat="$CARGO_TARGET_DIR/debug/haven-chat"
# The relay binary itself: admin_page.test.mjs makes the first admin key with its `admin`
# subcommand.
relay_bin="$CARGO_TARGET_DIR/debug/haven-relay"
if [ ! -x "$launcher" ] || [ ! -x "$chat" ] || [ ! -x "$relay_bin" ]; then
  cargo test --workspace --no-run --locked
fi
# The generated Python module `haven` (.ci/ffi.sh, which CI runs first, generates it); generated
# here when absent.
py_bindings="$CARGO_TARGET_DIR/haven-bindings/python"
if [ ! -f "$py_bindings/haven.py" ]; then
  cargo xtask bindings
fi
# The hostile relay launcher (a real relay behind a lying proxy) for hostile_relay.test.mjs.
cargo build -p haven-e2e --bin haven-hostile-relay --locked
hostile="$CARGO_TARGET_DIR/debug/haven-hostile-relay"
HAVEN_TEST_RELAY_BIN="$launcher" HAVEN_RELAY_BIN="$relay_bin" HAVEN_WEB_PKG="$web_pkg" HAVEN_CHAT_BIN="$chat" \
  HAVEN_PY_BINDINGS="$py_bindings" HAVEN_HOSTILE_RELAY_BIN="$hostile" node --test examples/web/e2e/

say "done"
