# shellcheck shell=bash
# Helpers sourced by the GitHub action's steps (scripts/action/*.sh). The action
# (action.yaml) passes its inputs as INPUT_* environment variables; every step
# reads them here, so a test can run the steps with plain environment variables.

# The console log of the daemonized VM: little-vm-helper's path, so later
# workflow steps that `cat /tmp/console.log` keep working.
CONSOLE_LOG="${LVH_CONSOLE_LOG:-/tmp/console.log}"

# sudo when not root (GitHub runners), as little-vm-helper's steps use it.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export SUDO

log() { echo "lvh-action: $*" >&2; }
die() {
	echo "lvh-action: error: $*" >&2
	exit 1
}

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

# little-vm-helper's image file name: `kind-ci` + `5.10-main` -> `kind_5.10`
# (image less `-ci`, version up to its first `-`).
image_name() {
	local image="${INPUT_IMAGE//-ci/}"
	echo "${image}_${INPUT_IMAGE_VERSION%%-*}"
}

# Where images go: `<images-folder-parent>/images` (`/images` when the parent
# is empty, as in little-vm-helper).
images_dir() { echo "${INPUT_IMAGES_FOLDER_PARENT:-}/images"; }

# Where `kernel-version` kernels go: `<images-folder-parent>/kernels/<tag>`.
kernels_dir() { echo "${INPUT_IMAGES_FOLDER_PARENT:-}/kernels"; }

# The lvh binary: $LVH_BIN (a test, or a binary of your own), else the one
# install.sh put under $LVH_ROOT.
lvh_bin() {
	if [ -n "${LVH_BIN:-}" ]; then
		echo "$LVH_BIN"
	elif [ -n "${LVH_ROOT:-}" ]; then
		echo "$LVH_ROOT/bin/lvh"
	else
		command -v lvh || die "no lvh: set LVH_BIN or LVH_ROOT"
	fi
}

# The kernel to boot: the `kernel-path` input (`kernel`, little-vm-helper's older
# name, too), else the vmlinuz of a pulled `kernel-version`, else none.
kernel_file() {
	local k="${INPUT_KERNEL_PATH:-${INPUT_KERNEL:-}}"
	if [ -n "$k" ]; then
		echo "$k"
		return
	fi
	if [ -n "${INPUT_KERNEL_VERSION:-}" ]; then
		local d f
		d="$(kernels_dir)/${INPUT_KERNEL_VERSION}/boot"
		for f in "$d"/vmlinuz-* "$d"/vmlinuz "$d"/bzImage "$d"/Image*; do
			if [ -f "$f" ]; then
				echo "$f"
				return
			fi
		done
		die "kernel-version ${INPUT_KERNEL_VERSION}: no vmlinuz in $d"
	fi
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

# The VM's flags shared by both modes, from the inputs, in the VM array: CPUs and
# memory (little-vm-helper's defaults: every CPU, 75% of the memory), CPU kind,
# host mount, extra port forwards (comma-separated), kernel, verbosity.
vm_argv() {
	local cpu="${INPUT_CPU:-}" mem="${INPUT_MEM:-}"
	if [ -z "$cpu" ]; then cpu="$(nproc)"; fi
	if [ -z "$mem" ]; then mem="$(free -m | awk '/^Mem:/{print int($2 * 0.75)}')M"; fi
	VM=(--image "$(images_dir)/$(image_name).qcow2" --cpu "$cpu" --mem "$mem")
	VM+=(--qemu-arch "$(guest_arch)" --console-log-file "$CONSOLE_LOG")
	# `host` is lvh's own choice with KVM; without KVM it would abort QEMU, where
	# lvh picks `max`. Any other kind is passed on.
	local kind="${INPUT_CPU_KIND:-host}"
	if [ -n "$kind" ] && [ "$kind" != host ]; then VM+=(--cpu-kind "$kind"); fi
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
}
