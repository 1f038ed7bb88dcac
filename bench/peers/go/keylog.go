package main

import (
	"fmt"
	"math/bits"
	"syscall"
	"unsafe"
)

// keyLog records every key a walk returns, for the JSON "distinct" field.
//
// Choice: the log lives in an anonymous mmap (MAP_NORESERVE), outside the Go
// heap, so the study's -mem figures (runtime.MemStats Alloc, HeapAlloc,
// TotalAlloc, Sys, NumGC) are not changed by the bookkeeping at all; they show
// only what the study's loop and cilium/ebpf allocate. Its capacity is
// reserved up front (max_entries keys; it grows by remapping if a walk ever
// returns more), and pages are touched only as keys are written, so:
//   - the walk's timed section includes a 4-byte copy per key returned and the
//     page faults on first touch of the log (about one per 1024 keys);
//   - peakRss (read right after the walk) includes 4 bytes per key returned.
//
// Distinct keys are counted after the timer stops, with a bitmap over
// 0..maxKey, also mmapped (at most 512 MiB of address space for arbitrary u32
// keys; only the touched pages become resident), then released.
type keyLog struct {
	mem  []byte
	keys []uint32 // len = keys recorded, backed by mem
	max  uint32
	err  error
}

func mmapAnon(size int) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %v", size, err)
	}
	return b, nil
}

func newKeyLog(capacity int) (*keyLog, error) {
	if capacity < 4096 {
		capacity = 4096
	}
	mem, err := mmapAnon(capacity * 4)
	if err != nil {
		return nil, err
	}
	return &keyLog{mem: mem, keys: unsafe.Slice((*uint32)(unsafe.Pointer(&mem[0])), capacity)[:0]}, nil
}

// grow makes room for at least n more keys (rare: more keys than max_entries).
func (l *keyLog) grow(n int) bool {
	if l.err != nil {
		return false
	}
	newCap := 2 * cap(l.keys)
	for newCap-len(l.keys) < n {
		newCap *= 2
	}
	mem, err := mmapAnon(newCap * 4)
	if err != nil {
		l.err = err
		return false
	}
	keys := unsafe.Slice((*uint32)(unsafe.Pointer(&mem[0])), newCap)[:len(l.keys)]
	copy(keys, l.keys)
	_ = syscall.Munmap(l.mem)
	l.mem, l.keys = mem, keys
	return true
}

func (l *keyLog) add(k uint32) {
	if len(l.keys) == cap(l.keys) && !l.grow(1) {
		return
	}
	l.keys = append(l.keys, k) // within capacity: never reallocates
	if k > l.max {
		l.max = k
	}
}

func (l *keyLog) append(ks []uint32) {
	if cap(l.keys)-len(l.keys) < len(ks) && !l.grow(len(ks)) {
		return
	}
	l.keys = append(l.keys, ks...) // within capacity: never reallocates
	for _, k := range ks {
		if k > l.max {
			l.max = k
		}
	}
}

// distinct counts the distinct recorded keys (after the walk).
func (l *keyLog) distinct() int {
	if len(l.keys) == 0 {
		return 0
	}
	words := int(l.max/64) + 1
	bm, err := mmapAnon(words * 8)
	if err != nil {
		return -1
	}
	defer syscall.Munmap(bm)
	set := unsafe.Slice((*uint64)(unsafe.Pointer(&bm[0])), words)
	for _, k := range l.keys {
		set[k/64] |= 1 << (k % 64)
	}
	n := 0
	for _, w := range set {
		n += bits.OnesCount64(w)
	}
	return n
}

func (l *keyLog) free() {
	if l.mem != nil {
		_ = syscall.Munmap(l.mem)
		l.mem, l.keys = nil, nil
	}
}
