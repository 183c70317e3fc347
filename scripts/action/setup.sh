#!/usr/bin/env bash
# Step 1 of the action: derives the names and cache keys that the actions/cache
# steps need and writes them to $GITHUB_OUTPUT.
#
# Cache keys are little-vm-helper's (`lvh-image-<image>_<image-version>`) so a
# workflow that swaps `uses:` keeps its cached images; an arm64 guest adds `_arm64`
# so an amd64 and an arm64 job do not share one entry.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

arch="$(guest_arch)"
name="$(image_name)"
suffix=""
if [ "$arch" != amd64 ]; then suffix="_$arch"; fi

# lvh itself: built by `cargo install` into a folder of its own, cached by version.
# With no lvh-version the action's own checkout is built; its key is a hash of the
# sources, so a moving ref (a branch) never reuses a stale binary.
src="${GITHUB_ACTION_PATH:-$(cd "$here/../.." && pwd)}"
version="${INPUT_LVH_VERSION:-}"
if [ -z "$version" ]; then
	version="src-$(cd "$src" && find Cargo.toml Cargo.lock build.rs cmd pkg configs -type f -print0 2>/dev/null |
		sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
fi
root="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}}/lvh/${version}/$(uname -m)"

out="${GITHUB_OUTPUT:-/dev/stdout}"
{
	echo "arch=$arch"
	echo "image-name=$name"
	echo "image-file=$(images_dir)/$name.qcow2"
	echo "image-cache-path=$(images_dir)/$name.qcow2.zst"
	echo "image-cache-key=lvh-image-${INPUT_IMAGE}_${INPUT_IMAGE_VERSION}${suffix}"
	echo "kernel-dir=$(kernels_dir)/${INPUT_KERNEL_VERSION:-none}"
	echo "kernel-cache-key=lvh-kernel-${INPUT_KERNEL_VERSION:-none}_${arch}"
	echo "lvh-root=$root"
	echo "lvh-cache-key=lvh-cli-$(uname -s)-$(uname -m)-${version}"
} >>"$out"
