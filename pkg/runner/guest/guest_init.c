/*
 * lvh-init: lvh's guest init for command mode, a static program that the
 * kernel runs from lvh's initramfs (rdinit=/lvh-init) instead of /bin/sh.
 *
 * It runs the same plan as the shell init (init.sh), without starting a
 * shell, `mount`, `mkfifo` or `dd` from the image: under TCG every cold
 * program start costs tens of milliseconds of guest time. The plan comes
 * from /lvh-plan, written by the host (pkg/runner/guest/steps.rs and
 * initramfs.rs), as records run in order. A record is its name, its field
 * count in decimal and its fields, each NUL-terminated:
 *
 *   env NAME=VALUE...
 *   cpus                          start bringing offline CPUs online
 *   root DEV FSTYPES FLAGS DATA   mount the root device, switch to it
 *   mount TYPE SRC DIR FLAGS DATA MKDIR NEED MSG
 *   hostname FALLBACK             from /etc/hostname
 *   ports OUT ERR CTL             find the virtio-serial ports, send "started"
 *   net DEV ADDR MASK GW          static IPv4 unless the kernel configured it
 *   cd DIR NEED MSG
 *   prefetch PROGRAM              read the command's program and libraries
 *   waitcpus MSG                  wait for `cpus`, fail if a CPU stayed offline
 *   run PERSIST ARGV...           run the command, report its exit
 *   serve                         after the run: wait for "save", detach the
 *                                 9p shares, say "saving"; once restored, read
 *                                 "run LEN" and LEN bytes of records (the same
 *                                 format) and run them
 *
 * The protocol on the ports is the shell init's (docs/guest-protocol.md):
 * "started", then "exit STATUS OUTBYTES ERRBYTES TAINT_BEFORE TAINT_AFTER"
 * on the control port; a setup failure is a "lvh-guest: error: " line on the
 * console and "error MSG" on the control port.
 *
 * Built with -DLVH_INIT_PLAN_DUMP it is a host tool instead: it reads the
 * plan file named by its argument with the same parser and prints each
 * record (name and fields, tab-separated, with \t, \n and \\ escaped) rather
 * than running it; lvh's unit tests feed it the plans the host writes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PLAN "/lvh-plan"
#define NEWROOT "/newroot"
#define ERROR_PREFIX "lvh-guest: error: "
#define MAX_FIELDS 4096

static int ctl = -1, out_port = -1, err_port = -1;
static pid_t onliner = -1, prefetcher = -1;
static int ran; /* a run record ran */

/* LVH_INIT_TRACE=1 on the kernel command line (it reaches init's environment):
 * each step's start in guest uptime, sent as "trace" lines on the control
 * port before the exit, which lvh logs at debug level. */
static char trace_buf[8192];
static size_t trace_len;

static void trace(const char *what)
{
	struct timespec t;
	if (!getenv("LVH_INIT_TRACE") || trace_len >= sizeof trace_buf - 100)
		return;
	clock_gettime(CLOCK_BOOTTIME, &t);
	trace_len += (size_t)snprintf(trace_buf + trace_len, sizeof trace_buf - trace_len,
				      "trace %ld.%06ld %s\n", (long)t.tv_sec, t.tv_nsec / 1000, what);
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reports a setup failure on the console (and the control port once open), then ends init. */
static void fail(const char *fmt, ...)
{
	char msg[1024], line[1100];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	int n = snprintf(line, sizeof line, ERROR_PREFIX "%s\n", msg);
#ifdef LVH_INIT_PLAN_DUMP
	write_all(2, line, (size_t)n);
	exit(1);
#endif
	int con = open("/dev/console", O_WRONLY | O_NOCTTY);
	write_all(con >= 0 ? con : 2, line, (size_t)n);
	if (ctl >= 0) {
		n = snprintf(line, sizeof line, "error %s\n", msg);
		write_all(ctl, line, (size_t)n);
	}
	for (;;)
		pause(); /* the host stops the VM; exiting would panic the kernel */
}

/* A small file's text, up to `size` - 1 bytes; "" if unreadable. */
static char *read_text(const char *path, char *buf, size_t size)
{
	size_t n = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
		n += (size_t)r;
	if (fd >= 0)
		close(fd);
	buf[n] = 0;
	return buf;
}

/* The first line of a small file, without its newline; "" if unreadable. */
static char *read_line(const char *path, char *buf, size_t size)
{
	read_text(path, buf, size);
	buf[strcspn(buf, "\n")] = 0;
	return buf;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = write_all(fd, text, strlen(text));
	close(fd);
	return r;
}

static void mkdir_p(const char *dir)
{
	char p[4096];
	snprintf(p, sizeof p, "%s", dir);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	}
	mkdir(p, 0755);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* root DEV FSTYPES FLAGS DATA: mount the root device and make it `/`. */
static void do_root(int n, char **f)
{
	(void)n;
	const char *dev = f[0], *types = f[1], *data = f[3];
	unsigned long flags = strtoul(f[2], NULL, 10);
	mkdir("/dev", 0755);
	if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) && errno != EBUSY)
		fail("cannot mount /dev (devtmpfs): %s", strerror(errno));
	/* The disk's driver probes before init runs; a slow one gets 10 s. */
	for (int i = 0; !exists(dev); i++) {
		if (i == 1000)
			fail("root device %s did not appear", dev);
		sleep_ms(10);
	}
	mkdir(NEWROOT, 0755);
	char list[1024];
	if (*types) {
		snprintf(list, sizeof list, "%s", types);
	} else {
		/* As the kernel does: every block filesystem it knows, ext4 first. */
		mkdir("/proc", 0555);
		mount("proc", "/proc", "proc", 0, NULL);
		char fs[4096];
		read_text("/proc/filesystems", fs, sizeof fs);
		size_t len = (size_t)snprintf(list, sizeof list, "ext4");
		for (char *line = strtok(fs, "\n"); line; line = strtok(NULL, "\n")) {
			if (!strncmp(line, "nodev", 5))
				continue;
			while (*line == '\t' || *line == ' ')
				line++;
			if (*line && strcmp(line, "ext4") && len + strlen(line) + 2 < sizeof list)
				len += (size_t)snprintf(list + len, sizeof list - len, ",%s", line);
		}
		umount("/proc");
	}
	/* The error to report: the first that is not "not this type". */
	int mounted = 0, last = 0;
	for (char *t = strtok(list, ","); t && !mounted; t = strtok(NULL, ",")) {
		if (!mount(dev, NEWROOT, t, flags, *data ? data : NULL))
			mounted = 1;
		else if (!last || (last == EINVAL || last == ENODEV))
			last = errno;
	}
	if (!mounted)
		fail("cannot mount the root device %s: %s", dev, strerror(last ? last : ENODEV));
	if (!exists(NEWROOT "/dev") || mount("/dev", NEWROOT "/dev", NULL, MS_MOVE, NULL))
		umount2("/dev", MNT_DETACH);
	if (chdir(NEWROOT) || mount(".", "/", NULL, MS_MOVE, NULL) || chroot(".") || chdir("/"))
		fail("cannot switch to the root file system: %s", strerror(errno));
	if (!exists("/dev/null"))
		mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
}

/* cpus: every offline CPU comes online, in a child, while init goes on. */
static void do_cpus(int n, char **f)
{
	(void)n;
	(void)f;
	if (!exists("/sys/devices/system/cpu")) {
		mkdir("/sys", 0555);
		mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	}
	onliner = fork();
	if (onliner)
		return;
	/* As during the kernel's own boot, RCU grace periods are expedited
	 * while CPUs come up: CPU hotplug waits for several of them. */
	char rcu[8];
	int expedite = !strcmp(read_line("/sys/kernel/rcu_expedited", rcu, sizeof rcu), "0") &&
		       !write_file("/sys/kernel/rcu_expedited", "1");
	DIR *d = opendir("/sys/devices/system/cpu");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[300], v[8];
		if (strncmp(e->d_name, "cpu", 3) || e->d_name[3] < '0' || e->d_name[3] > '9')
			continue;
		snprintf(p, sizeof p, "/sys/devices/system/cpu/%s/online", e->d_name);
		if (!strcmp(read_line(p, v, sizeof v), "0"))
			write_file(p, "1");
	}
	if (expedite)
		write_file("/sys/kernel/rcu_expedited", "0");
	_exit(0);
}

/* mount TYPE SRC DIR FLAGS DATA MKDIR NEED MSG */
static void do_mount(int n, char **f)
{
	(void)n;
	if (!strcmp(f[5], "1"))
		mkdir_p(f[2]);
	if (mount(f[1], f[2], f[0], strtoul(f[3], NULL, 10), *f[4] ? f[4] : NULL) &&
	    !strcmp(f[6], "1"))
		fail("%s: %s", f[7], strerror(errno));
}

/* hostname FALLBACK: the image's name, not the one the kernel's ip= gave. */
static void do_hostname(int n, char **f)
{
	(void)n;
	char name[256];
	read_line("/etc/hostname", name, sizeof name);
	char *s = name + strspn(name, " \t");
	s[strcspn(s, " \t")] = 0;
	if (!*s || *s == '#')
		s = f[0];
	sethostname(s, strlen(s));
}

/* ports OUT ERR CTL: the virtio-serial ports by name, then "started". */
static void do_ports(int n, char **f)
{
	(void)n;
	char dev[3][300] = { "", "", "" };
	for (int try = 0;; try++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char p[600], n[256];
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
			read_line(p, n, sizeof n);
			for (int i = 0; i < 3; i++)
				if (!strcmp(n, f[i]))
					snprintf(dev[i], sizeof dev[i], "/dev/%s", e->d_name);
		}
		if (d)
			closedir(d);
		if (*dev[0] && *dev[1] && *dev[2])
			break;
		if (try == 1000)
			fail("virtio-serial ports not found (the kernel needs CONFIG_VIRTIO_CONSOLE)");
		sleep_ms(10);
	}
	out_port = open(dev[0], O_WRONLY | O_CLOEXEC);
	err_port = open(dev[1], O_WRONLY | O_CLOEXEC);
	ctl = open(dev[2], O_RDWR | O_CLOEXEC);
	if (out_port < 0 || err_port < 0 || ctl < 0)
		fail("cannot open the virtio-serial ports: %s", strerror(errno));
	write_all(ctl, "started\n", 8);
}

static int set_addr(int s, unsigned long req, const char *dev, const char *addr)
{
	struct ifreq ifr = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", dev);
	sin->sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
		return -1;
	return ioctl(s, req, &ifr);
}

static void if_up(int s, const char *dev)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", dev);
	if (!ioctl(s, SIOCGIFFLAGS, &ifr)) {
		ifr.ifr_flags |= IFF_UP;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
}

/* net DEV ADDR MASK GW: what the kernel's ip= would have set, unless the
 * device has an address already (the user's own ip= in --append). */
static void do_net(int n, char **f)
{
	(void)n;
	char p[300];
	snprintf(p, sizeof p, "/sys/class/net/%s", f[0]);
	if (!exists(p))
		return;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq have = { 0 };
	snprintf(have.ifr_name, IFNAMSIZ, "%s", f[0]);
	if (!ioctl(s, SIOCGIFADDR, &have)) {
		close(s);
		return;
	}
	if_up(s, "lo");
	set_addr(s, SIOCSIFADDR, f[0], f[1]);
	set_addr(s, SIOCSIFNETMASK, f[0], f[2]);
	if_up(s, f[0]);
	struct rtentry rt = { 0 };
	struct sockaddr_in *gw = (struct sockaddr_in *)&rt.rt_gateway;
	((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
	((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
	gw->sin_family = AF_INET;
	if (inet_pton(AF_INET, f[3], &gw->sin_addr) == 1) {
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		ioctl(s, SIOCADDRT, &rt);
	}
	close(s);
}

/* cd DIR NEED MSG */
static void do_cd(int n, char **f)
{
	(void)n;
	if (chdir(f[0])) {
		if (!strcmp(f[1], "1"))
			fail("%s", f[2]);
		chdir("/");
		setenv("PWD", "/", 1);
	} else {
		setenv("PWD", f[0], 1);
	}
}

/* The program `name` names, found on PATH as execvp finds it; 0 if none. */
static int find_program(const char *name, char *path, size_t size)
{
	if (strchr(name, '/')) {
		snprintf(path, size, "%s", name);
		return access(path, X_OK) == 0;
	}
	const char *dirs = getenv("PATH");
	for (const char *d = dirs ? dirs : "/usr/bin:/bin"; *d;) {
		size_t len = strcspn(d, ":");
		struct stat st;
		snprintf(path, size, "%.*s/%s", (int)len, d, name);
		if (!stat(path, &st) && S_ISREG(st.st_mode) && !access(path, X_OK))
			return 1;
		d += len + (d[len] == ':');
	}
	return 0;
}

/* The ELF interpreter (dynamic loader) a 64-bit program asks for, or "". */
static void elf_interp(int fd, char *interp, size_t size)
{
	Elf64_Ehdr eh;
	interp[0] = 0;
	if (pread(fd, &eh, sizeof eh, 0) != sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr))
		return;
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (Elf64_Off)i * sizeof ph)) != sizeof ph)
			return;
		if (ph.p_type == PT_INTERP && ph.p_filesz < size) {
			if (pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) == (ssize_t)ph.p_filesz)
				interp[ph.p_filesz] = 0;
			return;
		}
	}
}

/* prefetch PROGRAM: while the late CPUs come online, the command's program
 * and its libraries come into the page cache (the dynamic loader's --list
 * maps them and runs none of the program's code), so that the command then
 * starts warm. Anything else (a script, a static program) is only read. */
static void do_prefetch(int n, char **f)
{
	(void)n;
	char path[4096], interp[256];
	if (!find_program(f[0], path, sizeof path))
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	elf_interp(fd, interp, sizeof interp);
	if (!*interp || access(interp, X_OK)) {
		readahead(fd, 0, 64 << 20);
		close(fd);
		return;
	}
	close(fd);
	prefetcher = fork();
	if (prefetcher == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		execl(interp, interp, "--list", path, (char *)NULL);
		_exit(127);
	}
}

/* waitcpus MSG: the `cpus` child is done and no CPU stayed offline. */
static void do_waitcpus(int n, char **f)
{
	(void)n;
	char off[256];
	if (onliner > 0)
		while (waitpid(onliner, NULL, 0) < 0 && errno == EINTR)
			;
	if (*read_line("/sys/devices/system/cpu/offline", off, sizeof off))
		fail("CPUs %s %s", off, f[0]);
}

/* env NAME=VALUE... */
static void do_env(int n, char **f)
{
	for (int i = 0; i < n; i++)
		putenv(f[i]);
}

/* The kernel's taint flags, or "-". */
static void taint(char *buf, size_t size)
{
	read_line("/proc/sys/kernel/tainted", buf, size);
	if (!*buf || buf[strspn(buf, "0123456789")])
		snprintf(buf, size, "-");
}

/* The command's exit as a shell reports it. */
static int shell_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 255;
}

/* run PERSIST ARGV...: the command, its output counted into the ports. */
static void do_run(int n, char **f)
{
	(void)n;
	int persist = !strcmp(f[0], "1");
	char **argv = f + 1; /* ends at the NULL after the record's last field */
	int o[2], e[2];
	if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC))
		fail("cannot create pipes: %s", strerror(errno));
	char t0[32], t1[32];
	if (prefetcher > 0)
		while (waitpid(prefetcher, NULL, 0) < 0 && errno == EINTR)
			;
	taint(t0, sizeof t0);
	pid_t pid = fork();
	if (pid < 0)
		fail("cannot fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0 || dup2(o[1], 1) < 0 || dup2(e[1], 2) < 0)
			_exit(127);
		execvp(argv[0], argv);
		/* As the shell init's `exec` reports it. */
		int err = errno;
		dprintf(2, "lvh-init: %s: %s\n", argv[0], err == ENOENT ? "not found" : strerror(err));
		_exit(err == ENOENT ? 127 : 126);
	}
	close(o[1]);
	close(e[1]);
	struct pollfd p[2] = { { o[0], POLLIN, 0 }, { e[0], POLLIN, 0 } };
	int port[2] = { out_port, err_port };
	unsigned long long count[2] = { 0, 0 };
	static char buf[65536];
	while (p[0].fd >= 0 || p[1].fd >= 0) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fail("poll: %s", strerror(errno));
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !p[i].revents)
				continue;
			ssize_t r = read(p[i].fd, buf, sizeof buf);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				continue;
			}
			if (write_all(port[i], buf, (size_t)r) == 0)
				count[i] += (unsigned long long)r;
		}
	}
	trace("pumped");
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (persist)
		sync();
	taint(t1, sizeof t1);
	char line[200];
	trace("exit");
	write_all(ctl, trace_buf, trace_len);
	int len = snprintf(line, sizeof line, "exit %d %llu %llu %s %s\n", shell_status(st),
			   count[0], count[1], t0, t1);
	write_all(ctl, line, (size_t)len);
	ran = 1;
}

struct step;
static void parse_plan(const char *what, char *plan, size_t len,
		       void (*each)(const struct step *, int, char **));
static void run_step(const struct step *step, int n, char **f);

/* Exactly `len` bytes from the control port. A read that finds no host
 * (EOF while QEMU is stopped, saved or not yet reconnected after a restore)
 * is retried. */
static void read_ctl(char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(ctl, buf + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			sleep_ms(2);
			continue;
		}
		got += (size_t)r;
	}
}

/* One line from the control port, without its newline (cut to `size` - 1). */
static void read_ctl_line(char *buf, size_t size)
{
	size_t n = 0;
	char c;
	for (read_ctl(&c, 1); c != '\n'; read_ctl(&c, 1))
		if (n + 1 < size)
			buf[n++] = c;
	buf[n] = 0;
}

/* Unmounts every 9p and virtiofs mount (QEMU cannot save a VM with one
 * mounted); 0 when none is left. */
static int detach_shares(void)
{
	char mounts[65536];
	for (int pass = 0; pass < 2; pass++) {
		read_text("/proc/mounts", mounts, sizeof mounts);
		int found = 0;
		for (char *line = strtok(mounts, "\n"); line; line = strtok(NULL, "\n")) {
			char dir[4096], type[64];
			if (sscanf(line, "%*s %4095s %63s", dir, type) != 2)
				continue;
			if (strcmp(type, "9p") && strcmp(type, "virtiofs"))
				continue;
			found = 1;
			if (pass == 0)
				umount(dir);
		}
		if (!found)
			return 0;
	}
	return -1;
}

/* serve: the VM is saved after the run, then restored, maybe many times:
 * each restore continues here with its own command, as records. */
static void do_serve(int n, char **f)
{
	(void)n;
	(void)f;
	char line[64];
	read_ctl_line(line, sizeof line);
	if (strcmp(line, "save"))
		for (;;)
			pause(); /* not saved: the host stops the VM */
	if (chdir("/"))
		fail("cannot change to /: %s", strerror(errno));
	if (detach_shares())
		fail("cannot unmount the host mount before saving (is a process still using it?)");
	sync();
	trace_len = 0;
	write_all(ctl, "saving\n", 7);
	/* Saved here. A restored VM continues: "run LEN" and LEN bytes. */
	read_ctl_line(line, sizeof line);
	trace("restored");
	char *end;
	unsigned long len = strncmp(line, "run ", 4) ? 0 : strtoul(line + 4, &end, 10);
	if (!len || *end || len > (1UL << 20))
		fail("bad command from the host: %s", line);
	char *plan = malloc(len + 1);
	if (!plan)
		fail("cannot read the command: out of memory");
	read_ctl(plan, len);
	plan[len] = 0;
	write_all(ctl, "started\n", 8);
	ran = 0;
	parse_plan("the restored command", plan, len, run_step);
}

/* The records, with their least and most field counts. */
static const struct step {
	const char *name;
	int min, max;
	void (*run)(int n, char **f);
} steps[] = {
	{ "root", 4, 4, do_root },
	{ "cpus", 0, 0, do_cpus },
	{ "prefetch", 1, 1, do_prefetch },
	{ "mount", 8, 8, do_mount },
	{ "hostname", 1, 1, do_hostname },
	{ "ports", 3, 3, do_ports },
	{ "net", 4, 4, do_net },
	{ "env", 0, MAX_FIELDS, do_env },
	{ "cd", 3, 3, do_cd },
	{ "waitcpus", 1, 1, do_waitcpus },
	{ "run", 2, MAX_FIELDS, do_run },
	{ "serve", 0, 0, do_serve },
};

/* Hands each record of `plan` (`len` bytes, from `what`) to `each`, in order. */
static void parse_plan(const char *what, char *plan, size_t len,
		       void (*each)(const struct step *, int, char **))
{
	char **fields = malloc((MAX_FIELDS + 1) * sizeof *fields);
	if (!fields)
		fail("cannot read %s: out of memory", what);
	char *p = plan, *end = plan + len;
	while (p < end) {
		char *name = p;
		p += strlen(p) + 1;
		if (p >= end)
			fail("%s: record %s has no field count", what, name);
		int n = atoi(p);
		p += strlen(p) + 1;
		if (n < 0 || n > MAX_FIELDS)
			fail("%s: record %s has %d fields", what, name, n);
		for (int i = 0; i < n; i++) {
			if (p >= end)
				fail("%s: record %s is cut short", what, name);
			fields[i] = p;
			p += strlen(p) + 1;
		}
		fields[n] = NULL;
		const struct step *step = NULL;
		for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++)
			if (!strcmp(name, steps[k].name))
				step = &steps[k];
		if (!step || n < step->min || n > step->max)
			fail("%s: unknown record %s with %d fields", what, name, n);
		each(step, n, fields);
	}
	free(fields);
}

/* Reads the plan at `path` and hands each record to `each`, in order. */
static void read_plan(const char *path, void (*each)(const struct step *, int, char **))
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st))
		fail("cannot read %s: %s", path, strerror(errno));
	char *plan = malloc((size_t)st.st_size + 1);
	if (!plan)
		fail("cannot read %s: out of memory", path);
	ssize_t got = 0;
	while (got < st.st_size) {
		ssize_t r = read(fd, plan + got, (size_t)(st.st_size - got));
		if (r <= 0)
			fail("cannot read %s", path);
		got += r;
	}
	close(fd);
	plan[got] = 0;
	parse_plan(path, plan, (size_t)got, each);
}

static void run_step(const struct step *step, int n, char **f)
{
	trace(n > 2 && !strcmp(step->name, "mount") ? f[2] : step->name);
	step->run(n, f);
}

#ifdef LVH_INIT_PLAN_DUMP
static void dump_field(const char *f)
{
	for (; *f; f++) {
		if (*f == '\t')
			fputs("\\t", stdout);
		else if (*f == '\n')
			fputs("\\n", stdout);
		else if (*f == '\\')
			fputs("\\\\", stdout);
		else
			putchar(*f);
	}
}

static void dump(const struct step *step, int n, char **f)
{
	fputs(step->name, stdout);
	for (int i = 0; i < n; i++) {
		putchar('\t');
		dump_field(f[i]);
	}
	putchar('\n');
}

int main(int argc, char **argv)
{
	if (argc != 2)
		fail("usage: %s PLAN", argv[0]);
	read_plan(argv[1], dump);
	return 0;
}
#else
int main(void)
{
	trace("main");
	read_plan(PLAN, run_step);
	if (!ran)
		fail("%s has no run record", PLAN);
	/* The host stops the VM once every byte arrived. */
	for (;;)
		pause();
}
#endif
