# shellcheck shell=bash
# Helpers sourced by the GitHub action's steps (scripts/action/*.sh). The action
# (action.yaml) passes its inputs as INPUT_* environment variables and the setup
# step's outputs as LVH_* ones; every step reads them here, so a test can run the
# steps with plain environment variables.

# The console log of the daemonized VM: little-vm-helper's path, so later
# workflow steps that `cat /tmp/console.log` keep working.
CONSOLE_LOG="${LVH_CONSOLE_LOG:-/tmp/console.log}"

# sudo when not root (GitHub runners), as little-vm-helper's steps use it.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export SUDO

log() { echo "lvh-action: $*" >&2; }
die() {
	echo "::error::lvh-action: $*" >&2
	exit 1
}
# GitHub annotations: shown on the run's summary page, and plain lines in a log.
warn() { echo "::warning::lvh-action: $*" >&2; }
notice() { echo "::notice::lvh-action: $*" >&2; }

# A GitHub boolean input: 'true' or 'false' (as little-vm-helper compares them).
is_true() { [ "${1:-}" = "true" ]; }

# The guest architecture: the `arch` input, else the runner's.
guest_arch() {
	local a="${INPUT_ARCH:-}"
	if [ -z "$a" ]; then
		case "$(uname -m)" in
		aarch64 | arm64) a=arm64 ;;
		*) a=amd64 ;;
		esac
	fi
	case "$a" in
	amd64 | x86_64) echo amd64 ;;
	arm64 | aarch64) echo arm64 ;;
	*) die "input arch: unsupported value '$a' (expected amd64 or arm64)" ;;
	esac
}

# ---------------------------------------------------------------------------
# Folders and names (little-vm-helper's, arm64-era layout)

# A folder the runner's user can write: with sudo only where it needs root (the
# default images-folder-parent is empty, so the folders are under /images).
make_dir() {
	mkdir -p "$1" 2>/dev/null && [ -w "$1" ] && return
	$SUDO mkdir -p "$1"
	$SUDO chmod 777 "$1"
}

# `<images-folder-parent>/images/<arch>`: `lvh images pull --dir` of it writes
# the images into its `images/` folder.
arch_dir() { echo "${INPUT_IMAGES_FOLDER_PARENT:-}/images/$(guest_arch)"; }
images_dir() { echo "$(arch_dir)/images"; }
# `<images-folder-parent>/kernels/<arch>`: `kernel-version` kernels go to `<tag>/` in it.
kernels_dir() { echo "${INPUT_IMAGES_FOLDER_PARENT:-}/kernels/$(guest_arch)"; }

# The folder actions/cache saves and restores for the image: the pulled image's
# `.zst` under its own name, so a cache hit knows the name as a pull does.
image_cache_dir() {
	local v="${INPUT_IMAGE}_${INPUT_IMAGE_VERSION}"
	echo "$(arch_dir)/cache/${v//[^A-Za-z0-9._-]/_}"
}

# `<image less -ci>_`: the start of the image file names of little-vm-helper-images'
# artifacts (`kind:6.6-20250105.013256` holds `kind_6.6.qcow2.zst`).
image_prefix() { echo "${INPUT_IMAGE//-ci/}_"; }

# little-vm-helper's own rule for the image file name: the version less a trailing
# `-<digits and dots>[-suffix...][@sha256:...]` (right for dated tags, wrong for
# `-main` ones: `5.10-main` stays `5.10-main` where the file is `kind_5.10`).
image_rule_name() {
	# shellcheck disable=SC2001 # the sed expression is little-vm-helper's rule
	echo "$(image_prefix)$(echo "${INPUT_IMAGE_VERSION}" | sed 's/^\(.*\)\-[0-9.]*\(\-[^-]*\)*\(@sha256:.*\)*$/\1/g')"
}

# Picks the image to boot among the files given (paths of images, not .zst): the
# one whose name starts with `<image less -ci>_`, else the only one; among several,
# the one little-vm-helper's rule names. Fails naming the inputs and the files.
pick_image() {
	local prefix rule f
	prefix="$(image_prefix)"
	rule="$(image_rule_name)"
	local matching=()
	for f in "$@"; do
		case "$(basename "$f")" in "$prefix"*) matching+=("$f") ;; esac
	done
	if [ "${#matching[@]}" -eq 1 ]; then
		echo "${matching[0]}"
		return
	fi
	if [ "${#matching[@]}" -eq 0 ] && [ "$#" -eq 1 ]; then
		echo "$1"
		return
	fi
	for f in "$@"; do
		case "$(basename "$f")" in "$rule".*)
			echo "$f"
			return
			;;
		esac
	done
	local names=()
	for f in "$@"; do names+=("$(basename "$f")"); done
	if [ "$#" -eq 0 ]; then
		die "input image '${INPUT_IMAGE}', image-version '${INPUT_IMAGE_VERSION}': the artifact holds no image"
	fi
	die "input image '${INPUT_IMAGE}', image-version '${INPUT_IMAGE_VERSION}': cannot tell which image to boot among ${names[*]} (none or several start with '$prefix', none is $rule.*)"
}

# The image to boot: the pull step's choice ($LVH_IMAGE_FILE), else the choice
# among the images already in the images folder (provision: 'false').
image_file() {
	if [ -n "${LVH_IMAGE_FILE:-}" ]; then
		echo "$LVH_IMAGE_FILE"
		return
	fi
	local files=() f
	for f in "$(images_dir)"/*; do
		case "$f" in *.zst | */\*) ;; *) if [ -f "$f" ]; then files+=("$f"); fi ;; esac
	done
	pick_image "${files[@]}"
}

# ---------------------------------------------------------------------------
# Which lvh to install

# A release version, with or without the `v`: 1.2.3, v1.2.3, v1.2.3-rc.1.
is_release() { [[ "${1:-}" =~ ^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]]; }
# little-vm-helper's lvh versions (v0.0.x, its Docker tags); lvh's start at 0.1.0.
is_little_vm_helper_version() { [[ "${1:-}" =~ ^v?0\.0\.[0-9]+ ]]; }
# A commit of this repository (what `cargo install --rev` takes).
is_commit() { [[ "${1:-}" =~ ^[0-9a-f]{7,40}$ ]]; }
v_tag() { echo "v${1#v}"; }

# The action's own checkout.
action_dir() { echo "${GITHUB_ACTION_PATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"; }

# `owner/name` of the action's repository: github.action_repository (handed to the
# steps in their env, where composite actions see it), else read from the
# action's path on the runner (`.../_actions/<owner>/<name>/<ref>`), else the
# workflow's own repository (`uses: ./`).
action_repository() {
	if [ -n "${LVH_ACTION_REPOSITORY:-}" ]; then
		echo "$LVH_ACTION_REPOSITORY"
		return
	fi
	local p="${GITHUB_ACTION_PATH:-}"
	if [[ "$p" =~ /_actions/([^/]+)/([^/]+)/[^/]+/?$ ]]; then
		echo "${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
		return
	fi
	echo "${GITHUB_REPOSITORY:-}"
}

# The ref the action is used at (`uses: owner/lvh@<ref>`).
action_ref() {
	if [ -n "${LVH_ACTION_REF:-}" ]; then
		echo "$LVH_ACTION_REF"
		return
	fi
	local p="${GITHUB_ACTION_PATH:-}"
	if [[ "$p" =~ /_actions/[^/]+/[^/]+/([^/]+)/?$ ]]; then echo "${BASH_REMATCH[1]}"; fi
}

# The release the action is pinned to: its ref when that is a release tag, else
# the version in its checkout's Cargo.toml (a commit pin, a branch, `uses: ./`).
default_release() {
	local ref v
	ref="$(action_ref)"
	if is_release "$ref" && ! is_little_vm_helper_version "$ref"; then
		v_tag "$ref"
		return
	fi
	v="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$(action_dir)/Cargo.toml" 2>/dev/null | head -1)"
	if is_release "$v"; then
		v_tag "$v"
		return
	fi
	die "cannot tell which lvh release this action is pinned to (ref '${ref}', no version in $(action_dir)/Cargo.toml): set lvh-version to a release (v1.2.3) or a commit"
}

# What to install for the lvh-version input, as `release <tag>` or `commit <sha>`.
# little-vm-helper's values (its Docker tags, e.g. v0.0.30) and anything that is
# not a release or a commit get a warning and the action's own release.
install_plan() {
	local v="${INPUT_LVH_VERSION:-}" def
	if is_commit "$v"; then
		echo "commit $v"
		return
	fi
	if is_release "$v" && ! is_little_vm_helper_version "$v"; then
		echo "release $(v_tag "$v")"
		return
	fi
	def="$(default_release)"
	if [ -n "$v" ]; then
		warn "lvh-version '$v' is not an lvh release or commit (little-vm-helper's lvh-version names its Docker image); installing $def, the release this action is pinned to"
	fi
	echo "release $def"
}

# The lvh on PATH, if it is this lvh (little-vm-helper's has no --wait-ssh).
lvh_on_path() {
	local p help
	p="$(command -v lvh 2>/dev/null)" || return 1
	# Not `| grep -q`: under pipefail, lvh's death by SIGPIPE would fail it.
	help="$("$p" run --help 2>/dev/null)" || return 1
	[[ "$help" == *--wait-ssh* ]] || return 1
	echo "$p"
}

# The lvh binary: $LVH_BIN, else the one on PATH (install.sh adds its folder to
# $GITHUB_PATH), else the one install.sh put under $LVH_ROOT.
lvh_bin() {
	if [ -n "${LVH_BIN:-}" ]; then
		[ -x "$LVH_BIN" ] || die "LVH_BIN=$LVH_BIN is not an executable"
		echo "$LVH_BIN"
	elif [ -n "${LVH_ROOT:-}" ] && [ -x "$LVH_ROOT/bin/lvh" ]; then
		echo "$LVH_ROOT/bin/lvh"
	else
		lvh_on_path || die "no lvh found: the install step puts it on PATH (or set LVH_BIN)"
	fi
}

# ---------------------------------------------------------------------------
# The VM

# The kernel to boot: a pulled `kernel-version`'s vmlinuz, else the `kernel-path`
# input (`kernel`, its older name, too), else none (the image's own). With both,
# kernel-version wins, as in little-vm-helper (whose `lvh run` gets both
# `--kernel` flags and keeps the last); the pull step says so.
kernel_file() {
	if [ -n "${INPUT_KERNEL_VERSION:-}" ]; then
		local d f
		d="$(kernels_dir)/${INPUT_KERNEL_VERSION}/boot"
		for f in "$d"/vmlinuz-* "$d"/vmlinuz "$d"/bzImage "$d"/Image*; do
			if [ -f "$f" ]; then
				echo "$f"
				return
			fi
		done
		die "input kernel-version '${INPUT_KERNEL_VERSION}': no vmlinuz in $d"
	fi
	echo "${INPUT_KERNEL_PATH:-${INPUT_KERNEL:-}}"
}

# Prints the VM's console log (in a folded group on GitHub).
show_console() {
	if [ ! -s "$CONSOLE_LOG" ]; then
		log "no console log at $CONSOLE_LOG"
		return
	fi
	echo "::group::VM console log ($CONSOLE_LOG)"
	cat "$CONSOLE_LOG"
	echo "::endgroup::"
}

# `cmd` as little-vm-helper runs it: its text went through an unquoted here-document
# on the host, so `$X`, `$(...)` and `\$` are expanded there (its documented
# "escape every $"). Same expansion here, so workflows keep their escaping.
expand_cmd() {
	local delim="LVH_ACTION_CMD_EOF_$$"
	eval "cat <<$delim
${INPUT_CMD:-}
$delim"
}

# ssh to the VM as little-vm-helper does (root, no host key check), plus
# `ssh-key` when given. Sets the SSH array.
ssh_argv() {
	SSH=(ssh -p "${INPUT_SSH_PORT:-2222}" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
	if [ -n "${INPUT_SSH_KEY:-}" ]; then SSH+=(-i "$INPUT_SSH_KEY" -o IdentitiesOnly=yes); fi
	SSH+=(root@127.0.0.1)
}

# The accelerator lvh will use for the VM in the VM array (`kvm` or `tcg`), from
# its own dry run; when that does not say, a guess from LVH_ACCEL, the arch and
# /dev/kvm.
vm_accel() {
	local a
	a="$("$(lvh_bin)" run --dry-run "${VM[@]}" 2>/dev/null | grep -o -- '-accel [a-z]*' | head -1)"
	case "$a" in
	"-accel kvm") echo kvm ;;
	"-accel tcg") echo tcg ;;
	*)
		if [ "${LVH_ACCEL:-}" = tcg ] || [ ! -w /dev/kvm ] || [ "$(guest_arch)" != "$(INPUT_ARCH='' guest_arch)" ]; then
			echo tcg
		else
			echo kvm
		fi
		;;
	esac
}

# `--cpu-kind` from the cpu-kind input, as little-vm-helper passes it on; empty
# passes nothing. `host` needs KVM: under TCG lvh's own choice (max) is used, and
# a notice says so.
cpu_kind_argv() {
	local kind="${INPUT_CPU_KIND:-}"
	if [ -z "$kind" ]; then return; fi
	if [ "$kind" = host ] && [ "$(vm_accel)" = tcg ]; then
		notice "cpu-kind 'host' needs KVM; this VM runs with TCG, so it uses 'max'"
		return
	fi
	VM+=(--cpu-kind "$kind")
}

# The VM's flags shared by both modes, from the inputs, in the VM array: image,
# CPUs and memory (little-vm-helper's defaults: every CPU, 75% of the memory),
# host mount, extra port forwards (comma-separated), kernel, verbosity, CPU kind.
vm_argv() {
	local cpu="${INPUT_CPU:-}" mem="${INPUT_MEM:-}" image
	if [ -z "$cpu" ]; then cpu="$(nproc)"; fi
	if [ -z "$mem" ]; then mem="$(free -m | awk '/^Mem:/{print int($2 * 0.75)}')M"; fi
	image="$(image_file)"
	VM=(--image "$image" --cpu "$cpu" --mem "$mem")
	VM+=(--qemu-arch "$(guest_arch)" --console-log-file "$CONSOLE_LOG")
	if [ -n "${INPUT_HOST_MOUNT:-}" ]; then VM+=("--host-mount=${INPUT_HOST_MOUNT}"); fi
	local fwd fwds
	IFS=',' read -r -a fwds <<<"${INPUT_PORT_FORWARD:-}"
	for fwd in "${fwds[@]}"; do
		fwd="${fwd// /}"
		if [ -n "$fwd" ]; then VM+=(-p "$fwd"); fi
	done
	local k
	k="$(kernel_file)"
	if [ -n "$k" ]; then VM+=(--kernel "$k"); fi
	if is_true "${INPUT_VERBOSE:-false}"; then VM+=(--verbose); fi
	cpu_kind_argv
}
