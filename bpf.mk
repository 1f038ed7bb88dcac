# bpf.mk: builds the BPF objects. `include bpf.mk` from the top-level Makefile,
# or run standalone: `make -f bpf.mk bpf-build`.
# Outputs (build/ is not tracked):
#   build/vmlinux.h        generated from the running kernel's BTF
#   build/test_map.bpf.o   the study's object: test_map (HASH u32->u32, 104857600 entries) + xdp_prog
#   build/dump_iter.bpf.o  iter/bpf_map_elem program dump_map (raw key+value records)
#   build/snapshot.bpf.o   syscall program snapshot (map walk into mmapable arrays, ffi/snapshot.ts)
#   build/churn_writer.bpf.o  syscall program churn (inserts, deletes, rewrites keys; ffi/churn.ts)
#   build/btf_types.bpf.o  maps only, keys and values of every BTF kind (tests of ffi/btf/)

# Keep the includer's default goal: the rules below must not become it.
_bpf_saved_default_goal := $(.DEFAULT_GOAL)

BPF_CLANG       ?= clang
BPFTOOL         ?= bpftool
BPF_ARCH        ?= x86
BPF_VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_CFLAGS      ?= -O2 -g -Wall
BPF_BUILD_DIR   := build

BPF_OBJS := build/test_map.bpf.o build/dump_iter.bpf.o build/map_count.bpf.o build/snapshot.bpf.o build/churn_writer.bpf.o build/btf_types.bpf.o

.PHONY: bpf-build bpf-clean

bpf-build: $(BPF_OBJS)

$(BPF_BUILD_DIR)/vmlinux.h:
	@mkdir -p $(@D)
	$(BPFTOOL) btf dump file $(BPF_VMLINUX_BTF) format c > $@.tmp
	mv $@.tmp $@

$(BPF_BUILD_DIR)/%.bpf.o: bpf/%.bpf.c $(BPF_BUILD_DIR)/vmlinux.h
	@mkdir -p $(@D)
	$(BPF_CLANG) $(BPF_CFLAGS) -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -I $(BPF_BUILD_DIR) -c $< -o $@

bpf-clean:
	rm -rf $(BPF_BUILD_DIR)

ifeq ($(notdir $(firstword $(MAKEFILE_LIST))),bpf.mk)
.DEFAULT_GOAL := bpf-build
else
.DEFAULT_GOAL := $(_bpf_saved_default_goal)
endif
