# shopbus build. Every tool runs through `go tool` (buf from its own modfile,
# tools/buf.mod) or the local node_modules: nothing is installed globally.
BUF := go tool -modfile=tools/buf.mod buf
GO_FILES = $(shell git ls-files --cached --others --exclude-standard '*.go')

.PHONY: all test template-test demo ts-example generate checkgenerate lint breaking bench fuzz protodeps ci

all: generate lint test

## test: the whole test suite, with the race detector (needs PostgreSQL on
## DATABASE_URL). The chaos suite runs last, verbosely, so its summary line
## ("chaos: orders=… lost=0 doubled=0 oversold=0") is printed.
test: protodeps
	go test -race -count=1 $$(go list ./... | grep -v /internal/chaos)
	go test -race -count=1 -v -run Chaos ./internal/chaos

## template-test: `shopbus new service demo/widget` into a scratch copy of
## the repository, then make generate, make lint and its tests there (CI).
template-test: protodeps node_modules/.package-lock.json
	go test -count=1 -timeout 40m -run TestGenerate -v ./internal/newservice -newservice.full

## demo: the main job, everything in one process (see README).
demo:
	go run ./cmd/shopbus dev

## ts-example: run the TypeScript client against a fresh shopbus dev.
ts-example: node_modules/.package-lock.json
	./scripts/ts-example.sh

## bench: the benchmarks recorded in docs/benchmarks.md.
bench:
	go test -run='^$$' -bench=. -benchmem ./internal/event/

## fuzz: fuzz event decoding for FUZZTIME; the seed corpus runs in `make test`.
FUZZTIME ?= 30s
fuzz:
	go test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./internal/event/

## generate: regenerate gen/ (Go, Connect, TypeScript), the JSON Schemas and
## catalog.json in event-contracts/, and the event catalog's pages in docs/catalog/.
generate: protodeps node_modules/.package-lock.json
	$(BUF) generate
	go run ./tools/contractgen

## checkgenerate: fail when regenerating changes anything committed.
checkgenerate: generate
	@status=$$(git status --porcelain -- gen event-contracts docs/catalog); \
	if [ -n "$$status" ]; then \
		echo "checkgenerate: generated files differ from what is committed; run make generate and commit:"; \
		echo "$$status"; exit 1; \
	fi

## lint: gofmt, go vet, buf lint, buf format.
lint: protodeps
	@unformatted=$$(gofmt -l $(GO_FILES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted:"; echo "$$unformatted"; exit 1; fi
	go vet ./...
	$(BUF) lint
	$(BUF) format -d --exit-code

## breaking: buf breaking against the previous commit (BASE=<rev> to choose another).
BASE ?= HEAD~1
breaking: protodeps
	./scripts/breaking.sh $(BASE)

protodeps:
	./scripts/protodeps.sh

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

## ci: what .ci/run runs.
ci: lint checkgenerate breaking test ts-example
