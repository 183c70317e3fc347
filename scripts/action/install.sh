#!/usr/bin/env bash
# Step 2 of the action: what the VM needs on the runner.
#  - with install-dependencies=true: QEMU for the guest's arch, qemu-img (resize)
#    and zstd (cached images), nothing else: `lvh run` and the pulls need no
#    libguestfs, libvirt or Docker;
#  - when /dev/kvm exists but is not usable: a udev rule that opens it to all,
#    so lvh runs without sudo and with KVM;
#  - lvh itself, as the setup step decided ($LVH_ACTION_INSTALL, $LVH_ACTION_VERSION), into
#    $LVH_ROOT/bin (restored by actions/cache when it holds it already):
#      release: the release's `lvh-<version>-<target>.tar.gz`, checked against the
#               release's SHA256SUMS, from $LVH_INSTALL_URL/<tag>/ (default: the
#               action's repository's GitHub releases), by scripts/install.sh;
#      commit:  `cargo install --locked --git <the action's repository> --rev`;
#      skip:    the lvh that is there already.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

install_packages() {
	local pkgs=(qemu-utils zstd openssh-client)
	case "$(guest_arch)" in
	amd64) pkgs+=(qemu-system-x86) ;;
	arm64) pkgs+=(qemu-system-arm qemu-efi-aarch64) ;;
	esac
	# As little-vm-helper's action: the runners' Azure apt mirror can be very slow.
	if [ -f /etc/apt/apt-mirrors.txt ]; then
		$SUDO sed -i '/azure.archive.ubuntu.com/d' /etc/apt/apt-mirrors.txt
	fi
	log "installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	local n=0
	until $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${pkgs[@]}"; do
		n=$((n + 1))
		[ "$n" -lt 5 ] || die "apt-get install ${pkgs[*]} failed 5 times"
		sleep 2
	done
}

open_kvm() {
	if [ ! -e /dev/kvm ] || [ -w /dev/kvm ]; then return; fi
	log "making /dev/kvm usable without root (udev rule)"
	echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' |
		$SUDO tee /etc/udev/rules.d/99-lvh-kvm.rules >/dev/null
	$SUDO udevadm control --reload-rules
	$SUDO udevadm trigger --name-match=kvm
	# udev applies the rule asynchronously; the boot step falls back to TCG if not.
	$SUDO udevadm settle || true
}

release_base() {
	if [ -n "${LVH_INSTALL_URL:-}" ]; then
		echo "${LVH_INSTALL_URL%/}"
		return
	fi
	local repo
	repo="$(action_repository)"
	[ -n "$repo" ] || die "cannot tell which repository this action comes from: set LVH_INSTALL_URL"
	echo "${GITHUB_SERVER_URL:-https://github.com}/$repo/releases/download"
}

# Installs release $1 into $LVH_ROOT/bin/lvh with lvh's own install script
# (the tarball for this runner, checked against the release's SHA256SUMS).
# Returns 2 when there is no such release, dies on anything else.
install_release() {
	local rc=0 base
	# Called as `install_release ... || rc=$?`, where `set -e` is off.
	base="$(release_base)" || exit 1
	# $LVH_ROOT/bin on PATH: the script's hint to add it is for people; the
	# action adds it to $GITHUB_PATH itself.
	PATH="$LVH_ROOT/bin:$PATH" LVH_VERSION="$1" LVH_INSTALL_URL="$base" \
		LVH_INSTALL_DIR="$LVH_ROOT/bin" sh "$here/../install.sh" || rc=$?
	case "$rc" in
	0) log "installed lvh $1 in $LVH_ROOT/bin" ;;
	2) return 2 ;;
	*) die "lvh $1 was not installed (see above)" ;;
	esac
}

install_commit() {
	command -v cargo >/dev/null || die "lvh-version '$1' is a commit: building it needs cargo (e.g. dtolnay/rust-toolchain before this action), or use a release"
	local repo
	repo="$(action_repository)"
	[ -n "$repo" ] || die "cannot tell which repository this action comes from, to build commit $1"
	local args=(install --locked --root "$LVH_ROOT" --git "${GITHUB_SERVER_URL:-https://github.com}/$repo" --rev "$1" lvh)
	log "cargo ${args[*]}"
	cargo "${args[@]}"
}

install_lvh() {
	local how="${LVH_ACTION_INSTALL:-skip}" v="${LVH_ACTION_VERSION:-}"
	if [ "$how" = skip ]; then
		log "using $(lvh_bin)"
		return
	fi
	[ -n "${LVH_ROOT:-}" ] || die "LVH_ROOT is not set (the setup step's lvh-root output)"
	if [ -x "$LVH_ROOT/bin/lvh" ]; then
		log "using cached $LVH_ROOT/bin/lvh ($v)"
	elif [ "$how" = commit ]; then
		install_commit "$v"
	else
		local rc=0
		install_release "$v" || rc=$?
		if [ "$rc" -eq 2 ]; then
			local def
			def="$(INPUT_LVH_VERSION='' install_plan | cut -d' ' -f2)"
			[ "$def" != "$v" ] || die "no lvh release $v at $(release_base)/$v (no SHA256SUMS)"
			warn "lvh-version '$v': no such lvh release at $(release_base)/$v; installing $def, the release this action is pinned to"
			rc=0
			install_release "$def" || rc=$?
			[ "$rc" -eq 0 ] || die "no lvh release $def at $(release_base)/$def (no SHA256SUMS)"
		fi
	fi
	if [ -n "${GITHUB_PATH:-}" ]; then echo "$LVH_ROOT/bin" >>"$GITHUB_PATH"; fi
}

if is_true "${INPUT_INSTALL_DEPENDENCIES:-false}"; then install_packages; fi
open_kvm
install_lvh
"$(lvh_bin)" version >&2
