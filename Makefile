# podlb build and test entry points. `make test` and `make demo` build
# everything they need, control-plane binaries included, on a fresh machine.

SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
K8S_BIN := $(BIN)/k8s
# The stamp names the exact inputs of the tool build; a change to any of them
# rebuilds the control-plane binaries, otherwise they are reused.
TOOLS_INPUTS := test/tools/go.mod test/tools/go.sum $(wildcard test/tools/*/main.go)
TOOLS_STAMP := $(K8S_BIN)/.stamp-$(shell cat $(TOOLS_INPUTS) | sha256sum | cut -c1-16)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/podlb/podlb/internal/version.Version=$(VERSION)
TEST_TIMEOUT ?= 60m
export PODLB_K8S_BIN := $(K8S_BIN)

.PHONY: all build image tools test unit lint docs demo bench soak clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The controller's OCI image, one manifest per platform, packed as an OCI
# image-layout archive. Nothing is pulled: the static binaries sit on an
# empty base with the machine's CA bundle and a passwd entry for UID 65532.
# Every timestamp is SOURCE_DATE_EPOCH (default: the commit time), so the
# same commit and toolchain give the same digest. Load it with
# `podman load -i bin/podlb-image.oci.tar`; docs/guide.md has more.
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_ARCHIVE ?= $(BIN)/podlb-image.oci.tar
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)

image:
	@set -e; for p in $(IMAGE_PLATFORMS); do \
		echo "building podlb-controller for $$p"; \
		CGO_ENABLED=0 GOOS=$${p%%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o $(BIN)/image/$${p//\//_}/podlb-controller ./cmd/podlb-controller; \
	done
	$(GO) run ./cmd/podlb-image --version '$(VERSION)' --revision '$(REVISION)' --created '$(SOURCE_DATE_EPOCH)' \
		--out $(IMAGE_ARCHIVE) $(foreach p,$(IMAGE_PLATFORMS),--binary $(p)=$(BIN)/image/$(subst /,_,$(p))/podlb-controller)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): $(TOOLS_INPUTS)
	@mkdir -p $(K8S_BIN)
	@echo "building kube-apiserver, kube-controller-manager, kube-scheduler and etcd from module source (a few minutes on first run)"
	cd test/tools && $(GO) build -o $(K8S_BIN)/ ./kube-apiserver ./kube-controller-manager ./kube-scheduler ./etcd
	@rm -f $(K8S_BIN)/.stamp-*
	@touch $@

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd test/tools && $(GO) vet ./...
	cd test/helm && $(GO) vet ./...

# Rewrites the generated reference sections of docs/guide.md (flags,
# annotation fields) from the code; a unit test fails until this is run.
docs:
	$(GO) run ./cmd/podlb-docs docs/guide.md

# Unit tests only: no control plane needed.
unit:
	$(GO) test -short ./...
	cd test/helm && $(GO) test ./...

# test/helm is a module of its own (Helm's library and its dependencies stay
# out of podlb's go.mod); it holds charts/podlb to the kustomize manifests.
test: tools lint build
	$(GO) test -timeout $(TEST_TIMEOUT) ./...
	cd test/helm && $(GO) test ./...

demo: tools build
	$(BIN)/podlb-sandbox $(DEMO_ARGS)

# Scale benchmarks against the local cluster, the emulators and the real
# controller binary; they print a table and never fail on timing. Flags go
# in BENCH_ARGS, e.g. BENCH_ARGS='-bench.clouds=aws -bench.scenarios=rollout'
# (all flags: go test ./test/bench -args -help). See BENCHMARKS.md.
BENCH_TIMEOUT ?= 150m
bench: tools build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout $(BENCH_TIMEOUT) ./test/bench -args $(BENCH_ARGS)

# Long loops that make test cannot afford: the gate stress test many times
# in a row with fresh seeds, the gated rollouts of both clouds, two
# clusters sharing one load balancer on each cloud, every TestChaos…
# scenario (leader failover and API server restart included) with more
# kills per rollout and a 60 s cloud outage, and the annotation fuzzers
# with many rounds each. Tune with SOAK_COUNT, PODLB_STRESS_ROUNDS,
# SOAK_CHAOS_COUNT, SOAK_CHAOS_KILLS and SOAK_FUZZ_ROUNDS (replay one fuzz
# run with PODLB_FUZZ_SEED, which the test logs).
SOAK_COUNT ?= 10
SOAK_CHAOS_COUNT ?= 3
SOAK_CHAOS_KILLS ?= 6
SOAK_FUZZ_ROUNDS ?= 60
SOAK_TIMEOUT ?= 180m
soak: tools build
	$(GO) test -count=$(SOAK_COUNT) -timeout $(SOAK_TIMEOUT) -run 'TestSafetyGateStress|TestGatedRolloutLosesNoRequest' ./test/e2e/aws
	$(GO) test -count=$(SOAK_COUNT) -timeout $(SOAK_TIMEOUT) -run 'TestGatedRolloutLosesNoRequest' ./test/e2e/gcp
	$(GO) test -count=$(SOAK_COUNT) -timeout $(SOAK_TIMEOUT) -run 'TestTwoClusters' ./test/e2e/twoclusters
	PODLB_CHAOS_LONG=1 PODLB_CHAOS_KILLS=$(SOAK_CHAOS_KILLS) PODLB_CHAOS_OUTAGE=60s \
		$(GO) test -count=$(SOAK_CHAOS_COUNT) -timeout $(SOAK_TIMEOUT) -run 'TestChaos' ./test/e2e/aws ./test/e2e/gcp
	PODLB_FUZZ_ROUNDS=$(SOAK_FUZZ_ROUNDS) $(GO) test -count=$(SOAK_COUNT) -timeout $(SOAK_TIMEOUT) -run 'TestFuzz' ./test/e2e/aws
	PODLB_FUZZ_ROUNDS=$(SOAK_FUZZ_ROUNDS) $(GO) test -count=$(SOAK_COUNT) -timeout $(SOAK_TIMEOUT) -run 'TestFuzz' ./test/e2e/gcp

clean:
	rm -rf $(BIN)
