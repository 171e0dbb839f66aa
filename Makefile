# Skein: make demo (the main job on a local stack), make test (unit + integration tests).
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TEMPORAL_CLI_VERSION := v1.5.1

.PHONY: all build tools postgres test test-long test-chaos test-unit demo demo-oracle up down bench bench-cdc bench-full bench-tables bench-verify clean help

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/skein and bin/skein-worker
	$(GO) build -o $(BIN)/skein ./starter
	$(GO) build -o $(BIN)/skein-worker ./worker

tools: $(BIN)/temporal ## build the pinned temporal CLI (dev server) into bin/

$(BIN)/temporal:
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

postgres: ## make sure PostgreSQL server binaries are installed (apt-get when root)
	@deployments/dev/ensure-postgres.sh

test: tools postgres ## unit and integration tests (real PostgreSQL clusters, real Temporal dev server; TEST_PARALLEL integration tests at once, default 3)
	$(GO) test -count=1 -timeout 50m -parallel $${TEST_PARALLEL:-3} ./...

test-long: tools postgres ## the long tests: a 2 GB transaction and 1,000 MiB values through load and apply (run before resolving change-apply work)
	SKEIN_TEST_LONG=1 $(GO) test -count=1 -timeout 90m -run 'TestLong' -v ./tests/integration/

test-chaos: tools postgres ## the chaos suite: SKEIN_CHAOS_FAULTS (50) faults while pgbench writes (SKEIN_CHAOS_SEED repeats a run)
	SKEIN_CHAOS_FAULTS=$${SKEIN_CHAOS_FAULTS:-50} SKEIN_CHAOS_SCALE=$${SKEIN_CHAOS_SCALE:-2} SKEIN_CHAOS_LOAD_ROWS_PER_SECOND=$${SKEIN_CHAOS_LOAD_ROWS_PER_SECOND:-15000} \
	  $(GO) test -count=1 -timeout 60m -run 'TestChaos$$' -v ./tests/integration/ | grep -E '^(chaos:|fault|kill|restart|reset|stall|---|ok|FAIL|PASS)|Error|seed'; exit $${PIPESTATUS[0]}

test-unit: ## unit tests only (no servers)
	$(GO) test -count=1 -short ./...

demo: build tools postgres ## local stack + sample database + a task synced end to end, compared row by row (DEST=oracle: into IvorySQL's Oracle-mode port)
	deployments/dev/demo.sh

demo-oracle: ## make demo into an Oracle-mode IvorySQL (the stand-in for PolarDB-O)
	$(MAKE) demo DEST=oracle

up: build tools postgres ## Temporal dev server + worker, for using bin/skein by hand
	deployments/dev/up.sh

down: ## stop everything make up / make demo started
	deployments/dev/down.sh

bench: bench-cdc bench-full bench-tables bench-verify ## benchmarks (separate from tests): each runs Skein and its anchors alternately BENCH_RUNS times (default 3) and prints medians and ranges

bench-cdc: postgres ## change apply: catch-up of 1M changes (BENCH_CDC_TRANSACTIONS=N, 50 changes each) and lag at 1,000 tps (BENCH_LAG_TPS, BENCH_LAG_SECONDS), Skein vs a native subscription
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkCDC' -benchtime 1x -timeout 60m ./tests/bench/

bench-full: tools postgres ## full load of ~2.3 GB (BENCH_FULL_SCALE percent, BENCH_FULL_JOBS): Skein vs pgcopydb, pg_dump/pg_restore -j and bare parallel COPY
	@command -v pgcopydb >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgcopydb >/dev/null; } || echo "pgcopydb not installed: it is left out"
	$(GO) test -count=1 -run '^$$' -bench BenchmarkFullLoad -benchtime 1x -timeout 90m ./tests/bench/

bench-tables: tools postgres ## a task of 10,000 tables (BENCH_TABLES): schema + full + a minute of incremental, vs pg_dump -j/pg_restore -j and pgcopydb; history size, peak RSS
	@command -v pgcopydb >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgcopydb >/dev/null; } || echo "pgcopydb not installed: it is left out"
	$(GO) test -count=1 -run '^$$' -bench BenchmarkManyTables -benchtime 1x -timeout 90m ./tests/bench/

bench-verify: tools postgres ## verify --repair while a task streams 1,000 tps (BENCH_LAG_TPS, BENCH_LAG_SECONDS): lag with and without it, repair hold, latency alerts, source cost
	$(GO) test -count=1 -run '^$$' -bench BenchmarkVerifyLag -benchtime 1x -timeout 30m ./tests/bench/

clean: down
	rm -rf $(BIN) .dev
