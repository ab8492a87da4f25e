# spire-federation-operator

# Tools are built from Go modules pinned under hack/tools into bin/ (see hack/tools.sh).
TOOLS := hack/tools.sh
CONTROLLER_GEN = $(shell $(TOOLS) --path controller-gen)
GO_TEST_FLAGS ?= -timeout 45m
# The image: see docs/install.md (make image) and the Dockerfile.
IMAGE_NAME ?= ghcr.io/spirefed/spire-federation-operator
VERSION ?= $(shell awk '/^appVersion:/ { gsub(/"/, "", $$2); print $$2 }' charts/spire-federation-operator/Chart.yaml)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
CA_CERTIFICATES ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_ARCHIVE ?= bin/spire-federation-operator-$(VERSION).oci.tar
KUBECONFIG ?= $(HOME)/.kube/config

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=spire-federation-operator crd:maxDescLen=400 paths="./api/..." paths="./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	cp config/crd/bases/*.yaml charts/spire-federation-operator/crds/
	mkdir -p charts/spire-federation-operator/files && cp config/rbac/role.yaml charts/spire-federation-operator/files/role.yaml

.PHONY: generate
generate: ## Generate deepcopy functions.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: tools
tools: ## Build every tool the tests and the lab need (a warm run rebuilds nothing).
	$(TOOLS)

.PHONY: test
test: tools generate manifests fmt vet ## Run all tests against real API servers and components, then a short run of each fuzz target.
	go test $(GO_TEST_FLAGS) ./...
	go -C hack/image vet ./... && go -C hack/image test ./...
	go -C hack/promrules vet ./... && go -C hack/promrules test -count=1 ./...
	$(call run-fuzz,$(FUZZTIME_SHORT))

# Packages whose tests start no process (no API server, no SPIRE): the pure
# planner, mesh status, diff, schedule and parsers, and the in-process Helm
# chart source. They run in seconds.
UNIT_PACKAGES := ./internal/apply/... ./internal/bundle/... ./internal/mesh/... ./internal/meshintegration/... ./internal/metrics/... \
	./internal/plan/... ./internal/spirehelm/... ./internal/status/... ./internal/zones/...

.PHONY: test-unit
test-unit: fmt vet ## Run only the tests that start no process (seconds, no tools needed).
	go test $(UNIT_PACKAGES)

# Fuzzing: every parser of outside input, one -fuzz target per go test.
# Seeds are in testdata/fuzz/<target>; plain go test runs them.
FUZZ_TARGETS := internal/bundle:FuzzParseSPIFFE internal/bundle:FuzzParseX509Authorities internal/bundle:FuzzCheckRedirect \
	internal/bundle:FuzzValidTrustDomain internal/zones:FuzzRestConfigFromKubeconfig internal/meshintegration:FuzzJudgeIstioInstall
FUZZTIME ?= 30s
FUZZTIME_SHORT ?= 6s

define run-fuzz
	@for target in $(FUZZ_TARGETS); do \
		pkg=$${target%%:*}; name=$${target##*:}; \
		echo "fuzz: $$name for $(1)"; \
		go test ./$$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(1) || exit 1; \
	done
endef

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s); new failing inputs land in testdata/fuzz.
	$(call run-fuzz,$(FUZZTIME))

.PHONY: demo
demo: tools ## Run the local multi-zone lab (broker.example and stockmarket.example) until Ctrl-C.
	go run ./test/lab/demo

.PHONY: demo-down
demo-down: ## Stop a lab started with make demo (from another shell).
	@if [ -f bin/demo/pid ]; then kill -TERM "$$(cat bin/demo/pid)" && echo "lab stopping"; else echo "no lab running"; fi

# Zones of the scale benchmark (full meshes on the suite's three zone API
# servers) and rotations measured per size.
BENCH_ZONES ?= 10,50,200
BENCH_ROTATIONS ?= 10
# The operator the scale benchmark measures: process (main.go's binary, its
# own CPU and peak RSS) or empty (the test process's operator).
BENCH_OPERATOR ?= process

.PHONY: bench
bench: tools ## Run the benchmarks: planner, propagation, scale (10, 50, 200 zones), and the lab's rotation and join bench (figures in the README).
	go test ./internal/plan -run '^$$' -bench Compute -benchtime 3x
	go test ./controllers -run '^$$' -bench Propagation -benchtime 10x
	SPIREFED_BENCH_DEFAULT_INTERVALS=1 SPIREFED_BENCH_ZONES=$(BENCH_ZONES) SPIREFED_BENCH_ROTATIONS=$(BENCH_ROTATIONS) SPIREFED_BENCH_OPERATOR=$(BENCH_OPERATOR) \
		go test ./controllers -run '^$$' -bench Scale -benchtime 1x -timeout 90m
	go run ./test/lab/bench -rotations 10 -joins 3

##@ Build and run

.PHONY: build
build: generate manifests fmt vet ## Build the operator binary into bin/.
	go build -o bin/spire-federation-operator .

.PHONY: image
image: ## Build the operator's image without Docker into $(IMAGE_ARCHIVE) (OCI archive for docker load / crane push).
	go -C hack/image run . -repo "$(CURDIR)" -out "$(abspath $(IMAGE_ARCHIVE))" -name "$(IMAGE_NAME)" -version "$(VERSION)" \
		-revision "$(REVISION)" -source-date-epoch "$(SOURCE_DATE_EPOCH)" -ca-certificates "$(CA_CERTIFICATES)"

.PHONY: install
install: manifests ## Install the CRDs into the cluster of $KUBECONFIG.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs (and every ZoneTrustDomain and FederationMesh) from the cluster.
	kubectl delete -k config/crd

.PHONY: run
run: generate manifests fmt vet ## Run the operator against the cluster of $KUBECONFIG.
	go run . --kubeconfig=$(KUBECONFIG) --namespace=$${NAMESPACE:-spirefed-system}

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-12s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
