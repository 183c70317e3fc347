#!/usr/bin/env bash
# The README's main job: build a kernel from Debian's kernel source package with
# `lvh kernels`, a root image with `lvh images build`, boot them with `lvh run`
# and run `uname -a` in the guest. Everything goes to ./_data (or $LVH_DEMO_DIR).
set -euo pipefail

LVH=${LVH:-target/release/lvh}
DIR=${LVH_DEMO_DIR:-_data}
mkdir -p "$DIR"

echo "demo: kernel builder, image builder and runner land in later steps;" >&2
echo "demo: running what exists so far." >&2
"$LVH" version
"$LVH" kernels init --dir "$DIR"
