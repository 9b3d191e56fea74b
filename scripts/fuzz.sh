#!/usr/bin/env bash
# Fuzzes the plugin and browser frame parsers with cargo fuzz (libFuzzer), each for FUZZ_SECS
# seconds (default 180), starting from the examples in fuzz/corpus (EVENT_FORMATS.json's). Not
# part of the test suite: run it by hand like a benchmark; it stops by itself. A crash leaves its
# input in fuzz/artifacts/<target>/ (reproduce with `cargo fuzz run <target> <file>`).
#
# cargo fuzz needs nightly compiler flags: a nightly toolchain is used when rustup has one,
# otherwise the stable compiler with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECS:-180}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  run() { cargo +nightly fuzz "$@"; }
else
  run() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi
for target in plugin_frame browser_frame; do
  # Seeds stay as committed; what libFuzzer discovers goes to an ignored working corpus.
  work="fuzz/corpus-work/$target"
  mkdir -p "$work"
  cp -n "fuzz/corpus/$target"/* "$work"/
  echo "==> fuzzing $target for ${secs}s"
  run run "$target" "$work" -- -max_total_time="$secs" -max_len=4096
done
