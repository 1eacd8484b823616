# Mizar — thin targets over scripts/. `make test` is all a fresh machine needs.
SHELL := /bin/bash
BPF_OUT := build/bpf
CLANG ?= clang
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -Wno-unused-function \
	-I bpf -I Sources/CMizarABI/include -I/usr/include/x86_64-linux-gnu
BPF_HEADERS := $(wildcard bpf/lib/*.h) Sources/CMizarABI/include/mizar_abi.h
BPF_PROGS := transit agent pass
BPF_OBJS := $(foreach p,$(BPF_PROGS),$(BPF_OUT)/$(p).xdp.o $(BPF_OUT)/$(p).tc.o)

.PHONY: all deps bpf build test bench demo demo-down clean
all: build

deps:
	@scripts/install-deps.sh

bpf: $(BPF_OBJS)

$(BPF_OUT)/%.xdp.o: bpf/%.bpf.c $(BPF_HEADERS)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -DMZ_HOOK_XDP -c $< -o $@

$(BPF_OUT)/%.tc.o: bpf/%.bpf.c $(BPF_HEADERS)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -DMZ_HOOK_TC -c $< -o $@

build: deps bpf
	swift build --build-tests

test: build
	scripts/run-tests.sh

bench: deps bpf
	swift build
	scripts/run-bench.sh
	bench/cluster.sh
	bench/service.sh
	scripts/run-bench-provisioning.sh

# etcd, the operator and a 3-host simulated cluster; two tenants; who reaches whom.
demo: deps bpf
	swift build
	scripts/demo.sh

demo-down:
	scripts/demo-down.sh

clean:
	rm -rf build .build
