#!/usr/bin/env bash
# Step 3 of the action: the image (and a kernel-version's kernel) in
# little-vm-helper's folders. The actions/cache steps before this one restore
# `<parent>/images/<name>.qcow2.zst` and `<parent>/kernels/<tag>`; on a hit the
# image is decompressed, else pulled straight from the registry (no Docker) with
# `--cache`, which leaves the .zst for actions/cache to save.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

lvh="$(lvh_bin)"
arch="$(guest_arch)"
repo="${INPUT_IMAGE_REPO:-quay.io/lvh-images}"
dir="$(images_dir)"
file="$dir/$(image_name).qcow2"

$SUDO mkdir -p "$dir"
$SUDO chmod 777 "$dir"
if is_true "${IMAGE_CACHE_HIT:-false}" && [ -f "$file.zst" ]; then
	log "image from the cache: $file.zst"
	zstd -q -df "$file.zst" -o "$file"
else
	ref="$repo/${INPUT_IMAGE}:${INPUT_IMAGE_VERSION}"
	log "pulling $ref into $dir"
	"$lvh" images pull --cache "$ref" --dir "${INPUT_IMAGES_FOLDER_PARENT:-}/" --platform "linux/$arch"
fi
find "$dir" -type f -exec $SUDO chmod 666 {} +
find "$dir" >&2
[ -f "$file" ] || die "image $(basename "$file") is not in $dir (little-vm-helper names it <image less -ci>_<image-version up to its first ->)"

if [ -n "${INPUT_KERNEL_VERSION:-}" ] && [ -z "${INPUT_KERNEL_PATH:-${INPUT_KERNEL:-}}" ]; then
	kdir="$(kernels_dir)"
	if is_true "${KERNEL_CACHE_HIT:-false}" && [ -d "$kdir/${INPUT_KERNEL_VERSION}/boot" ]; then
		log "kernel from the cache: $kdir/${INPUT_KERNEL_VERSION}"
	else
		$SUDO mkdir -p "$kdir"
		$SUDO chmod 777 "$kdir"
		log "pulling kernel $repo/kernel-images:${INPUT_KERNEL_VERSION} into $kdir"
		"$lvh" kernels pull "${INPUT_KERNEL_VERSION}" --repo "$repo/kernel-images" --dir "$kdir" --platform "linux/$arch"
	fi
	log "kernel: $(kernel_file)"
fi

# lvh only: the kernel build cache for later `lvh kernels build` steps.
bash "$here/kernel-cache.sh"
