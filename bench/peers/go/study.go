package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// result is the one JSON line every subcommand prints after the study's text.
type result struct {
	Impl     string  `json:"impl"`
	Method   string  `json:"method"`
	Entries  int     `json:"entries"`  // the count the loop reported
	Distinct int     `json:"distinct"` // distinct keys among all keys returned
	Seconds  float64 `json:"seconds"`  // wall time of the walk (or of the fill, for load) alone
	Syscalls int     `json:"syscalls"` // bpf(2) calls made by the walk, see each method
	PeakRss  int64   `json:"peakRss"`  // VmHWM in bytes, read right after the walk
}

func emit(r result) error {
	r.Impl = "go"
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

// printStats is the study's pkg/stats.PrintStats, verbatim in format.
func printStats(title string) {
	var memStats runtime.MemStats
	runtime.ReadMemStats(&memStats)

	fmt.Printf("----- %s -----\n", title)
	fmt.Printf("Alloc = %d\n", memStats.Alloc)
	fmt.Printf("HeapAlloc = %d\n", memStats.HeapAlloc)
	fmt.Printf("TotalAlloc = %d\n", memStats.TotalAlloc)
	fmt.Printf("Sys = %d\n", memStats.Sys)
	fmt.Printf("NumGC = %d\n", memStats.NumGC)
}

// peakRSS is the peak RSS of this process's own memory (VmHWM in /proc/self/status), in
// bytes. Not getrusage's Maxrss: execve keeps the largest RSS of the process before it (the
// parent that forked it, e.g. a Deno runtime), so it would report its parent's size.
func peakRSS() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(status), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			return kb * 1024
		}
	}
	return -1
}

// getMap replaces the study's bpf.GetMap (which read a map id from a file and
// called ebpf.NewMapFromID): the map comes from a bpffs pin, or from -id.
// It prints the study's "get from id:  N" line.
func getMap(pin string, id uint32) (*ebpf.Map, error) {
	var m *ebpf.Map
	var err error
	if pin != "" {
		m, err = ebpf.LoadPinnedMap(pin, nil)
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s: %v", pin, err)
		}
	} else {
		m, err = ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			return nil, fmt.Errorf("open map id %d: %v", id, err)
		}
	}
	info, err := m.Info()
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("map info: %v", err)
	}
	mid, ok := info.ID()
	if !ok {
		m.Close()
		return nil, errors.New("the kernel does not report map ids")
	}
	fmt.Println("get from id: ", mid)
	return m, nil
}

// checkU32Map refuses maps the study's u32/u32 loops cannot read.
func checkU32Map(m *ebpf.Map) error {
	switch m.Type() {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash:
		return fmt.Errorf("map type %v is per-CPU; the study's loops read plain u32 values", m.Type())
	}
	if m.KeySize() != 4 || m.ValueSize() != 4 {
		return fmt.Errorf("map has key/value sizes %d/%d; the study's loops read u32/u32 (4/4) only",
			m.KeySize(), m.ValueSize())
	}
	return nil
}

// load is the study's load/main.go plus bpf.LoadAndGetMap.
func load(obj string, maxEntries uint32, pin string, hold bool) error {
	var ctrlC chan os.Signal
	if hold {
		ctrlC = make(chan os.Signal, 1)
		signal.Notify(ctrlC, os.Interrupt, syscall.SIGTERM)
	}

	if pin != "" {
		// Fail before the (possibly long) fill rather than at Pin.
		if _, err := os.Lstat(pin); err == nil {
			return fmt.Errorf("pin %s: file exists", pin)
		}
	}

	fmt.Println("Load test program and map")
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		return fmt.Errorf("load %s: %v", obj, err)
	}
	ms, ok := spec.Maps["test_map"]
	if !ok {
		return fmt.Errorf("%s has no map named test_map", obj)
	}
	if maxEntries != 0 {
		ms.MaxEntries = maxEntries
	}
	// Kernels >= 5.11 account BPF memory to the cgroup; older ones need the
	// memlock rlimit lifted. An error here only matters on old kernels, where
	// map creation will then report it.
	_ = rlimit.RemoveMemlock()

	// The study loaded the whole object (map + XDP program) with bpf2go's
	// LoadXdpProgObjects; do the same, but only the map is needed, so fall
	// back to creating the map alone if the program does not load.
	var m *ebpf.Map
	coll, err := ebpf.NewCollection(spec)
	if err == nil {
		defer coll.Close()
		m = coll.Maps["test_map"]
	} else {
		m, err = ebpf.NewMap(ms)
		if err != nil {
			return fmt.Errorf("create test_map (max_entries %d): %v", ms.MaxEntries, err)
		}
		defer m.Close()
		fmt.Fprintf(os.Stderr, "study: note: program not loaded, created the map alone\n")
	}
	info, err := m.Info()
	if err != nil {
		return fmt.Errorf("map info: %v", err)
	}
	id, ok := info.ID()
	if !ok {
		return errors.New("the kernel does not report map ids")
	}
	fmt.Println("map id is ", id)

	fmt.Println("Prepare test data...")
	n := int(m.MaxEntries()) // the study: bpf.MAX_ENTRIES, the object's max_entries
	start := time.Now()
	v := uint32(0xdeadbeef)
	for i := 0; i < n; i++ {
		k := uint32(i)
		if err := m.Update(&k, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("Update key %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	fmt.Println("Finish preparing test data")

	if pin != "" {
		if err := m.Pin(pin); err != nil {
			return fmt.Errorf("pin %s: %v", pin, err)
		}
	}
	// load: entries = keys written; distinct = the same (keys 0..n-1 by
	// construction, not read back); syscalls = one BPF_MAP_UPDATE_ELEM per key.
	if err := emit(result{Method: "load", Entries: n, Distinct: n,
		Seconds: elapsed.Seconds(), Syscalls: n, PeakRss: peakRSS()}); err != nil {
		return err
	}
	if hold {
		<-ctrlC
		fmt.Println("Unload everything")
	}
	return nil
}

// normal is the study's normal/main.go loop.
func normal(m *ebpf.Map, mem bool) error {
	keys, err := newKeyLog(int(m.MaxEntries()) + 1)
	if err != nil {
		return err
	}
	defer keys.free()

	fmt.Println("Start to iterate bpf map")

	if mem {
		runtime.GC()
		printStats("init")
	}

	start := time.Now()
	var k, v uint32
	count := 0

	iter := m.Iterate()
	for iter.Next(&k, &v) {
		count++
		keys.add(k)
	}
	elapsed := time.Since(start)
	rss := peakRSS()
	if keys.err != nil {
		return keys.err
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("Iterate after %d entries: %v", count, err)
	}

	if mem {
		printStats("last")
	}

	fmt.Println("------------------------")
	fmt.Println("Finish iterating bpf map")
	fmt.Printf("Count %d entries\n", count)

	// syscalls: cilium/ebpf 0.9.1's MapIterator.Next issues one
	// BPF_MAP_GET_NEXT_KEY and one BPF_MAP_LOOKUP_ELEM per entry, plus the
	// final GET_NEXT_KEY that returns ENOENT: 2*entries+1. This is computed,
	// not counted; a concurrent delete would add calls.
	return emit(result{Method: "normal", Entries: count, Distinct: keys.distinct(),
		Seconds: elapsed.Seconds(), Syscalls: 2*count + 1, PeakRss: rss})
}

// batchDump runs a batch loop the way the study's batch/main.go framed it: the
// "Start"/"Finish" lines, the -mem blocks around the loop, the counts, then the
// JSON line. walk is the loop itself; it returns the entries it counted and the
// BatchLookup calls it made (one BPF_MAP_LOOKUP_BATCH each).
func batchDump(m *ebpf.Map, mem bool, method string,
	walk func(keys *keyLog) (count, calls int, err error)) error {
	keys, err := newKeyLog(int(m.MaxEntries()))
	if err != nil {
		return err
	}
	defer keys.free()

	fmt.Println("Start batch look up bpf map")

	if mem {
		runtime.GC()
		printStats("init")
	}

	start := time.Now()
	count, batchCount, err := walk(keys)
	elapsed := time.Since(start)
	rss := peakRSS()
	if err != nil {
		return err
	}
	if keys.err != nil {
		return keys.err
	}

	if mem {
		printStats("last")
	}

	fmt.Println("------------------------")
	fmt.Println("Finish batch look up bpf map")
	fmt.Printf("Count %d entries\n", count)
	fmt.Printf("Batch Count is %d\n", batchCount)

	return emit(result{Method: method, Entries: count, Distinct: keys.distinct(),
		Seconds: elapsed.Seconds(), Syscalls: batchCount, PeakRss: rss})
}

// batch is the study's batch/main.go loop, exactly as written: prev is a
// uint32 that is never advanced. cilium/ebpf 0.9.1 marshals the non-pointer
// prevKey (binary.Write, native endian) into a 4-byte in_batch buffer, so every
// call starts again at hash bucket 0 and returns the same first ~chunk entries.
func batch(m *ebpf.Map, mem bool) error {
	return batchDump(m, mem, "batch", func(keys *keyLog) (int, int, error) {
		batchCount := 0
		count := 0

		max := m.MaxEntries()
		const chunk uint32 = 4096
		chSize := int(max / chunk)

		kout := make([]uint32, chunk)
		vout := make([]uint32, chunk)
		var k uint32
		var prev uint32

		for i := 0; i < chSize; i++ {
			c, err := m.BatchLookup(prev, &k, kout, vout, nil)
			// The study panicked on any error. On its full 100M-entry map no call
			// reached the end of the table. On a map holding fewer entries than one
			// chunk, the walk from bucket 0 reaches the end and the library returns
			// ErrKeyNotExist together with a valid count; we count those entries and
			// keep looping (the loop runs chSize times, as the study's did). Any
			// other error ends the run (exit 1) instead of panicking.
			if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return count, batchCount, fmt.Errorf("BatchLookup call %d: %v", i+1, err)
			}
			count += c
			batchCount++
			keys.append(kout[:c])
		}
		return count, batchCount, nil
	})
}

// batchFixed is the study's batch loop with the cursor advanced: prevKey is
// nil for the first call, then the nextKeyOut of each call is fed back as the
// next call's prevKey, until the library returns ErrKeyNotExist (whose count
// is kept; that last call is counted too).
func batchFixed(m *ebpf.Map, mem bool, chunk uint32) error {
	return batchDump(m, mem, "batch-fixed", func(keys *keyLog) (int, int, error) {
		batchCount := 0
		count := 0

		kout := make([]uint32, chunk)
		vout := make([]uint32, chunk)
		var next, cursor uint32
		var prev interface{} // nil: start at the first bucket

		for {
			c, err := m.BatchLookup(prev, &next, kout, vout, nil)
			batchCount++
			if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return count, batchCount, fmt.Errorf("BatchLookup call %d: %v", batchCount, err)
			}
			count += c
			keys.append(kout[:c])
			if err != nil { // ErrKeyNotExist: the walk is complete
				return count, batchCount, nil
			}
			cursor = next
			prev = &cursor // *uint32: marshalled without allocating an interface box
		}
	})
}
