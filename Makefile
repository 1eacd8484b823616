# Mizar — thin targets over scripts/. `make test` is all a fresh machine needs.
SHELL := /bin/bash
BPF_OUT := build/bpf
CLANG ?= clang
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -Wno-unused-function \
	-I bpf -I Sources/CMizarABI/include -I/usr/include/x86_64-linux-gnu
BPF_HEADERS := $(wildcard bpf/lib/*.h) Sources/CMizarABI/include/mizar_abi.h
BPF_PROGS := transit agent pass
BPF_OBJS := $(foreach p,$(BPF_PROGS),$(BPF_OUT)/$(p).xdp.o $(BPF_OUT)/$(p).tc.o) \
	$(BPF_OUT)/transit.explain.xdp.o $(BPF_OUT)/agent.explain.xdp.o

.PHONY: all deps bpf build test bench demo demo-down install uninstall clean
all: build

deps:
	@scripts/install-deps.sh

bpf: $(BPF_OBJS)

$(BPF_OUT)/%.xdp.o: bpf/%.bpf.c $(BPF_HEADERS)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -DMZ_HOOK_XDP -c $< -o $@

# mizarctl trace's read-only build: the same logic, writing no table.
$(BPF_OUT)/%.explain.xdp.o: bpf/%.bpf.c $(BPF_HEADERS)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -DMZ_HOOK_XDP -DMZ_EXPLAIN -c $< -o $@

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
	scripts/run-bench-cni.sh
	scripts/run-bench-policy.sh

# The CNI plugin where runtimes look for it, and an example network
# configuration (kept if one is there already: it is the admin's to edit).
# DESTDIR stages the files elsewhere.
CNI_BIN_DIR ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
install:
	swift build -c release --product mizar-cni
	install -D -m 0755 "$$(swift build -c release --show-bin-path)/mizar-cni" "$(DESTDIR)$(CNI_BIN_DIR)/mizar-cni"
	strip "$(DESTDIR)$(CNI_BIN_DIR)/mizar-cni"
	@if [ -e "$(DESTDIR)$(CNI_CONF_DIR)/10-mizar.conflist" ]; then \
		echo "kept $(DESTDIR)$(CNI_CONF_DIR)/10-mizar.conflist (example: deploy/cni/10-mizar.conflist)"; \
	else \
		install -D -m 0644 deploy/cni/10-mizar.conflist "$(DESTDIR)$(CNI_CONF_DIR)/10-mizar.conflist"; \
	fi
	@echo "installed $(DESTDIR)$(CNI_BIN_DIR)/mizar-cni; edit vpc and subnet in $(DESTDIR)$(CNI_CONF_DIR)/10-mizar.conflist"

uninstall:
	rm -f "$(DESTDIR)$(CNI_BIN_DIR)/mizar-cni"
	@echo "left $(DESTDIR)$(CNI_CONF_DIR)/10-mizar.conflist in place (remove it by hand if no longer wanted)"

# etcd, the operator and a 3-host simulated cluster; two tenants; who reaches whom.
demo: deps bpf
	swift build
	scripts/demo.sh

demo-down:
	scripts/demo-down.sh

clean:
	rm -rf build .build
