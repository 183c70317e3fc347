# shellcheck shell=sh
# lvh's --kmemleak wrapper: runs the command ("$@"), then has kmemleak scan
# for leaks. The kernel boots with kmemleak.verbose=1, so every new leak a
# scan finds is printed on the console ("kmemleak: unreferenced object ...",
# with its backtrace), where lvh's splat gate sees it, and with
# init_on_alloc=1, so no stale pointer in reused memory hides a leak.
# kmemleak reports only objects older than 5 seconds, so the scan waits that
# long after the command; it scans twice, as the kernel's documentation
# advises (an object can look unreferenced to one scan). Exits with the
# command's status, or 125 when kmemleak cannot scan. See
# docs/guest-protocol.md.

lvh_k=/sys/kernel/debug/kmemleak
[ -e "$lvh_k" ] || mount -t debugfs -o nosuid,nodev,noexec debugfs /sys/kernel/debug 2>/dev/null
if [ ! -w "$lvh_k" ]; then
	echo "lvh: --kmemleak: $lvh_k is missing: the kernel has no kmemleak (CONFIG_DEBUG_KMEMLEAK) or no debugfs" >&2
	exit 125
fi
"$@"
lvh_s=$?
sleep 6
for _ in 1 2; do
	if ! { echo scan >"$lvh_k"; } 2>/dev/null; then
		echo "lvh: --kmemleak: kmemleak could not scan (it is off: booted with kmemleak=off, or it disabled itself; see the console)" >&2
		exit 125
	fi
done
exit "$lvh_s"
