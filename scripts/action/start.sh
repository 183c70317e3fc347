#!/usr/bin/env bash
# Step 4 of the action: resizes the image to additional-disk-size, boots it
# daemonized with ssh forwarded from ssh-port (ssh mode), and returns once root
# can log in. The size is passed to `qemu-img resize` as it is, as
# little-vm-helper does: `10G` sets the size, `+10G` grows by 10G. `lvh run
# --wait-ssh` waits for sshd's banner (up to ssh-connect-wait-retries x
# ssh-connect-wait-timeout seconds, little-vm-helper's budget) and stops the VM
# if the guest dies first; a short login loop follows, for an sshd that answers
# before it accepts keys. On failure the console log is printed. In command mode
# (command-mode=true) there is nothing to start.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

lvh="$(lvh_bin)"
image="$(image_file)"

if [ -n "${INPUT_ADDITIONAL_DISK_SIZE:-}" ]; then
	log "qemu-img resize $image ${INPUT_ADDITIONAL_DISK_SIZE}"
	qemu-img resize -q "$image" "${INPUT_ADDITIONAL_DISK_SIZE}" ||
		die "input additional-disk-size '${INPUT_ADDITIONAL_DISK_SIZE}': qemu-img resize failed (10G sets the size, +10G grows it)"
fi
if is_true "${INPUT_COMMAND_MODE:-false}"; then
	log "command mode: the VM boots in the run step"
	exit 0
fi

retries="${INPUT_SSH_CONNECT_WAIT_RETRIES:-300}"
pause="${INPUT_SSH_CONNECT_WAIT_TIMEOUT:-1}"
[[ "$retries" =~ ^[0-9]+$ ]] || die "input ssh-connect-wait-retries: '$retries' is not a number"
[[ "$pause" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "input ssh-connect-wait-timeout: '$pause' is not a number"
wait_secs="$(awk -v r="$retries" -v p="$pause" 'BEGIN { s = r * p; if (s < 1) s = 1; print s }')"

vm_argv
$SUDO rm -f "$CONSOLE_LOG"
touch "$CONSOLE_LOG"
rc=0
"$lvh" run "${VM[@]}" --daemonize -p "${INPUT_SSH_PORT:-2222}:22" \
	--serial-port "${INPUT_SERIAL_PORT:-0}" --wait-ssh --ssh-timeout "$wait_secs" || rc=$?
if [ "$rc" -ne 0 ]; then
	show_console
	die "the VM did not start (lvh run exited with $rc)"
fi

ssh_argv
n=0
until "${SSH[@]}" -o BatchMode=yes -o ConnectTimeout=30 true </dev/null; do
	n=$((n + 1))
	if [ "$n" -ge 10 ]; then
		show_console
		die "sshd answers on port ${INPUT_SSH_PORT:-2222} but root cannot log in"
	fi
	sleep "$pause"
done

if [ -n "${INPUT_ADDITIONAL_DISK_SIZE:-}" ]; then
	# lvh's and little-vm-helper's images are ext4 on the whole disk: grow it online.
	# shellcheck disable=SC2016 # expanded by the guest's shell
	"${SSH[@]}" 'dev=$(findmnt -no SOURCE /) && resize2fs "$dev"' </dev/null ||
		log "warning: could not grow the root filesystem to the new disk size"
fi
log "VM is up: ssh -p ${INPUT_SSH_PORT:-2222} root@localhost"
