# Single entry point. Every target builds in one cargo profile (`opt`, see Cargo.toml) and one
# target directory outside the work tree, so RocksDB's C++ is compiled once per machine.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/regionstore/target
CARGO_PROFILE := --profile opt

.PHONY: all deps build run demo test nemesis bench-write fmt fmt-check clippy bench ci cluster cluster-stop bench-cluster

all: build

deps:
	@scripts/install-deps.sh

# One build for every target: `cargo run` of one binary would resolve features for that package
# alone and recompile part of the workspace, so run and demo execute what `build` made.
build: deps
	cargo build $(CARGO_PROFILE) --workspace --all-targets

# The main job: region-sim on its default (embedded) settings; ARGS="..." passes options.
run: build
	$(CARGO_TARGET_DIR)/opt/region-sim $(ARGS)

demo: build
	$(CARGO_TARGET_DIR)/opt/storage-demo $(ARGS)

# Faults as a workload: region-sim --nemesis over SEEDS seeds (default 10) on 3 and 5 stores,
# one line per run and a summary (see scripts/nemesis.sh for SEEDS, STORES, DURATION, KINDS).
nemesis: build
	scripts/nemesis.sh

# Writes per second at 1, 8 and 64 clients, 16 and 512 regions, sync-log on and off, next to a
# 3-member etcd started on loopback in the same run (see scripts/bench-write.sh for the knobs).
bench-write: build
	scripts/bench-write.sh

# A local cluster of processes: etcd, regionstore-pd and 3 regionstore-servers on loopback
# ports (see scripts/cluster.sh for SERVERS and CLUSTER_DIR); it prints their addresses.
cluster: build
	scripts/cluster.sh start

cluster-stop:
	scripts/cluster.sh stop

# region-sim at 8 and 64 clients on the embedded mode and on a 3-process cluster, one table
# (see scripts/bench-cluster.sh for CLIENTS, DURATION, SPLIT_SIZE).
bench-cluster: build
	scripts/bench-cluster.sh

test: deps
	cargo test $(CARGO_PROFILE) --workspace --all-targets
	cargo test $(CARGO_PROFILE) --workspace --doc
	# The embedding example, run: it opens, writes, reads, stops, reopens and reads again.
	$(CARGO_TARGET_DIR)/opt/examples/embedded_kv
	# Fail point tests: their own binary, one test at a time (fail points are process-wide).
	cargo test $(CARGO_PROFILE) --features failpoints --test failpoints -- --test-threads 1
	# The batch system's FSM state, model-checked exhaustively on loom's atomics.
	cargo test $(CARGO_PROFILE) -p router --features loom --lib -- loom_

# tools/etcd-bench is a workspace of its own (see its Cargo.toml), built in a target dir of its own.
TOOLS := --manifest-path tools/etcd-bench/Cargo.toml

fmt:
	cargo fmt --all
	cargo fmt $(TOOLS)

fmt-check:
	cargo fmt --all -- --check
	cargo fmt $(TOOLS) -- --check

clippy: deps
	cargo clippy $(CARGO_PROFILE) --workspace --all-targets -- -D warnings
	cargo clippy $(CARGO_PROFILE) --features failpoints --test failpoints -- -D warnings
	cargo clippy $(CARGO_PROFILE) -p router --features loom --lib --tests -- -D warnings
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/tools cargo clippy --release $(TOOLS) -- -D warnings

bench: deps
	cargo bench $(CARGO_PROFILE) --workspace $(if $(BENCH),--bench $(BENCH),)

# What CI runs.
ci: fmt-check clippy test
