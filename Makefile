# virt-gateway: the two commands that matter on a fresh machine are `make demo` and `make test`.
# Everything they need that the machine lacks is installed or built by them, with progress shown.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
TESTENV_DIR ?= .testenv

.PHONY: help test lint fmt testenv-binaries testenv-up testenv-down crds fuzz bench

help:
	@echo "make demo           local control plane + operator + gateway + a working console link"
	@echo "make test           every test (builds the control-plane binaries on first use)"
	@echo "make lint           cargo fmt --check and clippy -D warnings"
	@echo "make testenv-up     start the test control plane in the background ($(TESTENV_DIR)/kubeconfig)"
	@echo "make testenv-down   stop it"
	@echo "make crds           regenerate deploy/crds from the Rust types"
	@echo "make fuzz           run the fuzz targets for a bounded time (FUZZ_SECONDS, default 60 each)"
	@echo "make bench          run the benchmarks and print where the results are"

## The control-plane binaries (etcd, kube-apiserver, kube-controller-manager, kubectl), built
## once from the Go module proxy and cached by version.
testenv-binaries:
	@bash testenv/build-binaries.sh >/dev/null

test: testenv-binaries
	$(CARGO) test --workspace --all-targets --locked
	$(CARGO) test --workspace --doc --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

testenv-up: testenv-binaries
	@$(CARGO) run --quiet --locked -p virt-gateway-testenv --bin testenv -- up --dir $(TESTENV_DIR)

testenv-down:
	@$(CARGO) run --quiet --locked -p virt-gateway-testenv --bin testenv -- down --dir $(TESTENV_DIR)

crds:
	$(CARGO) run --quiet --locked -p virt-gateway-api --bin crdgen -- --write deploy/crds

FUZZ_SECONDS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

## Benchmarks are never part of `make test`: they measure, tests check behaviour.
bench:
	$(CARGO) bench --locked -p virt-gateway-auth --bench auth -- --warm-up-time 1 --measurement-time 3
	@echo "figures: bench/auth/RESULTS.md (update it with the numbers above and the machine they ran on)"
