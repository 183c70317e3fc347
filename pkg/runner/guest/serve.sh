# shellcheck shell=sh
# lvh's serve script: PID 1 of a VM saved by --save-state, after lib.sh.
# Started by the init's lvh_serve with the stdout and stderr port devices as
# arguments; fd 9 (the control port) is inherited open, as a virtio port
# opens only once. See docs/guest-protocol.md.
#
# QEMU refuses to save a VM while a 9p share is mounted: detach /host and
# the control share (under /run's tmpfs, which is moved aside and back so the
# setup's files in /run survive), say "saving" and wait. A restored VM
# continues here: it reads "run LEN" and LEN bytes of shell text from the
# host and runs them as the init runs a command.
# shellcheck disable=SC2034 # lib.sh's lvh_run and lvh_fail use them
lvh_out=$1 lvh_err=$2 lvh_ctl=9
if grep -q ' /host 9p ' /proc/mounts; then
	if ! { cd / && umount -n /host; }; then
		lvh_fail "cannot unmount /host before saving (is a process still using it?)"
	fi
fi
if ! { mkdir -p /dev/.lvh-run && mount -n --move /run /dev/.lvh-run &&
	umount -n /run && mount -n --move /dev/.lvh-run /run; }; then
	lvh_fail "cannot detach the lvh control share before saving"
fi
rmdir /dev/.lvh-run 2>/dev/null
grep -q ' 9p ' /proc/mounts && lvh_fail "a 9p share is still mounted: QEMU cannot save the VM"
rm -f /run/lvh.o /run/lvh.e /run/lvh.on /run/lvh.en
lvh_pumps
sync
cd /
echo saving >&9
# Saved here. A restored VM continues: wait for "run LEN" and LEN bytes.
lvh_op=
while [ "$lvh_op" != run ]; do
	read -r lvh_op lvh_len <&9 || sleep 0.05
done
case $lvh_len in '' | *[!0-9]*) lvh_fail "bad command length from the host: $lvh_len" ;; esac
# LEN bytes of text that ends with a newline: whole lines, read by the
# shell itself (a restored VM's every program start is slow under TCG: no dd
# here, and lvh_run evaluates the text without a new sh). LC_ALL=C: lengths
# in bytes, whatever the environment says.
lvh_read_text() {
	# shellcheck disable=SC3043 # dash, bash and busybox sh all have it
	local LC_ALL=C
	lvh_eval=
	while [ "${#lvh_eval}" -lt "$1" ] && IFS= read -r lvh_l <&9; do
		lvh_eval="$lvh_eval$lvh_l
"
	done
}
lvh_read_text "$lvh_len"
echo started >&9
lvh_run 0
lvh_done
