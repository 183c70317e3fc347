#!/usr/bin/env bash
# Step 2 of the action: what the VM needs on the runner.
#  - with install-dependencies=true: QEMU for the guest's arch, qemu-img (resize)
#    and zstd (cached images), nothing else: `lvh run` and the pulls need no
#    libguestfs, libvirt or Docker;
#  - when /dev/kvm exists but is not usable: a udev rule that opens it to all,
#    so lvh runs without sudo and with KVM;
#  - lvh itself, unless $LVH_BIN names one or the cached build is there:
#    `cargo install --locked` of this repository at lvh-version (a tag, or a
#    commit when it is hex), or of the action's own checkout when it is empty.
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

install_lvh() {
	if [ -n "${LVH_BIN:-}" ]; then
		[ -x "$LVH_BIN" ] || die "LVH_BIN=$LVH_BIN is not an executable"
		log "using $LVH_BIN"
		return
	fi
	[ -n "${LVH_ROOT:-}" ] || die "LVH_ROOT is not set (the setup step's lvh-root output)"
	if [ -x "$LVH_ROOT/bin/lvh" ]; then
		log "using cached $LVH_ROOT/bin/lvh"
	else
		command -v cargo >/dev/null || die "cargo is needed to install lvh (e.g. dtolnay/rust-toolchain before this action)"
		local args=(install --locked --root "$LVH_ROOT")
		local v="${INPUT_LVH_VERSION:-}"
		if [ -z "$v" ]; then
			args+=(--path "${GITHUB_ACTION_PATH:-$here/../..}")
		else
			local repo="${LVH_REPO_URL:-${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_ACTION_REPOSITORY:-}}"
			args+=(--git "$repo")
			if [[ "$v" =~ ^[0-9a-f]{7,40}$ ]]; then args+=(--rev "$v"); else args+=(--tag "$v"); fi
			args+=(lvh)
		fi
		log "cargo ${args[*]}"
		cargo "${args[@]}"
	fi
	if [ -n "${GITHUB_PATH:-}" ]; then echo "$LVH_ROOT/bin" >>"$GITHUB_PATH"; fi
}

if is_true "${INPUT_INSTALL_DEPENDENCIES:-false}"; then install_packages; fi
open_kvm
install_lvh
"$(lvh_bin)" version >&2
