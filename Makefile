# make check is what CI and laptops share: formatting, vet, lint and the
# race-enabled tests. See README.md.
GO          ?= go
GOLANGCI    ?= $(shell $(GO) env GOPATH)/bin/golangci-lint
LINT_VER    := v2.15.0
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build test race check fmt vet lint fuzz bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gatehouse ./cmd/gatehouse

test:
	$(GO) test ./...

race:
	$(GO) test -race ./...

fmt:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# vet covers the e2e suites and tools/dex, a module of its own.
vet:
	$(GO) vet -tags e2e ./...
	cd tools/dex && $(GO) vet ./...

$(GOLANGCI):
	$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(LINT_VER)

lint: $(GOLANGCI)
	$(GOLANGCI) run ./...

check: fmt vet lint race

# fuzz runs every fuzz target for FUZZTIME each (CI runs it too); see
# scripts/fuzz.sh for the one retry it allows.
FUZZTIME ?= 20s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

bench:
	bash bench/run.sh

clean:
	rm -rf bin

# dex builds the Dex OpenID provider that internal/testenv's e2e tests start
# (go test -tags e2e): Dex's server packages under a small main of our own
# (tools/dex/main.go; Dex's cmd/dex cannot be built from the module proxy).
# tools/dex is a module of its own, so Dex's dependencies stay out of the root
# module.
.PHONY: dex
dex: bin/dex

bin/dex: tools/dex/go.mod tools/dex/go.sum $(wildcard tools/dex/*.go)
	cd tools/dex && $(GO) build -o ../../bin/dex .

# e2e runs the suites that drive real outside programs: Dex (built by the dex
# target) and headless Chromium (Debian's chromium package; install it with
# apt-get install chromium). A missing program fails these tests.
.PHONY: e2e
e2e: dex
	$(GO) test -count=1 -tags e2e ./...
