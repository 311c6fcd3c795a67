# virt-gateway: the two commands that matter on a fresh machine are `make demo` and `make test`.
# Everything they need that the machine lacks is installed or built by them, with progress shown.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
TESTENV_DIR ?= .testenv
DEMO_DIR ?= .demo

.PHONY: help demo build test lint fmt deps web testenv-binaries tools testenv-up testenv-down crds manifests fuzz bench bench-quick images

help:
	@echo "make demo           local control plane + operator + gateway + a working console link"
	@echo "make test           every test (builds the control-plane binaries on first use)"
	@echo "make lint           cargo fmt --check and clippy -D warnings"
	@echo "make testenv-up     start the test control plane in the background ($(TESTENV_DIR)/kubeconfig)"
	@echo "make testenv-down   stop it"
	@echo "make crds           regenerate deploy/crds from the Rust types"
	@echo "make manifests      regenerate the generated files of deploy/ (manifests, Helm chart, OLM bundle)"
	@echo "make fuzz           run the fuzz targets for a bounded time (FUZZ_SECONDS, default 60 each)"
	@echo "make bench          run the benchmarks (~20 min) and print where the results are"
	@echo "make bench-quick    a few-minute smoke run of the gateway benchmarks"
	@echo "make images         build and check the container images without a Docker engine"

## The control-plane binaries (etcd, kube-apiserver, kube-controller-manager, kubectl) and the Dex
## OpenID Connect provider, built once from the Go module proxy and cached by version.
testenv-binaries:
	@bash testenv/build-binaries.sh >/dev/null
	@bash testenv/build-dex.sh >/dev/null

## helm and the Operator Framework's bundle validator (tools/), built once from the Go module proxy
## and cached by version, for the chart and OLM bundle tests in crates/deploy-tests.
tools:
	@bash tools/build.sh >/dev/null

## Debian packages (Xvnc for the KubeVirt stand-in, Chromium for browser tests) and the web app's
## npm packages from its lock file. Idempotent; shows what it installs.
deps:
	bash scripts/install-system-deps.sh
	cd web && npm ci --no-audit --no-fund

## The web app (login page, console, noVNC) into web/dist, the gateway's web root.
web: deps
	cd web && npm run build

## Every binary of the workspace (the demo runs the operator and gateway binaries).
build:
	$(CARGO) build --workspace --bins --locked

## The whole product on this machine: control plane, CRDs, operator, seed samples, KubeVirt
## stand-in and the gateway run from the operator's Deployment; prints a console link and what
## to try next. Ctrl-C stops it (a second Ctrl-C kills what is left) and removes $(DEMO_DIR).
demo: testenv-binaries web build
	./target/debug/virt-gateway-demo --dir $(DEMO_DIR)

test: testenv-binaries tools web build
	$(CARGO) test --workspace --all-targets --locked --no-fail-fast
	$(CARGO) test --workspace --doc --locked
	cd web && npm test

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

manifests:
	$(CARGO) run --quiet --locked -p virt-gateway-operator -- manifests --write deploy

FUZZ_SECONDS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

## Benchmarks are never part of `make test`: they measure, tests check behaviour.
## `make bench`: the auth core's criterion benches, the gateway benchmarks (bench/gateway, report in
## bench/RESULTS.md, raw numbers in bench/results/full) and the operator's (bench/operator;
## BENCH_OPERATOR=0 skips it). `make bench-quick`: a few-minute smoke run of the gateway benchmarks
## (bench/results/quick).
BENCH_OPERATOR ?= 1
bench:
	$(CARGO) bench --locked -p virt-gateway-auth --bench auth -- --warm-up-time 1 --measurement-time 3
	bash bench/gateway/run.sh
	if [ "$(BENCH_OPERATOR)" != 0 ] && [ -x bench/operator/run.sh ]; then bash bench/operator/run.sh; fi
	@echo "figures: bench/RESULTS.md (gateway, links the others), bench/auth/RESULTS.md, bench/operator/RESULTS.md"

bench-quick:
	bash bench/gateway/run.sh --quick
	@echo "smoke figures: bench/results/quick/RESULTS.md (the full report is bench/RESULTS.md)"

## Container images (operator; gateway with the web app; web app for webAppImage) as OCI archives in
## target/images/, built without a Docker engine (buildah, FROM scratch, static binaries) and
## checked. Never part of `make test`: a cold run includes a static release build (images/README.md).
images:
	bash images/build.sh
