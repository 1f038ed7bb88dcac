/**
 * Bindings to libbpf (`libbpf.so.1`): the map API of `bpf/bpf.h` and the object API the
 * experiment needs. libbpf 1.x returns `-errno` from every `int` function, which is what the
 * toolkit's backends return too. Loaded on first use; `LIBBPF_PATH` overrides the library.
 *
 * @module
 */

/** `bpf_map_lookup_batch` and `bpf_map_lookup_and_delete_batch` take the same arguments. */
const LOOKUP_BATCH_SIGNATURE = {
  parameters: [
    "i32", // int fd
    "buffer", // void *in_batch
    "buffer", // void *out_batch
    "buffer", // void *keys
    "buffer", // void *values
    "buffer", // __u32 *count
    "buffer", // const struct bpf_map_batch_opts *opts
  ],
  result: "i32", // int
} as const;

/**
 * The libbpf symbols the toolkit calls. The element functions take pointers rather than
 * buffers: they run twice per entry in per-entry dumps, and a pointer argument costs about
 * 30 ns less per call; their callers pass addresses of owned buffers that they keep
 * referenced (see `libbpf_backend.ts`).
 */
import { readEnv } from "./env.ts";

const LIBBPF_SYMBOLS = {
  bpf_map_create: {
    parameters: [
      "i32", // enum bpf_map_type map_type
      "buffer", // const char *map_name
      "u32", // __u32 key_size
      "u32", // __u32 value_size
      "u32", // __u32 max_entries
      "buffer", // const struct bpf_map_create_opts *opts
    ],
    result: "i32", // int
    optional: true, // libbpf >= 0.7
  },
  bpf_map_lookup_elem: {
    parameters: [
      "i32", // int fd
      "pointer", // const void *key
      "pointer", // void *value
    ],
    result: "i32",
  },
  bpf_map_update_elem: {
    parameters: [
      "i32", // int fd
      "pointer", // const void *key
      "pointer", // const void *value
      "u64", // __u64 flags
    ],
    result: "i32",
  },
  bpf_map_delete_elem: {
    parameters: [
      "i32", // int fd
      "pointer", // const void *key
    ],
    result: "i32",
  },
  bpf_map_lookup_and_delete_elem: {
    parameters: [
      "i32", // int fd
      "pointer", // const void *key
      "pointer", // void *value
    ],
    result: "i32",
  },
  bpf_map_get_next_key: {
    parameters: [
      "i32", // int fd
      "pointer", // const void *key
      "pointer", // void *next_key
    ],
    result: "i32",
  },
  bpf_map_lookup_batch: LOOKUP_BATCH_SIGNATURE,
  bpf_map_lookup_and_delete_batch: LOOKUP_BATCH_SIGNATURE,
  bpf_map_update_batch: {
    parameters: [
      "i32", // int fd
      "buffer", // const void *keys
      "buffer", // const void *values
      "buffer", // __u32 *count
      "buffer", // const struct bpf_map_batch_opts *opts
    ],
    result: "i32",
  },
  bpf_map_delete_batch: {
    parameters: [
      "i32", // int fd
      "buffer", // const void *keys
      "buffer", // __u32 *count
      "buffer", // const struct bpf_map_batch_opts *opts
    ],
    result: "i32",
  },
  bpf_map_freeze: { parameters: ["i32"], result: "i32" }, // int bpf_map_freeze(int fd)
  bpf_obj_pin: {
    parameters: [
      "i32", // int fd
      "buffer", // const char *pathname
    ],
    result: "i32",
  },
  bpf_obj_get: { parameters: ["buffer"], result: "i32" }, // int bpf_obj_get(const char *pathname)
  bpf_map_get_fd_by_id: { parameters: ["u32"], result: "i32" }, // int (__u32 id)
  bpf_map_get_next_id: {
    parameters: [
      "u32", // __u32 start_id
      "buffer", // __u32 *next_id
    ],
    result: "i32",
  },
  bpf_obj_get_info_by_fd: {
    parameters: [
      "i32", // int bpf_fd
      "buffer", // void *info
      "buffer", // __u32 *info_len
    ],
    result: "i32",
  },
  bpf_object__open_file: {
    parameters: [
      "buffer", // const char *path
      "pointer", // const struct bpf_object_open_opts *opts
    ],
    result: "pointer", // struct bpf_object *
  },
  bpf_object__load: { parameters: ["pointer"], result: "i32" }, // int (struct bpf_object *obj)
  bpf_object__close: { parameters: ["pointer"], result: "void" }, // void (struct bpf_object *obj)
  bpf_object__find_map_by_name: {
    parameters: [
      "pointer", // const struct bpf_object *obj
      "buffer", // const char *name
    ],
    result: "pointer", // struct bpf_map *
  },
  bpf_object__find_program_by_name: {
    parameters: [
      "pointer", // const struct bpf_object *obj
      "buffer", // const char *name
    ],
    result: "pointer", // struct bpf_program *
  },
  bpf_map__set_max_entries: {
    parameters: [
      "pointer", // struct bpf_map *map
      "u32", // __u32 max_entries
    ],
    result: "i32",
  },
  bpf_map__set_initial_value: {
    parameters: [
      "pointer", // struct bpf_map *map
      "buffer", // const void *data
      "usize", // size_t size
    ],
    result: "i32",
  },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" }, // int (const struct bpf_map *map)
  bpf_map__reuse_fd: {
    parameters: [
      "pointer", // struct bpf_map *map
      "i32", // int fd
    ],
    result: "i32",
  },
  bpf_map__set_value_size: {
    parameters: [
      "pointer", // struct bpf_map *map
      "u32", // __u32 size
    ],
    result: "i32",
  },
  bpf_program__fd: { parameters: ["pointer"], result: "i32" }, // int (const struct bpf_program *prog)
  bpf_prog_test_run_opts: {
    parameters: [
      "i32", // int prog_fd
      "buffer", // struct bpf_test_run_opts *opts
    ],
    result: "i32", // int: -errno
    optional: true, // libbpf >= 0.7
  },
  bpf_program__attach_iter: {
    parameters: [
      "pointer", // const struct bpf_program *prog
      "buffer", // const struct bpf_iter_attach_opts *opts
    ],
    result: "pointer", // struct bpf_link *
    optional: true, // libbpf >= 0.0.9
  },
  bpf_link__fd: { parameters: ["pointer"], result: "i32" }, // int (const struct bpf_link *link)
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" }, // int (struct bpf_link *link)
  bpf_iter_create: { parameters: ["i32"], result: "i32", optional: true }, // int (int link_fd)
  bpf_object__next_program: {
    parameters: [
      "pointer", // const struct bpf_object *obj
      "pointer", // struct bpf_program *prog (NULL: the first)
    ],
    result: "pointer", // struct bpf_program *
    optional: true, // libbpf >= 0.7
  },
  bpf_program__section_name: { parameters: ["pointer"], result: "pointer" }, // const char *(const struct bpf_program *prog)
  bpf_program__name: { parameters: ["pointer"], result: "pointer" }, // const char *(const struct bpf_program *prog)
  bpf_program__autoload: { parameters: ["pointer"], result: "bool" }, // bool (const struct bpf_program *prog)
  bpf_program__set_autoload: {
    parameters: [
      "pointer", // struct bpf_program *prog
      "bool", // bool autoload
    ],
    result: "i32",
  },
  btf__load_vmlinux_btf: { parameters: [], result: "pointer", optional: true }, // struct btf *(void), libbpf >= 0.5
  btf__find_by_name_kind: {
    parameters: [
      "pointer", // const struct btf *btf
      "buffer", // const char *type_name
      "u32", // __u32 kind
    ],
    result: "i32", // __s32: the type id, or -ENOENT
  },
  btf__free: { parameters: ["pointer"], result: "void" }, // void btf__free(struct btf *btf)
  libbpf_strerror: {
    parameters: [
      "i32", // int err
      "buffer", // char *buf
      "usize", // size_t size
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded libbpf symbols. */
export type LibbpfSymbols = Deno.DynamicLibrary<
  typeof LIBBPF_SYMBOLS
>["symbols"];

/** The library names tried after `LIBBPF_PATH`, in order. */
export const LIBBPF_NAMES = ["libbpf.so.1", "libbpf.so"];

let libbpf: LibbpfSymbols | undefined;

/**
 * Returns the paths `libbpfSymbols()` tries, in order: `LIBBPF_PATH` alone when set (the
 * library asked for, or an error), else the system names.
 */
export function libbpfPaths(): string[] {
  const override = readEnv("LIBBPF_PATH");
  return override ? [override] : [...LIBBPF_NAMES];
}

/** Returns the libbpf symbols, opening the library on first use. */
export function libbpfSymbols(): LibbpfSymbols {
  if (libbpf) return libbpf;
  const errors: string[] = [];
  for (const path of libbpfPaths()) {
    try {
      libbpf = Deno.dlopen(path, LIBBPF_SYMBOLS).symbols;
      return libbpf;
    } catch (e) {
      errors.push(`"${path}" (${e instanceof Error ? e.message : e})`);
    }
  }
  throw new Error(
    `Cannot open libbpf: tried ${errors.join(", ")}: ${
      readEnv("LIBBPF_PATH") ? "check LIBBPF_PATH" : "install libbpf1 or set LIBBPF_PATH"
    }`,
  );
}

/** Returns an optional symbol, or throws naming the libbpf version that has it. */
export function requireSymbol<K extends keyof LibbpfSymbols>(
  name: K,
  version: string,
): NonNullable<LibbpfSymbols[K]> {
  const symbol = libbpfSymbols()[name];
  if (symbol === null || symbol === undefined) {
    throw new Error(
      `The loaded libbpf lacks "${String(name)}": libbpf ${version} or newer is needed`,
    );
  }
  return symbol as NonNullable<LibbpfSymbols[K]>;
}

/** libbpf's message for a negative error code. */
export function libbpfMessage(error: number): string {
  const buffer = new Uint8Array(256);
  libbpfSymbols().libbpf_strerror(error, buffer, BigInt(buffer.length));
  const end = buffer.indexOf(0);
  return new TextDecoder().decode(
    buffer.subarray(0, end < 0 ? buffer.length : end),
  );
}
