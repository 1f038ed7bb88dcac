# deno-bpf-batch: two commands do everything on a fresh Debian/Ubuntu machine, as root:
#   sudo make demo   install what is missing, build the BPF objects, run the experiment
#   sudo make test   install what is missing, build, run the test suite
#   sudo make kernels  the kernel matrix: this kernel and Debian 12's 6.1 (under QEMU), side by side
#   sudo make peers  build the references compare --peers runs: C (libbpf), the Go study
#                    (cilium/ebpf 0.9.1, from Debian, built offline) and node_bpf (optional)
# ENTRIES=N sets the demo's map size (default 1,048,576; the study's is 104,857,600).

APT_PACKAGES := clang llvm libbpf-dev bpftool tmux
# What the references need beyond that: Go and the study's library (Node and npm, for node_bpf,
# are installed only when absent: a machine's own Node is kept).
PEER_APT_PACKAGES := golang-go golang-github-cilium-ebpf-dev golang-golang-x-sys-dev
DENO_VERSION := 2.9
ENTRIES      ?= 1048576
DENO         ?= deno

.DEFAULT_GOAL := demo
.PHONY: setup build peers peers-setup demo test clean kernels

include bpf.mk

## setup: install the apt packages and deno when absent, mount bpffs
setup:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(DENO) >/dev/null 2>&1 || { \
		command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }; \
		echo "installing deno $(DENO_VERSION) from npm"; npm install -g --silent deno@$(DENO_VERSION); }
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || \
		{ echo "cannot mount bpffs at /sys/fs/bpf: run as root" >&2; exit 1; }

## build: the BPF objects in build/, and the npm packages the scripts import, cached
build: setup
	@$(MAKE) --no-print-directory bpf-build
	@$(DENO) install --quiet

## peers: the references of bench/peers/ in build/peers/ (node_bpf may fail: it says why)
peers: build peers-setup
	@$(MAKE) --no-print-directory -C bench/peers/c
	@$(MAKE) --no-print-directory -C bench/peers/go
	@$(MAKE) --no-print-directory -C bench/peers/node

peers-setup:
	@missing=""; for p in $(PEER_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## demo: the experiment at ENTRIES entries
demo: build
	$(DENO) task demo --entries $(ENTRIES)

## test: the test suite against the real kernel (BPF tests may not skip), references included
test: peers
	REQUIRE_BPF=1 $(DENO) task test

## kernels: the kernel matrix: the probes, the demo at 100,000 entries, dump, maps and the smoke
##          tests on this kernel and on Debian 12's own 6.1, booted under QEMU (TCG, scripts/kernels/)
kernels: build
	$(DENO) run --allow-all scripts/kernels.ts

clean: bpf-clean
	rm -rf build/peers
	@$(MAKE) --no-print-directory -C bench/peers/node clean
