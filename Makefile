# Plugbus build, run and test targets. Needs only Go, make and git.
GO        ?= go
BIN       := bin
PLUGINS   := $(notdir $(wildcard plugins/*))
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run test test-short bench bench-smoke lint clean

all: build

## build: compile the coordinator and every plugin into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./coordinator/cmd/coordinator $(addprefix ./plugins/,$(PLUGINS))

## run: the demo: coordinator on the embedded NATS server with the bundled plugins
run: build
	./$(BIN)/coordinator serve --config examples/demo.yaml

## test: every test, with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: the benchmark suite, side by side in one run, written up in
## docs/benchmarks.md (raw runs in docs/benchmarks.txt, for benchstat).
## Long (about BENCH_COUNT x 2 minutes) and noisy: not for CI.
BENCH_COUNT ?= 5
BENCH_PKGS  := ./bus/ ./plugin-kit/ $(if $(wildcard internal/faults/*_test.go),./internal/faults/)
BENCH_FLAGS := -run '^$$' -bench . -benchmem -timeout 60m
bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -c
bench:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	$(GO) test $(BENCH_FLAGS) -count $(BENCH_COUNT) $(BENCH_PKGS) | tee $$out && \
	cat $$out > docs/benchmarks.txt && \
	$(GO) run ./internal/benchreport -cmd "make bench (BENCH_COUNT=$(BENCH_COUNT))" \
		-notes docs/benchmarks-notes.md -o docs/benchmarks.md docs/benchmarks.txt && \
	echo "wrote docs/benchmarks.md"

## bench-smoke: every benchmark once, briefly, to catch breakage (CI)
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 100x $(BENCH_PKGS)

## lint: formatting, go vet and staticcheck
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN)
