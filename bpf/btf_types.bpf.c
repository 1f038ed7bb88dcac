// SPDX-License-Identifier: GPL-2.0
//
// Maps whose keys and values carry BTF of every shape the TypeScript BTF reader decodes
// (ffi/btf/, tests/btf_kernel_test.ts): structs with holes, unions with anonymous members,
// enums of 1, 4 and 8 bytes, kind_flag bitfields (signed, enum, bool, 40 bits wide), nested
// arrays, char arrays, pointers, 128-bit integers, floats, per-CPU values and a .data
// section. No programs: bpf_object__load() creates the maps with their BTF.
//
// clang 14 (Debian 12) emits neither ENUM64 nor signed enums (LLVM 15 added both): there an
// enum with 64-bit values is an ENUM of 8 bytes whose values are cut to 32 bits, and a
// negative enumerator is stored as its u32. The bt_enum64 map exists only with clang >= 15;
// the tests cover ENUM64 with BTF they build and load themselves.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

enum bt_color { BT_RED = 0, BT_GREEN = 1, BT_BLUE = 2, BT_NEG = -3 };

/* One byte of storage (a C23 fixed underlying type, a clang extension in C). */
enum bt_small : unsigned char { BT_S_ONE = 1, BT_S_BIG = 200 };

/* Eight bytes of storage: an ENUM64 with clang >= 15, an ENUM of size 8 before. */
enum bt_wide { BT_W_LOW = 1, BT_W_HIGH = 0x100000001ULL };

typedef __u64 bt_counter_t;
typedef char bt_name_t[16];

struct bt_flags {
	unsigned int low : 3;
	int signed5 : 5;		/* negative values */
	unsigned long long wide : 40;	/* crosses bytes, wider than 32 bits */
	enum bt_color color : 4;	/* an enum bitfield */
	_Bool on : 1;
	__u16 after;			/* a whole member after the bitfields */
};

union bt_word {
	__u32 word;
	__u8 bytes[4];
	struct {			/* anonymous: its members are the union's */
		__u16 lo;
		__u16 hi;
	};
};

struct bt_key {
	__u32 id;
	char name[12];
	__s16 delta;
	/* a 6-byte hole */
	__u64 total;
};

struct bt_value {
	__s64 neg;
	__u64 big;
	enum bt_color color;
	enum bt_small small;
	/* a 3-byte hole */
	enum bt_wide wide;
	struct bt_flags flags;
	union bt_word word;
	__u16 matrix[2][3];
	char label[8];
	int *ptr;
	_Bool ok;
	__s8 tiny;
	const volatile __u32 cv;
	struct {			/* anonymous struct member */
		__s32 x;
		__s32 y;
	};
};

struct bt_counters {
	bt_counter_t packets;
	__s32 delta;
	__u8 last;
	/* 3 bytes of tail padding */
};

struct bt_nested {
	struct bt_flags flags[2];
	union bt_word words[2][2];
	__s8 grid[3][2][2];
};

struct bt_wide_ints {
	__int128 s128;
	unsigned __int128 u128;
	__s64 s64;
	__u32 u32;
	__s16 s16;
	unsigned char uc;
	signed char sc;
};

struct bt_floats {
	float f;
	double d;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct bt_key);
	__type(value, struct bt_value);
} bt_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, __u64);
	__type(value, struct bt_counters);
} bt_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct bt_nested);
} bt_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, bt_name_t);
	__type(value, struct bt_flags);
} bt_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, enum bt_color);
	__type(value, enum bt_wide);
} bt_enums SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__type(key, __s32);
	__type(value, struct bt_wide_ints);
} bt_ints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct bt_floats);
} bt_floats SEC(".maps");

#if __clang_major__ >= 15
enum bt_signed64 { BT_S64_MIN = -5000000000LL, BT_S64_ONE = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, enum bt_wide);
	__type(value, enum bt_signed64);
} bt_enum64 SEC(".maps");
#endif

/* Global data: the object's .data map, whose value type is this DATASEC. */
__u32 bt_data_count = 7;
struct bt_key bt_data_key = { .id = 42, .name = "data", .delta = -2, .total = 1ULL << 40 };
