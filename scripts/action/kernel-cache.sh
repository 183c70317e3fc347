#!/usr/bin/env bash
# lvh only, the `kernel-cache` input: pulls a kernel build cache that an earlier
# run pushed with `lvh kernels cache push REF` into lvh's compiler cache
# directory ($CCACHE_DIR, else ~/.cache/lvh/ccache), so `lvh kernels build` in
# the job's later steps compiles only what changed. A reference that does not
# exist yet (the first run) is a warning: the builds start cold.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

ref="${INPUT_KERNEL_CACHE:-}"
[ -n "$ref" ] || exit 0
if "$(lvh_bin)" kernels cache pull "$ref" >&2; then
	log "kernel build cache pulled from $ref"
else
	echo "::warning::lvh-action: no kernel build cache pulled from $ref (a first run has none): kernel builds start cold"
fi
