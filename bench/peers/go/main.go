// Command study reproduces the Go study (terassyi/bpf-batch-test, see
// /work/shared/seed-study.md) with the study's own library, cilium/ebpf 0.9.1.
//
//	study load   -pin PIN [-entries N] [-obj build/test_map.bpf.o] [-hold]
//	study normal -pin PIN | -id ID [-mem]
//	study batch  -pin PIN | -id ID [-mem]
//	study batch-fixed -pin PIN | -id ID [-mem] [-chunk 4096]
//
// Each subcommand prints the study's text, then exactly one JSON line:
//
//	{"impl":"go","method":"batch","entries":N,"distinct":N,"seconds":S,"syscalls":N,"peakRss":BYTES}
//
// Argument errors print one line "study: error: ..." and exit 2; runtime
// errors (missing pin, EPERM, kernel errors) print one line and exit 1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

const usageText = `usage: study COMMAND [flags]

commands (flags in Go flag style, e.g. -mem):
  load        -pin PIN [-entries N] [-obj build/test_map.bpf.o] | -hold
              create the study's test_map from the object, fill keys 0..max_entries-1
              with Map.Update one by one, pin it at PIN (-hold: no pin, wait for SIGINT)
  normal      -pin PIN | -id ID [-mem]   dump with Map.Iterate (GET_NEXT_KEY + LOOKUP_ELEM)
  batch       -pin PIN | -id ID [-mem]   the study's BatchLookup loop, as written (cursor never advanced)
  batch-fixed -pin PIN | -id ID [-mem] [-chunk 4096]
                                         BatchLookup with the cursor fed back, until ErrKeyNotExist

Each command prints the study's text, then one JSON line:
  {"impl":"go","method":...,"entries":N,"distinct":N,"seconds":S,"syscalls":N,"peakRss":BYTES}
`

// usageError is an argument error: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...interface{}) error {
	return usageError{fmt.Sprintf(format, a...)}
}

// errHelp: -h was asked for; usage went to stdout, exit 0.
var errHelp = errors.New("help")

func main() {
	err := run(os.Args[1:])
	switch {
	case err == nil:
		return
	case errors.Is(err, errHelp):
		return
	}
	fmt.Fprintf(os.Stderr, "study: error: %s\n", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func run(args []string) error {
	if len(args) == 0 {
		return usagef("no command given (load, normal, batch, batch-fixed); try: study -h")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Print(usageText)
		return errHelp
	case "load":
		return runLoad(rest)
	case "normal", "batch", "batch-fixed":
		return runDump(cmd, rest)
	}
	return usagef("unknown command %q (load, normal, batch, batch-fixed)", cmd)
}

// parseFlags parses a subcommand's flags; no positional arguments are allowed.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usageText)
			return errHelp
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}

func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	pin := fs.String("pin", "", "bpffs path to pin the filled map at")
	entries := fs.Int64("entries", 0, "max_entries of the map (default: the object's)")
	obj := fs.String("obj", "build/test_map.bpf.o", "BPF object holding test_map")
	hold := fs.Bool("hold", false, "do not pin; keep the map alive until SIGINT, like the study")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *pin == "" && !*hold {
		return usagef("load: -pin PIN is required (or -hold)")
	}
	if *pin != "" && *hold {
		return usagef("load: -pin and -hold are exclusive (-hold keeps the map unpinned, like the study)")
	}
	var maxEntries uint32
	if flagGiven(fs, "entries") {
		if *entries < 1 || *entries > math.MaxUint32 {
			return usagef("load: -entries must be in 1..%d, got %d", uint64(math.MaxUint32), *entries)
		}
		maxEntries = uint32(*entries)
	}
	if *obj == "" {
		return usagef("load: -obj must not be empty")
	}
	return load(*obj, maxEntries, *pin, *hold)
}

func runDump(method string, args []string) error {
	fs := flag.NewFlagSet(method, flag.ContinueOnError)
	pin := fs.String("pin", "", "bpffs path of the pinned map")
	id := fs.Uint("id", 0, "map id (alternative to -pin, as the study's map_id file)")
	mem := fs.Bool("mem", false, "Show memory stats")
	chunk := fs.Int64("chunk", 4096, "batch size (batch-fixed only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*pin == "") == (*id == 0) {
		return usagef("%s: give exactly one of -pin PIN or -id ID", method)
	}
	if flagGiven(fs, "chunk") && method != "batch-fixed" {
		return usagef("%s: -chunk applies to batch-fixed only (the study's batch uses 4096)", method)
	}
	if *chunk < 1 || *chunk > 1<<24 {
		return usagef("%s: -chunk must be in 1..%d, got %d", method, 1<<24, *chunk)
	}
	if *id > math.MaxUint32 {
		return usagef("%s: -id out of range: %d", method, *id)
	}
	m, err := getMap(*pin, uint32(*id))
	if err != nil {
		return err
	}
	defer m.Close()
	if err := checkU32Map(m); err != nil {
		return err
	}
	switch method {
	case "normal":
		return normal(m, *mem)
	case "batch":
		return batch(m, *mem)
	default:
		return batchFixed(m, *mem, uint32(*chunk))
	}
}
