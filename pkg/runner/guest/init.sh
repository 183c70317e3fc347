# shellcheck shell=sh
# lvh's shell init: runs as PID 1 from lvh's read-only control share, after
# lib.sh. Each function is one step of the plan (pkg/runner/guest/steps.rs),
# which the host appends as calls; the static init (guest_init.c) runs the
# same plan. See docs/guest-protocol.md.

# env NAME=VALUE...
lvh_env() {
	# shellcheck disable=SC2163 # each argument is NAME=VALUE
	export "$@"
}

# cpus: every offline CPU comes online, in the background: under TCG a CPU's
# bring-up is a quarter of a second of guest time, which this overlaps with
# the rest of the setup.
lvh_cpus() {
	[ -d /sys/devices/system/cpu ] || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
	for lvh_c in /sys/devices/system/cpu/cpu[0-9]*; do
		[ -w "$lvh_c/online" ] && {
			read -r lvh_o <"$lvh_c/online"
			[ "$lvh_o" = 0 ] && echo 1 >"$lvh_c/online"
		}
	done 2>/dev/null &
	lvh_cpus=$!
}

# mounts FSTAB: /dev, then every pseudo file system with one mount call
# (util-linux reads the fstab, /proc first; failures such as a kernel
# without bpffs are skipped); lvh_need then makes sure of those that matter,
# for mounts without -T such as busybox's.
lvh_mounts() {
	[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev || lvh_fail "cannot mount /dev (devtmpfs)"
	mount -a -T "$1" 2>/dev/null
}

# need TYPE DIR OPTIONS MESSAGE: a mount the setup cannot do without.
lvh_need() {
	case $1 in
	proc) [ -d "$2/self" ] && return ;;
	sysfs) [ -d "$2/class" ] && return ;;
	*) { : >"$2/.lvh"; } 2>/dev/null && return ;;
	esac
	mount -t "$1" -o "$3" "$1" "$2" || lvh_fail "$4"
}

# hostname FALLBACK: the image's, not the address the kernel's ip= autoconfig
# names the host after.
lvh_hostname() {
	lvh_host=
	[ -r /etc/hostname ] && read -r lvh_host </etc/hostname
	case $lvh_host in '' | '#'*) lvh_host=$1 ;; esac
	{ echo "$lvh_host" >/proc/sys/kernel/hostname; } 2>/dev/null || hostname "$lvh_host" 2>/dev/null
}

# ports OUT ERR CTL: the virtio-serial ports by name; the control port on
# fd 9, then "started".
lvh_ports() {
	lvh_out='' lvh_err='' lvh_ctl='' lvh_try=0
	while :; do
		for d in /sys/class/virtio-ports/*; do
			[ -r "$d/name" ] || continue
			read -r n <"$d/name" || continue
			if [ "$n" = "$1" ]; then
				lvh_out=/dev/${d##*/}
			elif [ "$n" = "$2" ]; then
				lvh_err=/dev/${d##*/}
			elif [ "$n" = "$3" ]; then
				lvh_ctl=/dev/${d##*/}
			fi
		done
		[ -n "$lvh_out" ] && [ -n "$lvh_err" ] && [ -n "$lvh_ctl" ] && break
		lvh_try=$((lvh_try + 1))
		[ $lvh_try -gt 1000 ] && lvh_fail "virtio-serial ports not found (the kernel needs CONFIG_VIRTIO_CONSOLE)"
		sleep 0.01
	done
	exec 9<>"$lvh_ctl"
	echo started >&9
}

# net DEV ADDR MASK GW: what the kernel's ip= sets, when the kernel could
# not (no CONFIG_IP_PNP) and the image has `ip`.
lvh_net() {
	if [ ! -e /proc/net/pnp ] && [ -e "/sys/class/net/$1" ] && command -v ip >/dev/null 2>&1; then
		case $3 in
		255.255.255.0) lvh_p=24 ;;
		255.255.0.0) lvh_p=16 ;;
		255.0.0.0) lvh_p=8 ;;
		*) lvh_p=32 ;;
		esac
		printf 'link set lo up\nlink set %s up\naddr add %s/%s dev %s\nroute add default via %s\n' \
			"$1" "$2" "$lvh_p" "$1" "$4" | ip -batch - >/dev/null 2>&1
	fi
}

# mount TYPE SOURCE DIR OPTIONS MKDIR MESSAGE
lvh_mount() {
	[ "$5" = 1 ] && { [ -d "$3" ] || mkdir -p "$3"; }
	mount -t "$1" ${4:+-o "$4"} "$2" "$3" || lvh_fail "$6"
}

# ssh_keys KEYS: root's ~/.ssh on a tmpfs with the image's files and KEYS
# added (the image is never written).
lvh_ssh_keys() {
	[ -d /root/.ssh ] || mkdir -p /root/.ssh
	mkdir -p /run/lvh.ssh && cp -a /root/.ssh/. /run/lvh.ssh/ 2>/dev/null
	mount -t tmpfs -o mode=0700 tmpfs /root/.ssh || lvh_fail "cannot mount a tmpfs on /root/.ssh for --ssh-key"
	cp -a /run/lvh.ssh/. /root/.ssh/ 2>/dev/null
	rm -rf /run/lvh.ssh
	chmod 700 /root/.ssh
	printf '%s' "$1" >>/root/.ssh/authorized_keys
	chmod 600 /root/.ssh/authorized_keys
}

# cd DIR REQUIRED MESSAGE: a required directory that is missing fails the
# run; otherwise the command runs in / instead.
lvh_cd() {
	if [ "$2" = 1 ]; then
		cd "$1" || lvh_fail "$3"
	else
		cd "$1" 2>/dev/null || cd /
	fi
}

# waitcpus MESSAGE: lvh_cpus is done and no CPU stayed offline.
lvh_waitcpus() {
	wait "$lvh_cpus"
	lvh_o=
	read -r lvh_o </sys/devices/system/cpu/offline
	[ -z "$lvh_o" ] || lvh_fail "CPUs $lvh_o $1"
}

# shell TTY TERM ROWS COLS PERSIST LOGLEVEL: a login shell on the console
# tty as the session's controlling terminal, a reader of "winsz ROWS COLS"
# lines from the host, "shell" on the control port when it starts and "exit
# STATUS 0 0 - -" when it ends. A LOGLEVEL becomes the console's log level
# as the shell starts (kernel messages below it stay in dmesg).
lvh_shell() {
	export TERM="$2"
	lvh_tty=/dev/$1
	# The console stays open from here on, so input sent as soon as the host
	# hears "shell" is queued by the tty rather than dropped.
	exec 8<>"$lvh_tty" || lvh_fail "cannot open $lvh_tty"
	[ -n "$3" ] && stty rows "$3" cols "$4" <"$lvh_tty" 2>/dev/null
	command -v setsid >/dev/null 2>&1 || lvh_fail "the image has no setsid (util-linux): the shell needs it for its terminal"
	(while read -r lvh_k lvh_r lvh_c; do [ "$lvh_k" = winsz ] && stty rows "$lvh_r" cols "$lvh_c" <"$lvh_tty" 2>/dev/null; done) <&9 8>&- &
	lvh_rd=$!
	lvh_sh=/bin/sh
	[ -x /bin/bash ] && lvh_sh=/bin/bash
	[ -n "$6" ] && { echo "$6" >/proc/sys/kernel/printk; } 2>/dev/null
	echo shell >&9
	setsid -w -c "$lvh_sh" -l <>"$lvh_tty" >&0 2>&0 8>&- 9>&-
	lvh_status=$?
	kill "$lvh_rd" 2>/dev/null
	[ "$5" = 1 ] && sync
	echo "exit $lvh_status 0 0 - -" >&9
}

# serve SCRIPT: after the setup command of --save-state, wait for "save"
# (anything else ends init), then continue as the serve script, kept in
# /dev (a RAM file system, saved with the VM's memory): the control share
# must be unmounted, and this script is read from it.
lvh_serve() {
	read -r lvh_op <&9
	[ "$lvh_op" = save ] || exit 0
	printf '%s' "$1" >/dev/.lvh-serve
	exec /bin/sh /dev/.lvh-serve "$lvh_out" "$lvh_err"
}
