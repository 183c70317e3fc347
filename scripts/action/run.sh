#!/usr/bin/env bash
# Step 5 of the action: runs `cmd` in the VM and fails with the console log
# shown when it fails.
#  - ssh mode (default): as little-vm-helper, the text is fed to root's shell over
#    ssh after `set -eu`, with `$` expanded on the host first (see expand_cmd);
#  - command mode (command-mode=true): one `lvh run --kernel K --image I -- ...`,
#    no ssh or systemd needed; its splat gate (splat, splat-allow), result file
#    (result-json) and timeout apply, and its exit code is the step's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

# Host-side expansion as in an unquoted here-document, where an unset variable is
# empty (the step shell has no `set -u`).
expanded="$(
	set +u
	expand_cmd
)"
script="set -eu

$expanded"

rc=0
if is_true "${INPUT_COMMAND_MODE:-false}"; then
	[ -n "$(kernel_file)" ] || die "command mode needs kernel-path or kernel-version"
	vm_argv
	extra=()
	if [ -n "${INPUT_SPLAT:-}" ]; then extra+=(--splat "$INPUT_SPLAT"); fi
	if [ -n "${INPUT_SPLAT_ALLOW:-}" ]; then extra+=(--splat-allow "$INPUT_SPLAT_ALLOW"); fi
	if [ -n "${INPUT_RESULT_JSON:-}" ]; then extra+=(--result-json "$INPUT_RESULT_JSON"); fi
	if [ -n "${INPUT_TIMEOUT:-}" ]; then extra+=(--timeout "$INPUT_TIMEOUT"); fi
	# bash when the image has it (root's shell over ssh), else sh.
	# shellcheck disable=SC2016 # $0 is expanded by the guest's shell
	boot='if [ -x /bin/bash ]; then exec /bin/bash -c "$0"; fi; exec /bin/sh -c "$0"'
	"$(lvh_bin)" run "${VM[@]}" "${extra[@]}" -- /bin/sh -c "$boot" "$script" || rc=$?
else
	ssh_argv
	"${SSH[@]}" <<<"$script" || rc=$?
fi
if [ "$rc" -ne 0 ]; then
	show_console
	log "cmd failed with exit code $rc"
fi
exit "$rc"
