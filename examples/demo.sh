#!/usr/bin/env bash
# Builds shardpack and runs the main job on the small example folder: pack, list, show,
# verify (and check the root digest), extract, and compare with the input.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cargo build --release --quiet --manifest-path "$here/../Cargo.toml" -p shardpack-cli
bin="$here/../target/release/shardpack"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$bin" pack "$here/data" -o "$work/archive"
"$bin" ls --long "$work/archive"
"$bin" info "$work/archive"
root="$("$bin" info --json "$work/archive" | sed -n 's/.*"root": "\([0-9a-f]*\)".*/\1/p')"
"$bin" verify "$work/archive" --expect-root "$root"
"$bin" extract "$work/archive" -o "$work/out"
diff -r "$here/data" "$work/out"
echo "demo: extracted files are byte-identical to the input"
