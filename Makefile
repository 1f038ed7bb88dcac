# deno-bpf-batch: two commands do everything on a fresh Debian/Ubuntu machine, as root:
#   sudo make demo   install what is missing, build the BPF objects, run the experiment
#   sudo make test   install what is missing, build, run the test suite
# ENTRIES=N sets the demo's map size (default 1,048,576; the study's is 104,857,600).

APT_PACKAGES := clang llvm libbpf-dev bpftool
DENO_VERSION := 2.9
ENTRIES      ?= 1048576
DENO         ?= deno

.DEFAULT_GOAL := demo
.PHONY: setup build demo test clean

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

## build: the BPF objects in build/
build: setup
	@$(MAKE) --no-print-directory bpf-build

## demo: the experiment at ENTRIES entries
demo: build
	$(DENO) task demo --entries $(ENTRIES)

## test: the test suite against the real kernel (BPF tests may not skip)
test: build
	REQUIRE_BPF=1 $(DENO) task test

clean: bpf-clean
