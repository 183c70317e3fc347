#!/bin/sh
# Installs lvh from a release: the tarball for this machine (uname -m), checked
# against the release's SHA256SUMS before anything is installed.
#
#   curl -fsSL https://github.com/lvh-dev/lvh/releases/latest/download/install.sh | sh
#
# Environment (all optional):
#   LVH_VERSION      the release to install, as its tag (v0.1.0); default: the latest
#   LVH_INSTALL_URL  where releases are: <url>/<tag>/SHA256SUMS and the tarballs beside
#                    it, <url>/latest/ for the latest (a mirror, a local server, file://)
#   LVH_INSTALL_DIR  where lvh goes; default /usr/local/bin when writable (as root),
#                    else ~/.local/bin
#
# Exits 2 when the release does not exist (the server has no SHA256SUMS for it),
# 1 on any other failure; nothing is installed then. The GitHub action installs
# lvh through this script too.
set -eu

# The project's home; equal to Cargo.toml's `repository` (a test checks).
REPOSITORY="https://github.com/lvh-dev/lvh"

say() { printf 'lvh install: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# The release's Rust target for `uname -m`.
target_of() {
	case "$1" in
	x86_64 | amd64) echo x86_64-unknown-linux-gnu ;;
	aarch64 | arm64) echo aarch64-unknown-linux-gnu ;;
	*) return 1 ;;
	esac
}

# Where the release's files are.
release_url() {
	version="${LVH_VERSION:-latest}"
	if [ -n "${LVH_INSTALL_URL:-}" ]; then
		echo "${LVH_INSTALL_URL%/}/$version"
	elif [ "$version" = latest ]; then
		echo "$REPOSITORY/releases/latest/download"
	else
		echo "$REPOSITORY/releases/download/$version"
	fi
}

# Downloads url $1 to file $2: 0 when done, 2 when the server has no such
# file (HTTP 404), 1 on anything else.
download() { # url file
	if command -v curl >/dev/null 2>&1; then
		# Without -f: a 404 is told apart by its code. file:// has no code
		# (000); a missing file is curl's exit 37.
		code="$(curl -sSL --retry 3 --retry-delay 1 --connect-timeout 20 -o "$2" -w '%{http_code}' "$1")" ||
			{ [ $? -eq 37 ] && return 2; return 1; }
		case "$code" in
		2?? | 000) return 0 ;;
		404) return 2 ;;
		*)
			say "$1: HTTP $code"
			return 1
			;;
		esac
	elif command -v wget >/dev/null 2>&1; then
		# wget exits 8 when the server answers with an error.
		wget -q -O "$2" "$1" || { [ $? -eq 8 ] && return 2; return 1; }
	else
		die "neither curl nor wget is installed"
	fi
}

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | cut -d' ' -f1
	else
		die "neither sha256sum nor shasum is installed: cannot check the download"
	fi
}

# The tarball for `target` listed in SHA256SUMS, as "<sha256> <name>".
pick_asset() { # sums target
	awk -v t="-$2.tar.gz" '{ f = $2; sub(/^\*/, "", f) }
		f ~ /^lvh-/ && substr(f, length(f) - length(t) + 1) == t { print $1, f; exit }' "$1"
}

default_dir() {
	if [ "$(id -u)" = 0 ] || [ -w /usr/local/bin ]; then
		echo /usr/local/bin
	else
		echo "${HOME:?HOME is not set: set LVH_INSTALL_DIR}/.local/bin"
	fi
}

# What to install next for `lvh run` on this architecture, if it is missing.
next_steps() { # machine
	case "$1" in
	x86_64 | amd64) qemu=qemu-system-x86_64 deb=qemu-system-x86 rpm=qemu-system-x86 ;;
	*) qemu=qemu-system-aarch64 deb=qemu-system-arm rpm=qemu-system-aarch64 ;;
	esac
	if command -v "$qemu" >/dev/null 2>&1 && command -v qemu-img >/dev/null 2>&1; then
		return 0
	fi
	say "lvh run needs QEMU ($qemu and qemu-img), which is not installed:"
	if command -v apt-get >/dev/null 2>&1; then
		say "  sudo apt-get install $deb qemu-utils"
	elif command -v dnf >/dev/null 2>&1; then
		say "  sudo dnf install $rpm qemu-img"
	else
		say "  install QEMU ($qemu) and qemu-img with your package manager"
	fi
	say "building images needs mmdebstrap and libguestfs, building kernels make and gcc (see docs/install.md)"
}

main() {
	[ "$(uname -s)" = Linux ] || die "lvh runs on Linux only (this is $(uname -s))"
	machine="$(uname -m)"
	target="$(target_of "$machine")" || die "no lvh release for this machine ($machine): build it with cargo install lvh"
	url="$(release_url)"
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT INT TERM

	rc=0
	download "$url/SHA256SUMS" "$tmp/SHA256SUMS" || rc=$?
	if [ "$rc" -eq 2 ]; then
		say "error: no lvh release ${LVH_VERSION:-latest} at $url (it has no SHA256SUMS): nothing installed"
		exit 2
	fi
	[ "$rc" -eq 0 ] || die "cannot download $url/SHA256SUMS: nothing installed"
	line="$(pick_asset "$tmp/SHA256SUMS" "$target")"
	[ -n "$line" ] || die "$url/SHA256SUMS lists no lvh-<version>-$target.tar.gz"
	want="${line%% *}"
	asset="${line#* }"
	say "downloading $url/$asset"
	download "$url/$asset" "$tmp/$asset" || die "cannot download $url/$asset"
	got="$(sha256_of "$tmp/$asset")"
	[ "$got" = "$want" ] || die "$asset does not match SHA256SUMS (expected $want, got $got): nothing installed"

	mkdir "$tmp/x"
	tar -xzf "$tmp/$asset" -C "$tmp/x" || die "cannot unpack $asset: nothing installed"
	bin="$tmp/x/${asset%.tar.gz}/lvh"
	[ -f "$bin" ] || die "$asset holds no ${asset%.tar.gz}/lvh: nothing installed"
	version="$("$bin" version)" || die "the downloaded lvh does not run on this machine (glibc 2.31 or newer is needed): nothing installed"

	dir="${LVH_INSTALL_DIR:-$(default_dir)}"
	mkdir -p "$dir" || die "cannot create $dir (set LVH_INSTALL_DIR)"
	# Beside the destination, then renamed: never a half-written lvh on PATH.
	part="$dir/.lvh.install.$$"
	if ! { cp "$bin" "$part" && chmod 755 "$part" && mv -f "$part" "$dir/lvh"; }; then
		rm -f "$part"
		die "cannot write $dir/lvh (set LVH_INSTALL_DIR, or run as root)"
	fi
	say "installed lvh $version to $dir/lvh"
	case ":${PATH:-}:" in
	*":$dir:"*) ;;
	*) say "$dir is not on PATH: add it, e.g. export PATH=\"$dir:\$PATH\"" ;;
	esac
	next_steps "$machine"
}

main "$@"
