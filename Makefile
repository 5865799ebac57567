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

## bench: the benchmark suite (long and noisy; not for CI)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./bus/ ./plugin-kit/

## bench-smoke: every benchmark once, briefly, to catch breakage
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 100x ./bus/ ./plugin-kit/

## lint: formatting, go vet and staticcheck
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf $(BIN)
