#!/usr/bin/env bash
# CI fuzzing step (docs/ARCHITECTURE.md, "Fuzzing"): builds every cargo-fuzz target of fuzz/
# with nightly and libFuzzer, runs each for a bounded time from its committed corpus, prints
# the executions per target and fails on any crash, panic, timeout or out-of-memory.
# HAVEN_FUZZ_SECONDS sets the time per target (default 8 s: 20 targets in about 3.5 minutes, plus
# the build, about 2 minutes in a fresh clone); HAVEN_FUZZ_TARGETS="frames content" runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${HAVEN_FUZZ_SECONDS:-8}"
# Built with sanitizers by nightly: its own cache, kept between runs like the CI target dir.
export CARGO_TARGET_DIR="${HAVEN_FUZZ_TARGET_DIR:-$HOME/.cache/haven-fuzz-target}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! "$HOME/.cargo/bin/cargo-fuzz" --version 2>/dev/null | grep -q ' 0\.13\.'; then
  cargo install cargo-fuzz@0.13.2 --locked
fi

cd fuzz
cargo +nightly fuzz build
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
targets="${HAVEN_FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
total=0
for t in $targets; do
  mkdir -p "$work/$t" "artifacts/$t"
  # New inputs go to a scratch directory; the committed corpus is only read.
  if "$bin/$t" "$work/$t" "corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    tail -n 40 "$work/$t.log"
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n1)"
  total=$(( total + ${runs:-0} ))
  printf '%-20s %10s executions in %ss: %s\n' "$t" "${runs:-?}" "$seconds" "$status"
done
echo "total: $total executions"
if (( ${#failed[@]} )); then
  echo "crashing targets: ${failed[*]} (inputs in fuzz/artifacts/<target>/: minimise with"
  echo "'cargo +nightly fuzz tmin <target> <input>', fix, and commit to fuzz/regressions/<target>/)"
  exit 1
fi
