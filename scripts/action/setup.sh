#!/usr/bin/env bash
# Step 1 of the action: decides what to install and derives the folders and
# cache keys that the actions/cache steps need; writes them to $GITHUB_OUTPUT.
#
# Folders and keys are little-vm-helper's: images in
# `<parent>/images/<arch>/images/`, kernels in `<parent>/kernels/<arch>/<tag>`,
# keys `lvh-image-<image>_<image-version>_<arch>` and
# `lvh-kernel-<kernel-version>_<arch>`. The image's cache holds the pulled
# `.zst` under its own name in `<parent>/images/<arch>/cache/<image>_<version>/`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

arch="$(guest_arch)"

# The folders, now: the actions/cache steps that follow restore into them, as
# the runner's user.
if is_true "${INPUT_PROVISION:-true}"; then
	for d in "$(images_dir)" "$(arch_dir)/cache" "$(kernels_dir)"; do make_dir "$d"; done
fi

# lvh itself: none when one is there already ($LVH_BIN, or this lvh on PATH, as
# little-vm-helper skips its install when `command -v lvh` finds one) or when
# nothing is provisioned, else a release (or, for a commit, a cargo build) in a
# folder of its own, cached by version.
install="skip"
version=""
if ! is_true "${INPUT_PROVISION:-true}"; then
	:
elif [ -n "${LVH_BIN:-}" ]; then
	log "using LVH_BIN=$LVH_BIN"
elif found="$(lvh_on_path)"; then
	log "using $found (already on PATH)"
else
	if command -v lvh >/dev/null; then
		warn "$(command -v lvh) is not this lvh (little-vm-helper's?); installing lvh ahead of it on PATH"
	fi
	plan="$(install_plan)"
	read -r install version <<<"$plan"
fi
root="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}/lvh/${version:-none}/$(uname -m)"

out="${GITHUB_OUTPUT:-/dev/stdout}"
{
	echo "arch=$arch"
	echo "images-dir=$(images_dir)"
	echo "image-cache-path=$(image_cache_dir)"
	echo "image-cache-key=lvh-image-${INPUT_IMAGE}_${INPUT_IMAGE_VERSION}_${arch}"
	echo "kernel-dir=$(kernels_dir)/${INPUT_KERNEL_VERSION:-none}"
	echo "kernel-cache-key=lvh-kernel-${INPUT_KERNEL_VERSION:-none}_${arch}"
	echo "lvh-install=$install"
	echo "lvh-version=$version"
	echo "lvh-root=$root"
	echo "lvh-cache-key=lvh-cli-$(uname -s)-$(uname -m)-${version:-none}"
} >>"$out"
