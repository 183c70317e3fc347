#!/usr/bin/env bash
# Step 3 of the action: the image (and a kernel-version's kernel) in
# little-vm-helper's folders, and which image to boot.
#  - image: on a cache hit, the cached `.zst` (restored by actions/cache into
#    `<parent>/images/<arch>/cache/<image>_<version>/`) is decompressed into
#    `<parent>/images/<arch>/images/`; else `<image-repo>/<image>:<image-version>`
#    is pulled there straight from the registry (no Docker) and its `.zst` moved
#    to the cache folder for actions/cache to save. The image to boot is the
#    pulled file whose name starts with `<image less -ci>_`, else the only one,
#    else the one little-vm-helper's rule names; its path is the `image-file`
#    output.
#  - kernel-version: `lvh kernels pull <kernel-version>` from kernel-repo, by
#    default lvh's (and little-vm-helper's) default kernel repository, into
#    `<parent>/kernels/<arch>/<kernel-version>` (also cached).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

lvh="$(lvh_bin)"
arch="$(guest_arch)"
dir="$(images_dir)"
cache="$(image_cache_dir)"

for d in "$dir" "$cache"; do make_dir "$d"; done

images=()
zsts=()
if is_true "${IMAGE_CACHE_HIT:-false}" && compgen -G "$cache/*.zst" >/dev/null; then
	for z in "$cache"/*.zst; do
		f="$dir/$(basename "$z" .zst)"
		log "image from the cache: $z"
		zstd -q -d -f "$z" -o "$f"
		images+=("$f")
	done
else
	ref="${INPUT_IMAGE_REPO:-quay.io/lvh-images}/${INPUT_IMAGE}:${INPUT_IMAGE_VERSION}"
	log "pulling $ref into $dir"
	pulled="$("$lvh" images pull --cache "$ref" --dir "$(arch_dir)" --platform "linux/$arch")" ||
		die "inputs image-repo '${INPUT_IMAGE_REPO:-}', image '${INPUT_IMAGE}', image-version '${INPUT_IMAGE_VERSION}': cannot pull $ref (see lvh's error above)"
	while IFS= read -r f; do
		case "$f" in
		"") ;;
		*.zst) zsts+=("$f") ;;
		*) images+=("$f") ;;
		esac
	done <<<"$pulled"
fi
image="$(pick_image "${images[@]}")"
log "image: $image"

# The cache folder holds the chosen image's .zst only.
if [ "${#zsts[@]}" -gt 0 ]; then
	find "$cache" -mindepth 1 -delete
	for z in "${zsts[@]}"; do
		if [ "$z" = "$image.zst" ]; then mv -f "$z" "$cache/"; else rm -f "$z"; fi
	done
fi
echo "image-file=$image" >>"${GITHUB_OUTPUT:-/dev/null}"

if [ -n "${INPUT_KERNEL_VERSION:-}" ]; then
	if [ -n "${INPUT_KERNEL_PATH:-${INPUT_KERNEL:-}}" ]; then
		warn "both kernel-path and kernel-version are set: booting kernel-version '${INPUT_KERNEL_VERSION}', as little-vm-helper does (kernel-path is ignored)"
	fi
	kdir="$(kernels_dir)"
	if is_true "${KERNEL_CACHE_HIT:-false}" && [ -d "$kdir/${INPUT_KERNEL_VERSION}/boot" ]; then
		log "kernel from the cache: $kdir/${INPUT_KERNEL_VERSION}"
	else
		make_dir "$kdir"
		repo=()
		if [ -n "${INPUT_KERNEL_REPO:-}" ]; then repo=(--repo "$INPUT_KERNEL_REPO"); fi
		from="${INPUT_KERNEL_REPO:-the default kernel repository of lvh kernels pull}"
		log "pulling kernel ${INPUT_KERNEL_VERSION} from $from into $kdir"
		"$lvh" kernels pull "${INPUT_KERNEL_VERSION}" "${repo[@]}" --dir "$kdir" --platform "linux/$arch" >/dev/null ||
			die "input kernel-version '${INPUT_KERNEL_VERSION}': cannot pull it (see lvh's error above)"
	fi
	log "kernel: $(kernel_file)"
fi

# lvh only: the kernel build cache for later `lvh kernels build` steps.
bash "$here/kernel-cache.sh"
