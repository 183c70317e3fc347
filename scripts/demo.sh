#!/usr/bin/env bash
# The README's main job: build a kernel from Debian's kernel source package with
# `lvh kernels`, a root image with `lvh images build` (configs/demo-images.json),
# boot them with `lvh run` and run `uname -a` in the guest. Everything goes to
# ./_data (or $LVH_DEMO_DIR); a second run reuses what the first one built.
set -euo pipefail

LVH=${LVH:-target/release/lvh}
DIR=${LVH_DEMO_DIR:-_data}
TARBALL=${LVH_DEMO_SOURCE:-/usr/src/linux-source-6.12.tar.xz}
KERNEL=demo
# tinyconfig plus lvh's option groups: builds in a few minutes on 2 cores.
COMMON_GROUPS=virtio,minimize,namespaces
KERNEL_GROUPS=runner
# KVM does not work everywhere (see README); the Makefile exports LVH_ACCEL=tcg.
export LVH_ACCEL=${LVH_ACCEL:-auto}

say() { printf '\n==> %s\n' "$*" >&2; }
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# 1. A local git repository from Debian's kernel source package: the "remote".
SRC="$DIR/src/linux"
if [ ! -d "$SRC/.git" ]; then
	say "unpacking $TARBALL into a local git repository at $SRC"
	[ -f "$TARBALL" ] || { echo "demo: $TARBALL is missing: apt-get install linux-source-6.12" >&2; exit 1; }
	rm -rf "$SRC.partial"
	mkdir -p "$SRC.partial"
	tar -C "$SRC.partial" --strip-components=1 -xf "$TARBALL"
	git -C "$SRC.partial" init -q -b main
	git -C "$SRC.partial" -c core.compression=1 add -A -f  # Debian's .gitignore ignores the whole top level
	git -C "$SRC.partial" -c user.name=lvh -c user.email=lvh@localhost commit -q -m "$(basename "$TARBALL")"
	mv "$SRC.partial" "$SRC"
fi

# 2. The kernel, through lvh kernels.
if [ ! -f "$DIR/kernels.json" ]; then
	say "lvh kernels init"
	"$LVH" kernels init --dir "$DIR" --config-groups "$COMMON_GROUPS"
fi
if ! "$LVH" kernels list --dir "$DIR" | awk '{print $1}' | grep -qx "$KERNEL"; then
	say "lvh kernels add $KERNEL"
	"$LVH" kernels add "$KERNEL" "$SRC" --dir "$DIR" --config-groups "$KERNEL_GROUPS" --base-config tinyconfig
fi
say "lvh kernels fetch/configure/build $KERNEL"
"$LVH" kernels fetch "$KERNEL" --dir "$DIR"
"$LVH" kernels configure "$KERNEL" --dir "$DIR"
KIMAGE=$("$LVH" kernels build "$KERNEL" --dir "$DIR" | tail -n 1)
[ -f "$KIMAGE" ] || { echo "demo: lvh kernels build printed '$KIMAGE', not a file" >&2; exit 1; }

# 3. The root image, through lvh images build.
IMGDIR="$DIR/demo-image"
mkdir -p "$IMGDIR"
cp configs/demo-images.json "$IMGDIR/images.json"
say "lvh images build"
"$LVH" images build --dir "$IMGDIR"
IMAGE="$IMGDIR/images/demo.img"

# 4. Boot them and run a command in the guest.
say "lvh run --kernel $KIMAGE --image $IMAGE -- uname -a"
"$LVH" run --kernel "$KIMAGE" --image "$IMAGE" --mem 1G -- uname -a
