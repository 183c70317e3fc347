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

.PHONY: all build test test-unit test-integration test-system test-bpf lint bench demo install-deps clean stress-kill

all: build

build:
	$(CARGO) build --release --locked

install-deps:
	bash scripts/install-deps.sh

# Every tier uses the release profile so CI compiles the dependencies once.
test: install-deps lint test-unit test-integration test-system

test-unit:
	$(CARGO) test --locked --release --lib --bins

test-integration:
	$(CARGO) test --locked --release --test integration

test-system:
	$(CARGO) test --locked --release --test system -- --test-threads=2

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The kernel's BPF selftests in a guest (scripts/bpf-selftests.sh; README "BPF selftests").
test-bpf: install-deps build
	bash scripts/bpf-selftests.sh

# SIGKILL of lvh at 20 random points per command (README "Reliability");
# LVH_KILL_SEED=<seed> replays a failure, LVH_KILL_POINTS=<n> changes the count.
stress-kill: install-deps
	LVH_KILL_POINTS=$${LVH_KILL_POINTS:-20} $(CARGO) test --locked --release --test system -- faults::kill --test-threads=1 --nocapture

bench: install-deps
	$(CARGO) bench --locked --bench bench

demo: install-deps build
	bash scripts/demo.sh

clean:
	$(CARGO) clean
	rm -rf _data
