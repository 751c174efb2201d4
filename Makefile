# Tapline: `make help` lists the targets. Every target works from a clean clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
# One target dir for every step of a run (demo, tests, bench share build outputs).
export CARGO_TARGET_DIR ?= $(CURDIR)/target
DEBUG_BIN := $(CARGO_TARGET_DIR)/debug
RELEASE_BIN := $(CARGO_TARGET_DIR)/release
DEMO_DIR := demo
BENCH_DIR := .tmp/bench
BENCH_ROWS ?= 1000000
# The largest export whose peak RSS `make bench` reports: about 2 GB of CSV (0.6 GB gzip).
BENCH_LARGE_ROWS ?= 8000000
BENCH_BAD_ROWS ?= 100000
FUZZ_DIR := .tmp/fuzz
FUZZ_SECONDS ?= 600
FUZZ_SEED ?= 1
DEMO_TIMEZONE ?= Asia/Kolkata
# The real local servers the suite runs against, started before and stopped after it.
WITH_SERVERS := tests/scripts/with-postgres.sh tests/scripts/with-moto.sh tests/scripts/with-fake-gcs.sh tests/scripts/with-bqemulator.sh
# Both builds (Lambda and Cloud Run) of the export loader and the API puller, and the relay's SQS
# and Pub/Sub adapters (with its Cloud Run binary) are built, linted and tested.
ALL_FEATURES := --features export-loader/cloud-run,webhook-relay/sqs,webhook-relay/pubsub,api-puller/cloud-run
# `make demo` builds only what it runs: the CLI with the SQLite warehouse, local files and Parquet
# (no cloud SDK, no HTTP client: its other features off) and the sample generator, in one cargo run.
DEMO_BUILD := -p tapline-cli -p tapline-sample-exports --bin tapline --bin tapline-sample-exports \
	--no-default-features --features tapline-cli/sqlite,tapline-cli/parquet,tapline-sample-exports/parquet
# When make started: `make demo` says how long the build and the demo took.
STARTED := $(shell date +%s)

.PHONY: help build demo test lint fmt bench bench-relay fuzz package clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## Build every crate (debug).
	$(CARGO) build --workspace --locked $(ALL_FEATURES)

demo: ## Build the CLI (SQLite and Parquet) and the sample generator, write sample CleverTap event exports (CSV and one Parquet day) and two profile exports to demo/exports, load them into demo/warehouse.sqlite, list the typed views (bi_*) and show BI queries on them (orders and revenue per day from bi_charged without a cast, the Parquet day, profile history, revenue per customer type at order time).
	$(CARGO) build --locked $(DEMO_BUILD)
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@$(DEBUG_BIN)/tapline-sample-exports demo --out $(DEMO_DIR)/exports | tail -n 3
	@$(DEBUG_BIN)/tapline-sample-exports profiles --out $(DEMO_DIR)/exports | head -n 2
	@# One more day of "Charged" events, as an Export Center Parquet export.
	@$(DEBUG_BIN)/tapline-sample-exports parquet --out $(DEMO_DIR)/parquet --date 2022-09-22 --rows 300 \
		--row-group-rows 100 >/dev/null && mv $(DEMO_DIR)/parquet/parquet/*.parquet $(DEMO_DIR)/exports/ \
		&& rm -rf $(DEMO_DIR)/parquet && echo "$$(ls $(DEMO_DIR)/exports/*.parquet)  300 rows (Parquet)"
	@# Exit code 2 is expected: the sample set has a corrupt file, which is quarantined by design.
	@$(DEBUG_BIN)/tapline load $(DEMO_DIR)/exports --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite \
		--timezone $(DEMO_TIMEZONE); code=$$?; \
		if [ $$code -ne 0 ] && [ $$code -ne 2 ]; then exit $$code; fi
	@echo; echo "Typed views for BI tools (numbers, booleans and times typed; the raw tables stay text):"; echo
	@$(DEBUG_BIN)/tapline query --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite \
		"SELECT group_concat(name, ', ') AS typed_views FROM (SELECT name FROM sqlite_master \
		 WHERE type = 'view' AND name LIKE 'bi\_%' ESCAPE '\' ORDER BY name)"
	@echo; echo "Orders and revenue per day (UTC), a typed query: SUM(event_props_amount) from bi_charged, no cast:"; echo
	@$(DEBUG_BIN)/tapline query --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite \
		"SELECT date(ts) AS day, count(*) AS orders, round(SUM(event_props_amount), 2) AS revenue \
		 FROM bi_charged GROUP BY day ORDER BY day"
	@echo; echo "Charged events loaded from the Parquet export (bi_charged):"; echo
	@$(DEBUG_BIN)/tapline query --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite \
		"SELECT count(*) AS rows, round(SUM(event_props_amount), 2) AS revenue \
		 FROM bi_charged WHERE _source_uri LIKE '%.parquet'"
	@echo; echo "Profiles that changed between the two profile exports (profiles_history, first 4 rows):"; echo
	@$(DEBUG_BIN)/tapline query --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite \
		"SELECT identity, valid_from, valid_to, customer_type FROM profiles_history \
		 WHERE identity IN (SELECT identity FROM profiles_history WHERE valid_to IS NOT NULL \
		                    ORDER BY identity LIMIT 2) ORDER BY identity, valid_from"
	@echo; echo "Revenue per customer type as it was when each order was placed (bi_events_with_profile, bi_order_placed):"; echo
	@$(DEBUG_BIN)/tapline query --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite \
		"SELECT coalesce(user_customer_type, '(no profile)') AS customer_type, count(*) AS orders, \
		        round(SUM(e.event_props_amount), 2) AS revenue \
		 FROM bi_events_with_profile w JOIN bi_order_placed e \
		   ON e._source_uri = w._source_uri AND e._source_line = w._source_line \
		 WHERE w.event_name = 'Order Placed' GROUP BY 1 ORDER BY 1"
	@echo; $(DEBUG_BIN)/tapline report --out $(DEMO_DIR)/report.html --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite \
		--timezone $(DEMO_TIMEZONE) --from 2022-09-18 --to 2022-09-23 >/dev/null \
		&& echo "Completeness report (events x days, rows per day, quarantined files): open $(DEMO_DIR)/report.html in a browser"
	@echo; echo "Explore: $(DEBUG_BIN)/tapline status --warehouse sqlite://$(DEMO_DIR)/warehouse.sqlite"
	@took=$$(( $$(date +%s) - $(STARTED) )); echo "make demo took $$((took / 60)) min $$((took % 60)) s (build and load)."

test: lint ## Run the whole suite (starts PostgreSQL 15, moto, fake-gcs-server and bqemulator on loopback, stops them after).
	$(CARGO) build --workspace --all-targets --locked $(ALL_FEATURES)
	@# cargo-lambda (PyPI, into .venv/) for the test that runs the Lambda under `cargo lambda watch`.
	@# Headless Chromium (Debian's package) for the report test.
	@export TAPLINE_TEST_CARGO_LAMBDA=$$(tests/scripts/ensure-cargo-lambda.sh --host-only) && \
	export TAPLINE_TEST_CHROMIUM=$$(tests/scripts/ensure-chromium.sh) && \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(WITH_SERVERS) $(CARGO) nextest run --workspace --locked --no-fail-fast $(ALL_FEATURES); \
	else \
		$(WITH_SERVERS) $(CARGO) test --workspace --locked --no-fail-fast $(ALL_FEATURES); \
	fi
	$(MAKE) infra-check

lint: ## cargo fmt --check, clippy with warnings as errors, no merge conflict markers in tracked files.
	@if git grep -n -E '^(<<<<<<<|>>>>>>>)( |$$)' -- . >/dev/null 2>&1; then \
		git grep -n -E '^(<<<<<<<|>>>>>>>)( |$$)' -- .; echo "lint: merge conflict markers above"; exit 1; fi
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked $(ALL_FEATURES) -- -D warnings

fmt: ## Format the code.
	$(CARGO) fmt --all

bench: ## Load a 1,000,000-row export into SQLite (with and without column-kind inference) and PostgreSQL; a stage breakdown (inflate, tokenise, validate, write) each next to its ceiling (gzip -dc, SQLite INSERT ... SELECT, PostgreSQL's server-side COPY FROM file); peak RSS at three export sizes, of hostile exports and of a 1,000,000-row Parquet export.
	@# The baseline without column-kind inference: the CLI with a bench-only feature and SQLite
	@# only (all it loads into), so that its fat-LTO link leaves out the cloud SDKs; release's
	@# settings and dependencies. Copied aside: the next build puts the full CLI back.
	$(CARGO) build --release --locked -p tapline-cli --no-default-features --features sqlite,bench-no-kind-inference
	@mkdir -p $(BENCH_DIR) && cp $(RELEASE_BIN)/tapline $(BENCH_DIR)/tapline-no-kinds
	@# The stage breakdown's binary runs the loader's own code, one stage per process.
	$(CARGO) build --release --locked -p tapline-cli -p tapline-sample-exports -p tapline-bench-stages
	@$(RELEASE_BIN)/tapline-sample-exports bench --out $(BENCH_DIR) --rows $(BENCH_ROWS) | tail -n 1
	@# Files of about 10 MB and BENCH_LARGE_ROWS rows (2 GB of CSV): peak memory must not grow
	@# with the file. run_bench.py deletes each once measured (the disk is tight).
	@rm -rf $(BENCH_DIR)/size-*
	@$(RELEASE_BIN)/tapline-sample-exports bench --out $(BENCH_DIR)/size-small --rows $$(( $(BENCH_ROWS) / 25 )) | tail -n 1
	@$(RELEASE_BIN)/tapline-sample-exports bench --out $(BENCH_DIR)/size-large --rows $(BENCH_LARGE_ROWS) | tail -n 1
	@# The same rows as a JSON-lines export (issue 21: the JSON load against gzip -dc of it).
	@rm -rf $(BENCH_DIR)/json && $(RELEASE_BIN)/tapline-sample-exports bench --format json --out $(BENCH_DIR)/json --rows $(BENCH_ROWS) | tail -n 1
	@# Hostile exports (issue 14): all-bad rows, a long JSON key over many leaves, a gzip bomb.
	@rm -rf $(BENCH_DIR)/hostile && mkdir -p $(BENCH_DIR)/hostile && $(RELEASE_BIN)/tapline-sample-exports hostile --out $(BENCH_DIR)/hostile \
		--bad-rows $(BENCH_BAD_ROWS) | grep '^case=' > $(BENCH_DIR)/hostile/cases.txt.tmp
	@mv $(BENCH_DIR)/hostile/cases.txt.tmp $(BENCH_DIR)/hostile/cases.txt
	@# Parquet (issue 18): the same rows in row groups of 100,000, 1,000,000 rows and a tenth.
	@rm -rf $(BENCH_DIR)/parquet && $(RELEASE_BIN)/tapline-sample-exports parquet --out $(BENCH_DIR)/parquet/large \
		--rows $$(( $(BENCH_ROWS) / 10 )) --row-group-rows 100_000 --bench-repeat 10
	@$(RELEASE_BIN)/tapline-sample-exports parquet --out $(BENCH_DIR)/parquet/small \
		--rows $$(( $(BENCH_ROWS) / 10 )) --row-group-rows 100_000 --bench-repeat 1
	@tests/scripts/with-postgres.sh python3 tests/bench/run_bench.py --tapline $(RELEASE_BIN)/tapline \
		--tapline-no-kinds $(BENCH_DIR)/tapline-no-kinds \
		--stages $(RELEASE_BIN)/tapline-bench-stages \
		--dir $(BENCH_DIR) --size-dirs $(BENCH_DIR)/size-small $(BENCH_DIR)/size-large \
		--hostile-dir $(BENCH_DIR)/hostile --generator $(RELEASE_BIN)/tapline-sample-exports \
		--json-dir $(BENCH_DIR)/json --parquet-dir $(BENCH_DIR)/parquet

bench-relay: ## Webhook relay under wrk for 30 s with its destinations down: requests/s, p50/p99, lost payloads (needs wrk).
	$(CARGO) build --release --locked -p tapline-cli
	tests/bench/relay_load.sh $(RELEASE_BIN)/tapline

fuzz: build ## Fuzz one export object's load path for FUZZ_SECONDS (600); fails on a panic or a case past 256 MiB of heap.
	$(CARGO) build --profile fuzz --locked -p tapline-fuzz
	@# The sample-export generator's demo files (from `make build`) join the documented shapes as seeds.
	@rm -rf $(FUZZ_DIR) && mkdir -p $(FUZZ_DIR)
	@$(DEBUG_BIN)/tapline-sample-exports demo --out $(FUZZ_DIR)/seeds >/dev/null
	$(CARGO_TARGET_DIR)/fuzz/tapline-fuzz --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) \
		--corpus $(FUZZ_DIR)/seeds --out $(FUZZ_DIR)

package: ## Build the Lambda zips (arm64, cargo-lambda): target/lambda-arm64/<function>/bootstrap.zip (Cloud Run: the Dockerfiles).
	@bin=$$(tests/scripts/ensure-cargo-lambda.sh) && PATH="$$bin:$$PATH" \
		$(CARGO) lambda build --release --arm64 --output-format zip \
		--lambda-dir $(CARGO_TARGET_DIR)/lambda-arm64 -p export-loader -p api-puller
	@# The relay's two functions, each with only its own feature: webhook-relay (function URL,
	@# the router on lambda_http) and webhook-relay-worker (SQS, lambda_runtime: no HTTP server).
	@bin=$$(tests/scripts/ensure-cargo-lambda.sh) && PATH="$$bin:$$PATH" \
		$(CARGO) lambda build --release --arm64 --output-format zip \
		--lambda-dir $(CARGO_TARGET_DIR)/lambda-arm64 -p webhook-relay --bin webhook-relay \
		--no-default-features --features lambda-endpoint
	@bin=$$(tests/scripts/ensure-cargo-lambda.sh) && PATH="$$bin:$$PATH" \
		$(CARGO) lambda build --release --arm64 --output-format zip \
		--lambda-dir $(CARGO_TARGET_DIR)/lambda-arm64 -p webhook-relay --bin webhook-relay-worker \
		--no-default-features --features lambda-worker
	@ls -l $(CARGO_TARGET_DIR)/lambda-arm64/*/bootstrap.zip

.PHONY: infra-check
infra-check: ## Offline Terraform checks: fmt, validate (AWS), checkov and provider-schema check (AWS, GCP), apply of the AWS example to moto.
	tests/scripts/infra-check.sh

clean: ## Remove build outputs, the demo and benchmark data.
	$(CARGO) clean
	rm -rf $(DEMO_DIR) .tmp
