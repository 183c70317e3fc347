# shellcheck shell=sh disable=SC2154
# lvh's guest init, the functions every init script shares (the shell init
# and the serve script of a saved VM). See docs/guest-protocol.md.
#
# The control port is fd 9 once open (lvh_ctl is set then); lvh_out and
# lvh_err name the stdout and stderr port devices (set by lvh_ports, or the
# serve script's arguments).

# A setup failure: a "lvh-guest: error: " line on the console and "error
# MESSAGE" on the control port (once open), then init ends.
lvh_fail() {
	echo "lvh-guest: error: $*" >/dev/console
	[ -n "${lvh_ctl:-}" ] && echo "error $*" >&9
	exit 1
}

# The kernel's taint flags in $t, or "-". A sysctl file answers only a read
# at offset 0 and dash's `read` takes one byte at a time, so `read` sees only
# the first digit, exact when it is 0 (saving a fork and exec of `cat`).
lvh_taint() {
	{
		t=
		read -r t </proc/sys/kernel/tainted
		[ "$t" = 0 ] || t=$(cat /proc/sys/kernel/tainted)
		case $t in '' | *[!0-9]*) t=- ;; esac
	} 2>/dev/null
}

# pumps: the fifos the command writes to and the counting dd's that read
# them, for the next lvh_run (a save starts them before the VM is saved, so a
# restored VM starts no dd).
lvh_pumps() {
	mkfifo /run/lvh.o /run/lvh.e || lvh_fail "cannot create fifos in /run"
	dd if=/run/lvh.o of="$lvh_out" bs=65536 2>/run/lvh.on &
	dd if=/run/lvh.e of="$lvh_err" bs=65536 2>/run/lvh.en &
	lvh_pumped=1
}

# run PERSIST [ARGV...]: the command, its stdout and stderr each through a
# counting dd into its port; then "exit STATUS OUTBYTES ERRBYTES TAINT_BEFORE
# TAINT_AFTER" on the control port. The counts let the host wait until every
# byte has arrived before it stops the VM.
lvh_run() {
	lvh_persist=$1
	shift
	[ -n "${lvh_pumped:-}" ] || lvh_pumps
	lvh_pumped=
	lvh_taint
	lvh_t0=$t
	# No ARGV: the shell text in $lvh_eval (a restored VM's command), run by
	# this shell, whose text ends by exec'ing the command (no new sh).
	(
		exec 9>&-
		[ $# = 0 ] && eval "$lvh_eval"
		exec "$@"
	) >/run/lvh.o 2>/run/lvh.e </dev/null
	lvh_status=$?
	wait
	[ "$lvh_persist" = 1 ] && sync
	lvh_on=
	while read -r w _; do lvh_on=$w; done </run/lvh.on
	lvh_en=
	while read -r w _; do lvh_en=$w; done </run/lvh.en
	case "$lvh_on:$lvh_en" in
	*[!0-9:]* | :* | *:) lvh_fail "could not count the command's output bytes (dd said: $lvh_on $lvh_en)" ;;
	esac
	lvh_taint
	lvh_t1=$t
	echo "exit $lvh_status $lvh_on $lvh_en $lvh_t0 $lvh_t1" >&9
}

# The end: wait for the host, which stops the VM.
lvh_done() {
	read -r _ <&9
	exit 0
}
