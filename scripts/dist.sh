#!/usr/bin/env bash
# The release files (make dist, make deb). Usage:
#   scripts/dist.sh dist   the portable binary, checked, and dist/lvh-<version>-<target>.tar.gz
#   scripts/dist.sh deb    dist/lvh_<version>-1_<arch>.deb from the same binary
#   scripts/dist.sh sums   dist/SHA256SUMS over every tarball and .deb in dist/
#   scripts/dist.sh check-tag vX.Y.Z
#                          fails unless the tag is Cargo.toml's version and
#                          CHANGELOG.md dates it; prints its changelog section
#
# The binary is linked with zig (cargo-zigbuild, zig from PyPI's ziglang) against
# glibc $GLIBC (2.31: Ubuntu 20.04, Debian 11 and every GitHub runner),
# with the `dist` profile (stripped, no debug info), zlib linked in and both
# guest inits required. Checked here: its size, the libraries it needs and the
# newest glibc symbol it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO="${CARGO:-cargo}"
GLIBC=2.31
MAX_BYTES=$((25 * 1000 * 1000))
LVH_TOOLS="${LVH_TOOLS:-$HOME/.cache/lvh-tools}"
# Pinned: the linker is part of what is shipped.
ZIGBUILD_PIP="cargo-zigbuild==0.24.1"
ZIG_PIP="ziglang==0.17.1"

host_target() {
	case "$(uname -m)" in
	x86_64) echo x86_64-unknown-linux-gnu ;;
	aarch64) echo aarch64-unknown-linux-gnu ;;
	*) echo "dist: no release target for $(uname -m)" >&2 && exit 1 ;;
	esac
}
TARGET="$(host_target)"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
NAME="lvh-$VERSION-$TARGET"
BIN="target/$TARGET/dist/lvh"
# What the .deb takes (see Cargo.toml's package.metadata.deb).
ASSETS=target/dist-assets

# cargo-zigbuild and zig in a virtualenv of their own.
zig_tools() {
	local venv="$LVH_TOOLS/venv"
	if [ ! -x "$venv/bin/cargo-zigbuild" ] || ! "$venv/bin/pip" show -q "${ZIG_PIP%%=*}" >/dev/null 2>&1 ||
		[ "$("$venv/bin/cargo-zigbuild" --version)" != "cargo-zigbuild ${ZIGBUILD_PIP#*==}" ]; then
		echo "dist: installing $ZIGBUILD_PIP $ZIG_PIP into $venv" >&2
		python3 -m venv "$venv"
		"$venv/bin/pip" install -q "$ZIGBUILD_PIP" "$ZIG_PIP"
	fi
	export PATH="$venv/bin:$PATH"
}

# Fails unless the binary is small, needs only the C library's own libraries,
# and uses no glibc symbol newer than $GLIBC.
check_binary() {
	local size newest libs bad
	size="$(stat -c %s "$BIN")"
	echo "dist: $BIN: $size bytes" >&2
	[ "$size" -le "$MAX_BYTES" ] || { echo "dist: $BIN is larger than $MAX_BYTES bytes" >&2 && exit 1; }
	newest="$(objdump -T "$BIN" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
	echo "dist: newest glibc symbol version: $newest" >&2
	[ "$(printf '%s\n%s\n' "$newest" "$GLIBC" | sort -V | tail -1)" = "$GLIBC" ] ||
		{ echo "dist: $BIN needs glibc $newest, more than $GLIBC" >&2 && exit 1; }
	libs="$(objdump -p "$BIN" | awk '$1 == "NEEDED" { print $2 }')"
	echo "dist: needs $(tr '\n' ' ' <<<"$libs")" >&2
	bad="$(echo "$libs" | grep -Ev '^(libc|libm|libgcc_s|libdl|libpthread|librt|ld-linux[-a-z0-9_]*)\.so(\.[0-9.]+)?$' || true)"
	[ -z "$bad" ] || { echo "dist: $BIN needs libraries beyond the C library's: $(tr '\n' ' ' <<<"$bad")" >&2 && exit 1; }
}

dist() {
	zig_tools
	local start=$SECONDS
	# Both guest inits or no build; zlib from source, not the build machine's.
	LVH_REQUIRE_GUEST_INITS=1 LIBZ_SYS_STATIC=1 \
		"$CARGO" zigbuild --locked --profile dist --target "$TARGET.$GLIBC"
	echo "dist: built in $((SECONDS - start)) s" >&2
	check_binary

	# Completions and manual pages come from the binary itself.
	rm -rf "$ASSETS" && mkdir -p "$ASSETS/complete" "$ASSETS/doc"
	cp "$BIN" "$ASSETS/lvh"
	"$BIN" completion bash >"$ASSETS/complete/lvh.bash"
	"$BIN" completion zsh >"$ASSETS/complete/_lvh"
	"$BIN" completion fish >"$ASSETS/complete/lvh.fish"
	"$BIN" man "$ASSETS/doc"

	local stage="target/dist-stage"
	rm -rf "$stage" && mkdir -p "$stage/$NAME" dist
	cp -r "$ASSETS/." "$stage/$NAME/"
	cp LICENSE README.md CHANGELOG.md "$stage/$NAME/"
	# The same bytes from the same commit: fixed order, owner and times.
	local mtime
	mtime="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
		-C "$stage" -cf - "$NAME" | gzip -n -9 >"dist/$NAME.tar.gz.partial"
	mv "dist/$NAME.tar.gz.partial" "dist/$NAME.tar.gz"
	echo "dist: dist/$NAME.tar.gz ($(stat -c %s "dist/$NAME.tar.gz") bytes)" >&2
	sums
}

deb() {
	[ -x "$ASSETS/lvh" ] || { echo "dist: no $ASSETS/lvh: run make dist first" >&2 && exit 1; }
	command -v cargo-deb >/dev/null || "$CARGO" install --locked cargo-deb@3.8.0
	local variant=()
	case "$TARGET" in aarch64-*) variant=(--variant arm64) ;; esac
	mkdir -p dist
	"$CARGO" deb --no-build --no-strip "${variant[@]}" --output dist/
	sums
}

sums() {
	(
		cd dist
		shopt -s nullglob
		local files=(lvh-*.tar.gz lvh_*.deb)
		sha256sum "${files[@]}" >SHA256SUMS.partial
		mv SHA256SUMS.partial SHA256SUMS
	)
	echo "dist: dist/SHA256SUMS" >&2
}

check_tag() {
	local tag="$1" notes
	[ "$tag" = "v$VERSION" ] || { echo "dist: tag $tag is not v$VERSION, Cargo.toml's version" >&2 && exit 1; }
	# The section `## [X.Y.Z] - YYYY-MM-DD` up to the next `## ` or link list.
	notes="$(awk -v h="## [$VERSION] - " '
		index($0, h) == 1 { if ($0 !~ /- [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$/) exit 3; on = 1; next }
		on && (/^## / || /^\[/) { exit }
		on { print }' CHANGELOG.md)" ||
		{ echo "dist: CHANGELOG.md's ## [$VERSION] has no date (YYYY-MM-DD)" >&2 && exit 1; }
	[ -n "$notes" ] || { echo "dist: CHANGELOG.md has no ## [$VERSION] - YYYY-MM-DD section" >&2 && exit 1; }
	printf '%s\n' "$notes"
}

case "${1:-}" in
dist | deb | sums) "$1" ;;
check-tag) check_tag "${2:?usage: $0 check-tag vX.Y.Z}" ;;
*) echo "usage: $0 dist|deb|sums|check-tag vX.Y.Z" >&2 && exit 2 ;;
esac
