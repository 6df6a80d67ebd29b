# caddy-l4-srt — build, test and demo.
GO            ?= go
XCADDY_VERSION = v0.4.5
CADDY_VERSION  = v2.11.4
CADDY_L4       = github.com/mholt/caddy-l4@v0.1.2
DEMO          := .demo
# bash, for pipefail: the test log is teed, and a failure must still fail.
SHELL         := /bin/bash
XCADDY        := $(GO) run github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION)

.PHONY: demo test run build fuzz clean load load-kernel

## demo: build Caddy with the plugin, route real streams through it, show what went where
demo: build
	$(GO) build -o $(DEMO)/srt-backend ./internal/cmd/srt-backend
	$(GO) run ./internal/cmd/demo -caddy $(DEMO)/caddy -backend $(DEMO)/srt-backend -config examples/demo/Caddyfile -logs $(DEMO)

## build: Caddy with caddy-l4 and this plugin, via xcaddy, into .demo/caddy
build:
	mkdir -p $(DEMO)
	$(XCADDY) build $(CADDY_VERSION) --with $(CADDY_L4) --with github.com/srtroute/caddy-l4-srt@v0.0.0=. --output $(DEMO)/caddy

## load: the same SRT traffic direct, through caddy-l4's proxy handler and through the plugin;
## prints CPU per GB, delivery, retransmissions, RSS, connect times, idle-session memory and
## handshake rate per path (needs srt-tools, gcc, libsrt-gnutls-dev). LOADFLAGS passes flags,
## e.g. make load LOADFLAGS='-scenarios single -profile .demo/load/prof'
LOADFLAGS ?=
load: build $(DEMO)/srtcaller
	$(GO) run ./internal/cmd/loadharness -caddy $(DEMO)/caddy -srtcaller $(DEMO)/srtcaller -logs $(DEMO)/load $(LOADFLAGS)

## load-kernel: (root; Linux 6.6+ for the ebpf path) in network namespaces, in one run: one
## ~100 Mbit/s libsrt stream direct, through caddy-l4's proxy handler, the socket path (batched
## and not) and the ebpf path: CPU per GB (proxy, whole path), libsrt's RTT, the delay each adds
## per packet (probes carrying their send time); then the cost per packet beside 10, 1,000 and
## 10,000 idle sessions on each path forced. About 25 minutes. KERNELFLAGS passes environment,
## e.g. make load-kernel KERNELFLAGS='SRT_EBPF_MEASURE_ROUNDS=1 SRT_EBPF_MEASURE_SESSIONS=10,1000'
KERNELFLAGS ?=
load-kernel:
	@mkdir -p $(DEMO); set -o pipefail; \
	env SRT_EBPF_MEASURE=1 SRT_PRIVILEGED=required $(KERNELFLAGS) $(GO) test -count=1 -v -timeout 90m \
		-run 'TestEBPFMeasure$$|TestEBPFMeasureSessions$$' ./srthandler/ > $(DEMO)/load-kernel.log 2>&1 || { \
		tail -50 $(DEMO)/load-kernel.log; exit 1; }; \
	grep -v '^{"level"' $(DEMO)/load-kernel.log | grep -A40 -E '^ +ebpf_measure_linux_test.go:[0-9]+: *$$'; \
	echo "whole log: $(DEMO)/load-kernel.log"

$(DEMO)/srtcaller: internal/testpeer/libsrt/srtcaller.c
	mkdir -p $(DEMO)
	gcc -O2 -Wall -o $@ $< $$(pkg-config --cflags --libs srt-gnutls 2>/dev/null || echo -lsrt-gnutls)

## test: everything CI runs (interop tests skip when srt-tools/ffmpeg are missing, unless SRT_INTEROP=required)
test:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	@mkdir -p $(DEMO); set -o pipefail; $(INTEROP_CHECK); \
	$(GO) test -race -count=1 -timeout 20m ./... 2>&1 | tee $(DEMO)/test.log || { \
		echo; echo "== what failed (whole log: $(DEMO)/test.log) =="; \
		grep -v '^{"level"' $(DEMO)/test.log | grep -E -A15 -- '--- FAIL|^panic:|DATA RACE|^FAIL' | head -200; \
		echo; echo "$$interop"; exit 1; }; \
	echo; echo "$$interop"

# INTEROP_CHECK sets $$interop to one line saying whether the libsrt interop tests
# ran. It looks for what internal/testpeer looks for (a test skips without it, or
# fails under SRT_INTEROP=required): srt-live-transmit, ffmpeg, gcc, libsrt's headers.
INTEROP_CHECK = missing=; \
	for t in srt-live-transmit ffmpeg gcc; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	pkg-config --exists srt-gnutls 2>/dev/null || pkg-config --exists srt 2>/dev/null || \
		test -f /usr/include/srt/srt.h || missing="$$missing libsrt-headers"; \
	if [ -z "$$missing" ]; then interop="libsrt interop tests: ran"; \
	elif [ "$$SRT_INTEROP" = required ]; then interop="libsrt interop tests: FAILED, missing:$$missing (SRT_INTEROP=required)"; \
	else interop="libsrt interop tests: SKIPPED, missing:$$missing (apt-get install -y srt-tools ffmpeg libsrt-gnutls-dev)"; fi

## run: Caddy with the plugin (built by xcaddy) on xcaddy.json: proxy on udp/:10080, admin API on
## localhost:2019, every stream to a local srt-backend on 127.0.0.1:10001, which this starts too.
## (xcaddy's own `run` cannot fetch a module that is not published yet, hence build, then run.)
run: build
	$(GO) build -o $(DEMO)/srt-backend ./internal/cmd/srt-backend
	@$(DEMO)/srt-backend -name origin -listen 127.0.0.1:10001 -stats 127.0.0.1:10011 & \
	backend=$$!; trap 'kill $$backend' EXIT INT TERM; \
	$(DEMO)/caddy run --config xcaddy.json

## fuzz: run every fuzz target for FUZZTIME each
FUZZTIME ?= 30s
fuzz:
	@for pkg in ./internal/wire ./internal/streamid ./internal/cookie ./internal/handshake; do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf $(DEMO)
