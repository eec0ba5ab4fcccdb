# fedrec: make help lists the targets.
GO ?= go
BIN := fedrec

.PHONY: help build web browser browser-measure test bench bench-cluster sim sim-ml fuzz fault-soak vet clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build the fedrec binary
	$(GO) build -o $(BIN) ./cmd/fedrec

web: ## build the browser SDK into client/web: fedrec.wasm and the Go release's wasm_exec.js, beside fedrec.js
	GOOS=js GOARCH=wasm $(GO) build -trimpath -o client/web/fedrec.wasm ./client/web
	cp "$$($(GO) env GOROOT)/lib/wasm/wasm_exec.js" client/web/wasm_exec.js

browser: ## the browser tests: the example shop and dashboard in headless Chromium against a node process
	$(GO) test -count=1 -run TestShopAndDashboard -v ./client/web/browsertest

browser-measure: ## in Chromium: page start to first recommendation (10,000 items), the local step vs native
	$(GO) test -count=1 -run 'TestFirstRecommendation|TestLocalStepInBrowser' -v ./client/web/browsertest -measure

test: ## run the test suite (what CI runs)
	bash .ci/run

vet: ## go vet and gofmt
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)

bench: ## benchmarks: one client's local step, one aggregation step, and the rest
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2x ./...

bench-cluster: build ## round latency, bytes per client and failover time on a local 3-node cluster
	./$(BIN) bench --clients 100,500

sim: build ## a simulation on the built-in synthetic data
	./$(BIN) sim --out out/synthetic

sim-ml: build ## a simulation on ml-latest-small from ../shared/data
	./$(BIN) sim --data ml-latest-small --data-dir ../shared/data --out out/ml-latest-small

fuzz: ## run every fuzz target for 30 s each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 30s $$pkg || exit 1; \
	  done; done

fault-soak: ## the fault tests' soak: 50 leader crashes in-process and 50 SIGKILLs, 500 synctest seeds
	FEDREC_FAULT_KILLS=50 FEDREC_SYNCTEST_SEEDS=500 $(GO) test -race -count=1 -timeout 30m -v \
	  -run '^(TestFaultKillLeaderEachPhase|TestSynctestFailover)$$' ./coordinator/
	FEDREC_FAULT_PROC_KILLS=50 $(GO) test -race -count=1 -timeout 60m -v \
	  -run '^TestFaultKillLeaderProcess$$' ./cmd/fedrec/

clean: ## remove build outputs
	rm -rf $(BIN) out client/web/fedrec.wasm client/web/wasm_exec.js
