# Plugbus build, run and test targets. Needs only Go, make and git.
GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(wildcard plugins/*))
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run test test-short bench bench-smoke fuzz-smoke lint browser wasm-tools wasm-c clean compose-build compose-up compose-down e2e

all: build

## build: compile the coordinator and every plugin into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./coordinator/cmd/coordinator $(foreach p,$(PLUGINS),./plugins/$(p)/cmd/$(p))

## run: the demo: coordinator on the embedded NATS server with the bundled plugins
run: build
	./$(BIN)/coordinator serve --config examples/demo.yaml

## browser: Debian's chromium package, which the dashboard's browser tests
## drive (coordinator/dashboard_browser_test.go), installed when missing.
## Where apt-get is not at hand or fails, it says so and the tests skip.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	sudo=; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing chromium for the dashboard's browser tests"; \
		{ $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; } || \
			echo "browser: could not install chromium; the dashboard's browser tests will skip"; \
	else \
		echo "browser: no apt-get here; install chromium by hand, or the dashboard's browser tests skip"; \
	fi

## wasm-tools: Debian's clang, lld and wasi-libc, which build the C plugin
## for WebAssembly (examples/wasm-c, tested by coordinator/internal/wasm/e2e),
## installed when missing. Where apt-get is not at hand or fails, it says so
## and the test skips.
WASI_PACKAGES := clang lld wasi-libc libclang-rt-dev-wasm32
wasm-tools:
	@if command -v clang >/dev/null 2>&1 && [ -e /usr/lib/wasm32-wasi/crt1-command.o ] && \
		ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then exit 0; fi; \
	sudo=; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
		echo "wasm-tools: installing $(WASI_PACKAGES) for the C WebAssembly plugin"; \
		{ $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(WASI_PACKAGES) >/dev/null; } || \
			echo "wasm-tools: could not install $(WASI_PACKAGES); the C plugin's test will skip"; \
	else \
		echo "wasm-tools: no apt-get here; install clang, lld and wasi-libc by hand, or the C plugin's test skips"; \
	fi

## wasm-c: the C plugin example, built for WebAssembly into bin/greet-c.wasm
wasm-c: wasm-tools
	@mkdir -p $(BIN)
	clang --target=wasm32-wasi --sysroot=/usr -O2 -o $(BIN)/greet-c.wasm examples/wasm-c/greet.c

## test: every test, with the race detector; then what skips under -race
## (a race-enabled .so rebuilds every dependency, for minutes) without it:
## the .so loader's tests and the conformance suite's .so row
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -timeout 20m ./coordinator/internal/soload/
	$(GO) test -count=1 -timeout 20m -run '^TestConformance$$/^so$$' ./internal/conformance/

## bench: the benchmark suite, side by side in one run: this module's
## benchmarks, then the alternatives in bench/ (a module of its own, so that
## go-plugin, gRPC and sdk-go's NATS binding stay out of go.mod), in
## BENCH_COUNT rounds so that a burst of load from elsewhere on the machine
## hits every variant alike. Writes docs/benchmarks.md, with the raw runs in
## docs/benchmarks.txt for benchstat. About 6 minutes a round: not for CI.
BENCH_COUNT ?= 5
BENCH_PKGS  := ./bus/ ./plugin-kit/ $(if $(shell grep -ls '^func Benchmark' internal/faults/*_test.go),./internal/faults/)
BENCH_FLAGS := -run '^$$' -bench . -benchmem -count 1 -timeout 30m
bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -c
bench:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for i in $$(seq $(BENCH_COUNT)); do \
		echo "bench: round $$i of $(BENCH_COUNT)" >&2; \
		$(GO) test $(BENCH_FLAGS) $(BENCH_PKGS) | tee -a $$out && \
		(cd bench && $(GO) test $(BENCH_FLAGS) ./...) | tee -a $$out || exit 1; \
	done; \
	cat $$out > docs/benchmarks.txt && \
	$(GO) run ./internal/benchreport -cmd "make bench (BENCH_COUNT=$(BENCH_COUNT))" -charts docs \
		-notes docs/benchmarks-notes.md -o docs/benchmarks.md docs/benchmarks.txt && \
	echo "wrote docs/benchmarks.md"

## fuzz-smoke: each fuzz target for FUZZTIME (the NATS decoder, the HTTP
## ingest, the rewrite of a WebAssembly module and plugin-kit's short read
## of an event line) on top of its seed
## corpus, to catch a crash on hostile input
## (CI; about 30 s). Longer: make fuzz-smoke FUZZTIME=10m
FUZZTIME ?= 5s
fuzz-smoke:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./bus/
	$(GO) test -run '^$$' -fuzz '^FuzzIngest$$' -fuzztime $(FUZZTIME) ./coordinator/internal/api/
	$(GO) test -run '^$$' -fuzz '^FuzzInstrument$$' -fuzztime $(FUZZTIME) ./coordinator/internal/wasm/
	$(GO) test -run '^$$' -fuzz '^FuzzScanIn$$' -fuzztime $(FUZZTIME) ./internal/stdioproto/

## bench-smoke: every benchmark, a few iterations each (one in bench/, whose
## iterations start processes), and bench/'s tests, to catch breakage (CI;
## about 25 s once the modules are downloaded and built)
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 100x $(BENCH_PKGS)
	cd bench && $(GO) test -short -bench . -benchtime 1x ./...

## lint: formatting, go vet and staticcheck, here and in bench/
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd bench && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

## compose-build: static binaries (CGO_ENABLED=0) for the compose images in
## compose/build: the coordinator, nats-server (from the nats-server/v2
## module this repository already requires), the bundled plugins (every
## main package under plugins/) and the ledger plugin of the fault tests
COMPOSE      ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_FILE := compose/docker-compose.yml
compose-build:
	@mkdir -p compose/build/tmp && chmod 1777 compose/build/tmp
	CGO_ENABLED=0 $(GO) build -o compose/build/bin/ ./coordinator/cmd/coordinator \
		$$($(GO) list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./plugins/...) \
		./internal/faults/testdata/ledger github.com/nats-io/nats-server/v2

## compose-up: the compose deployment: 3 NATS nodes, 2 coordinators, the plugins
compose-up: compose-build
	$(COMPOSE) -f $(COMPOSE_FILE) up -d --build
	@echo "coordinators: http://127.0.0.1:8091 and http://127.0.0.1:8092 (token: compose-http-token)"

## compose-down: stop the compose deployment and remove its volumes
compose-down:
	$(COMPOSE) -f $(COMPOSE_FILE) down -v --remove-orphans

## e2e: the compose deployment under faults and a partition (needs a Docker
## engine; .ci/run skips it when none answers)
e2e: compose-build
	PLUGBUS_E2E=1 COMPOSE="$(COMPOSE)" $(GO) test -count=1 -v -timeout 14m ./internal/e2e/

clean:
	rm -rf $(BIN) compose/build
