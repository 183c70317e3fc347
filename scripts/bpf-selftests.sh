#!/usr/bin/env bash
# The BPF developer's loop, end to end, through lvh (`make test-bpf`):
#   1. Debian's linux-source-6.12 committed into a local git repository,
#   2. a kernel configured and built by `lvh kernels` from tinyconfig, the
#      `runner` option group and the selftests' own Kconfig fragments
#      (tools/testing/selftests/bpf/config{,.x86_64}),
#   3. tools/testing/selftests/bpf built against it (test_verifier, test_progs),
#   4. the images/bpf root image built by `lvh images build`,
#   5. test_verifier and a test_progs subset run in the guest by `lvh run`,
#      their failures compared with scripts/bpf-selftests-known-failures.txt.
# Steps 1-4 are cached under $LVH_TEST_CACHE (default ~/.cache/lvh-tests), keyed
# by their inputs, built under a temporary name and renamed when complete: a
# rerun only reruns the tests. Exit status: 0 when every failure is a known one.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
LVH=${LVH:-$REPO/target/release/lvh}
CACHE=${LVH_TEST_CACHE:-$HOME/.cache/lvh-tests}
TARBALL=${BPF_SELFTESTS_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
KNOWN=$REPO/scripts/bpf-selftests-known-failures.txt
ARCH=amd64
export LVH_ACCEL=${LVH_ACCEL:-tcg}
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}
export CI=${CI:-true}

# The kernel: tinyconfig + the runner group + the selftests' fragments.
BASE_CONFIG=tinyconfig
OPT_GROUPS=runner,tracing
FRAGMENTS=(tools/testing/selftests/bpf/config tools/testing/selftests/bpf/config.x86_64)
# What the selftests need from that kernel: the configure report must not list these.
IMPORTANT=(BPF BPF_SYSCALL BPF_JIT DEBUG_INFO_BTF MODULES CGROUP_BPF BPF_EVENTS
	FUNCTION_TRACER NET_CLS_BPF XDP_SOCKETS BPF_LSM)
# The selftests toolchain (Debian bookworm: clang-19 from its main archive).
CLANG=${CLANG:-clang-19}
LLC=${LLC:-llc-19}
LLVM_STRIP=${LLVM_STRIP:-llvm-strip-19}
SELFTESTS_TARGETS=(test_verifier test_progs)
# test_progs: a subset (-a: exact names) across the BPF core: BTF and CO-RE,
# maps, ring buffer, tail calls, global data, atomics, bpf_loop, iterators,
# XDP and skb test runs, kfuncs (through bpf_testmod.ko), fentry/fexit and
# bpf_cookie (ftrace, kprobes, uprobes), cgroup attach, local storage.
TEST_PROGS_ARGS=${TEST_PROGS_ARGS:--a btf,btf_dump,core_reloc,global_data,map_ptr,hash_large_key,ringbuf,tailcalls,atomics,bpf_loop,bpf_iter,xdp_adjust_tail,xdp_attach,skb_ctx,prog_run_opts,bpf_obj_id,kfunc_call,fentry_test,fexit_test,bpf_cookie,cgroup_attach_multi,task_local_storage}
TEST_TIMEOUT=${TEST_TIMEOUT:-3600}
MEM=${MEM:-4G}

# Bump a recipe version when the step changes in a way its inputs do not show.
KERNEL_RECIPE=1
SELFTESTS_RECIPE=1
IMAGE_RECIPE=1

say() { printf '\n== %s\n' "$*" >&2; }
now() { date +%s; }
TIMES=()
timed() { # timed LABEL SECONDS
	TIMES+=("$(printf '%-24s %6ss' "$1" "$2")")
}
hash() { sha256sum | cut -c1-16; }

for t in "$LVH" "$CLANG" "$LLC" "$LLVM_STRIP" pahole python3 git make rsync; do
	command -v "$t" >/dev/null || {
		echo "bpf-selftests: $t is missing (make build; scripts/install-deps.sh)" >&2
		exit 1
	}
done
[ -f "$TARBALL" ] || { echo "bpf-selftests: $TARBALL is missing: install linux-source-6.12" >&2; exit 1; }
mkdir -p "$CACHE"

# A cache entry: run "$@" to fill "$CACHE/.$1.partial" and rename it to "$CACHE/$1"
# when it succeeds; a failed step leaves only the .partial, which the next run
# removes and rebuilds (with CACHED_RESUME=1, for a step that is an incremental
# make, it continues in it instead). One builder per entry at a time (flock).
cached() {
	local name=$1
	shift
	local final=$CACHE/$name partial=$CACHE/.$name.partial
	exec {lockfd}>"$CACHE/$name.lock"
	flock "$lockfd"
	if [ ! -d "$final" ]; then
		[ "${CACHED_RESUME:-}" = 1 ] || rm -rf "$partial"
		mkdir -p "$partial"
		"$@" "$partial"
		mv -T "$partial" "$final"
	fi
	flock -u "$lockfd"
	exec {lockfd}>&-
}

# The root image: defined first so `bpf-selftests.sh image` builds it alone
# (for instance while the kernel builds).
image_key=$( {
	echo "$ARCH recipe=$IMAGE_RECIPE"
	cat "$REPO/images/bpf/images.json"
} | hash)
INAME=bpf-selftests-image-$image_key
build_image() {
	local d=$1 t0
	say "image: lvh images build (images/bpf/images.json)"
	cp "$REPO/images/bpf/images.json" "$d/"
	t0=$(now)
	"$LVH" images build --dir "$d" --arch "$ARCH" >&2
	timed "image build" $(($(now) - t0))
}

if [ "${1:-}" = image ]; then
	cached "$INAME" build_image
	exit 0
fi

# 1. The kernel's git "remote": the same repository the system tests' fixture
# makes (tests/system/fixtures/kernel.rs: its key is the tarball's identity),
# shared with it when present.
tar_id="$TARBALL $(stat -c '%s %Y' "$TARBALL")"
src_key=$(python3 -c 'import hashlib,struct,sys; s=sys.argv[1].encode(); print(hashlib.sha256(struct.pack("<Q",len(s))+s).hexdigest()[:16])' "$tar_id")
SRC=$CACHE/linux-6.12-git-$src_key/linux
make_source() {
	local d=$1/linux
	mkdir -p "$d"
	tar -xJf "$TARBALL" --strip-components=1 -C "$d"
	local g=(git -C "$d" -c gc.auto=0 -c user.name="lvh tests" -c user.email=lvh@example.invalid)
	"${g[@]}" init -q -b main
	# -f: Debian's top-level .gitignore ignores everything (`/*`).
	"${g[@]}" -c core.compression=1 add -A -f
	GIT_AUTHOR_DATE=2024-11-17T00:00:00Z GIT_COMMITTER_DATE=2024-11-17T00:00:00Z \
		"${g[@]}" -c core.compression=1 commit -q -m linux-source-6.12
}
if [ ! -d "$SRC" ]; then
	say "source: unpacking $TARBALL into a git repository"
	t0=$(now)
	# The fixture's lock file and naming, so the two never build it twice at once.
	exec {srclock}>"$CACHE/linux-6.12-git.lock"
	flock "$srclock"
	if [ ! -d "$SRC" ]; then
		p=$CACHE/.linux-6.12-git-$src_key.partial-$$
		rm -rf "$p"
		mkdir -p "$p"
		make_source "$p"
		mv -T "$p" "$CACHE/linux-6.12-git-$src_key"
	fi
	exec {srclock}>&-
	timed "source repository" $(($(now) - t0))
fi

# 2. The kernel, through lvh kernels.
frag_text=$(for f in "${FRAGMENTS[@]}"; do echo "$f"; git -C "$SRC" show "HEAD:$f"; done)
kernel_key=$( {
	echo "$src_key $ARCH $BASE_CONFIG $OPT_GROUPS recipe=$KERNEL_RECIPE"
	[ "$KERNEL_TOOLCHAIN" = gcc ] || echo "toolchain=$KERNEL_TOOLCHAIN"
	for g in ${OPT_GROUPS//,/ }; do cat "$REPO/configs/kconfig/$g.conf"; done
	echo "$frag_text"
} | hash)
KNAME=bpf
KDIR_NAME=bpf-selftests-kernel-$kernel_key
build_kernel() {
	local d=$1 frag_args=()
	for f in "${FRAGMENTS[@]}"; do frag_args+=(--fragment "$f"); done
	"$LVH" kernels init --dir "$d" --config-groups "$OPT_GROUPS"
	# The kernel's own opts stay empty: runner is in common_opts, before the fragments.
	"$LVH" kernels add "$KNAME" "$SRC" --dir "$d" --config-groups "" \
		--base-config "$BASE_CONFIG" "${frag_args[@]}"
	local t0
	t0=$(now)
	"$LVH" kernels fetch "$KNAME" --dir "$d"
	timed "kernel fetch" $(($(now) - t0))
	t0=$(now)
	"$LVH" kernels configure "$KNAME" --dir "$d" --arch "$ARCH" --toolchain "$KERNEL_TOOLCHAIN" 2>&1 | tee "$d/configure.log" >&2
	timed "kernel configure" $(($(now) - t0))
	local missing=()
	for o in "${IMPORTANT[@]}"; do
		if grep -q "CONFIG_$o wanted" "$d/configure.log" ||
			! grep -qx "CONFIG_$o=y" "$d/kernels/$KNAME/.config"; then
			missing+=("$o")
		fi
	done
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "bpf-selftests: options the selftests need did not stick: ${missing[*]}" >&2
		return 1
	fi
	t0=$(now)
	# Through the compiler cache (ccache, lvh's default when it is installed).
	nice -n 10 "$LVH" kernels build "$KNAME" --dir "$d" --arch "$ARCH" --toolchain "$KERNEL_TOOLCHAIN" >"$d/build.out"
	timed "kernel build" $(($(now) - t0))
	# The kernel makes its BTF with pahole; the guest exposes it as /sys/kernel/btf/vmlinux.
	[ -f "$d/kernels/$KNAME/vmlinux" ] && grep -qx "CONFIG_DEBUG_INFO_BTF=y" "$d/kernels/$KNAME/.config"
}
if [ ! -d "$CACHE/$KDIR_NAME" ]; then
	say "kernel: lvh kernels init/add/fetch/configure/build ($BASE_CONFIG + $OPT_GROUPS + ${FRAGMENTS[*]})"
fi
cached "$KDIR_NAME" build_kernel
KDIR=$CACHE/$KDIR_NAME
TREE=$KDIR/kernels/$KNAME
BZIMAGE=$TREE/arch/x86/boot/bzImage
grep -h "wanted" "$KDIR/configure.log" >"$KDIR/not-stuck.txt" || true
echo "kernel: $BZIMAGE ($(wc -l <"$KDIR/not-stuck.txt") fragment/group options did not stick, see $KDIR/configure.log)" >&2

# 3. The selftests, built in the kernel's tree against its vmlinux.
# Tests of this tree that cannot build, set aside (moved out of prog_tests/)
# before make: linux-source-6.12 (6.12.117) got prog_tests/bpf_attr_size.c from a
# stable backport without the BPF program it includes
# (progs/cgroup_skb_direct_packet_access.c, mainline only).
UNBUILDABLE=(prog_tests/bpf_attr_size.c)
selftests_key=$( {
	echo "$kernel_key recipe=$SELFTESTS_RECIPE ${SELFTESTS_TARGETS[*]} ${UNBUILDABLE[*]}"
	"$CLANG" --version | head -n1
	pahole --version
} | hash)
PNAME=bpf-selftests-progs-$selftests_key
build_selftests() {
	local out=$1 t0 f sel=$TREE/tools/testing/selftests/bpf
	mkdir -p "$out/.set-aside"
	for f in "${UNBUILDABLE[@]}"; do
		if [ -f "$sel/$f" ]; then
			echo "selftests: setting aside $f (it cannot build in this tree)" >&2
			mv "$sel/$f" "$out/.set-aside/"
			# The generated list of tests must forget it.
			rm -f "$sel/prog_tests/tests.h"
		fi
	done
	t0=$(now)
	# The compiler cache in front of gcc and clang (ccache's masquerade: links
	# named like the compilers, first in PATH), the same cache as the kernel's.
	local ccbin=$out/.ccache-bin path=$PATH
	if command -v ccache >/dev/null; then
		mkdir -p "$ccbin"
		for c in gcc cc "$CLANG"; do ln -sf "$(command -v ccache)" "$ccbin/$c"; done
		path=$ccbin:$PATH
		export CCACHE_DIR=${CCACHE_DIR:-${LVH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lvh}/ccache}
	fi
	# OUTPUT must end in a slash for the selftests' Makefile. feature-llvm=0:
	# when it detects LLVM, test_progs links it statically for its JIT
	# disassembler (bookworm's default llvm-config is LLVM 14; llvm-19-dev is
	# not installed); without it the few tests that check JITed code skip.
	PATH=$path nice -n 10 make -C "$TREE/tools/testing/selftests/bpf" -j"$(nproc)" \
		CLANG="$CLANG" LLC="$LLC" LLVM_STRIP="$LLVM_STRIP" feature-llvm=0 \
		VMLINUX_BTF="$TREE/vmlinux" OUTPUT="$out/" \
		"${SELFTESTS_TARGETS[@]}" >"$out/.build.log" 2>&1 || {
		tail -n 40 "$out/.build.log" >&2
		return 1
	}
	timed "selftests build" $(($(now) - t0))
}
if [ ! -d "$CACHE/$PNAME" ]; then say "selftests: make ${SELFTESTS_TARGETS[*]} (clang-19)"; fi
CACHED_RESUME=1 cached "$PNAME" build_selftests
PROGS=$CACHE/$PNAME

# 4. The root image (built earlier, see the top).
cached "$INAME" build_image
IMAGE=$CACHE/$INAME/images/bpf.qcow2

# 5. The tests.
RESULTS=$(mktemp -d)
trap 'rm -rf "$RESULTS"' EXIT
run_guest() { # run_guest LABEL CMD...
	local label=$1 t0 rc=0
	shift
	say "run: $*"
	t0=$(now)
	"$LVH" run --kernel "$BZIMAGE" --image "$IMAGE" --host-mount "$PROGS" --cwd . \
		--mem "$MEM" --timeout "$TEST_TIMEOUT" -- "$@" >"$RESULTS/$label.log" 2>&1 || rc=$?
	timed "$label" $(($(now) - t0))
	return "$rc"
}

t0=$(now)
rc=0
run_guest "boot + true" true || rc=$?
[ "$rc" -eq 0 ] || { cat "$RESULTS/boot + true.log" >&2; echo "bpf-selftests: the guest did not run a command (exit $rc)" >&2; exit 1; }
run_guest "btf check" sh -c 'ls -l /sys/kernel/btf/vmlinux && bpftool version' || {
	cat "$RESULTS/btf check.log" >&2
	echo "bpf-selftests: /sys/kernel/btf/vmlinux or bpftool missing in the guest" >&2
	exit 1
}
verifier_rc=0
run_guest test_verifier sh -c 'ip link set lo up; exec ./test_verifier' || verifier_rc=$?
progs_rc=0
run_guest test_progs sh -c "ip link set lo up; exec ./test_progs $TEST_PROGS_ARGS" || progs_rc=$?

# Failures: test_verifier prints "#12/u name FAIL", test_progs "#34/5 name/sub:FAIL".
status=0
python3 "$REPO/scripts/bpf-selftests-verdict.py" "$RESULTS" "$KNOWN" "$verifier_rc" "$progs_rc" || status=$?
say "timings"
printf '%s\n' "${TIMES[@]}" >&2
# The guest logs of this run, for reading after it.
rm -rf "$CACHE/bpf-selftests-last-run"
cp -r "$RESULTS" "$CACHE/bpf-selftests-last-run"
echo "guest logs: $CACHE/bpf-selftests-last-run" >&2
exit "$status"
