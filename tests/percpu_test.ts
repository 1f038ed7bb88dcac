/**
 * Per-CPU values checked against an independent view: bpftool's. Each CPU's slot gets its own
 * bytes, written from a buffer laid out here (`round_up(value_size, 8)` bytes per possible
 * CPU, as the kernel copies them); bpftool's JSON dump of the same map must show those bytes
 * on those CPUs, and every walk of the toolkit, split by `cpuValues`, must read the same.
 * Value sizes that are not multiples of 8 make a wrong stride visible.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BackendName,
  type BatchView,
  BpfMap,
  forEachBatchParallel,
  MapIterator,
  MapType,
  type MapTypeName,
  methodFacilities,
  possibleCpus,
  u32,
} from "../mod.ts";
import { ALL_BACKENDS, bpfTest, facilityTest, onCpu, roomFor, u32Bytes } from "./_helpers.ts";

const PER_CPU_TYPES: readonly MapTypeName[] = ["percpu_hash", "lru_percpu_hash", "percpu_array"];
const VALUE_SIZES = [4, 12];
const ENTRIES = 64;

/** The byte the test writes at `offset` of key `key`'s value on `cpu`. */
function slotByte(key: number, cpu: number, offset: number): number {
  return (key * 7 + cpu * 61 + offset * 3 + 1) & 0xff;
}

/** Key `key`'s value for every CPU, laid out as the kernel takes it: 8-byte aligned slots. */
function layout(key: number, valueSize: number, cpus: number): Uint8Array {
  const stride = Math.ceil(valueSize / 8) * 8;
  const bytes = new Uint8Array(stride * cpus).fill(0xee);
  for (let cpu = 0; cpu < cpus; cpu++) {
    for (let at = 0; at < valueSize; at++) bytes[cpu * stride + at] = slotByte(key, cpu, at);
  }
  return bytes;
}

/** What bpftool prints for a per-CPU map without BTF: hex byte strings per key and CPU. */
interface BpftoolEntry {
  key: string[];
  values: { cpu: number; value: string[] }[];
}

function fromHex(bytes: string[]): number[] {
  return bytes.map((text) => parseInt(text, 16));
}

/** key -> each CPU's value bytes, as bpftool sees the map. */
async function bpftoolView(id: number): Promise<Map<number, number[][]>> {
  const { code, stdout, stderr } = await new Deno.Command("bpftool", {
    args: ["-j", "map", "dump", "id", String(id)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, `bpftool map dump: ${new TextDecoder().decode(stderr)}`);
  const view = new Map<number, number[][]>();
  for (const entry of JSON.parse(new TextDecoder().decode(stdout)) as BpftoolEntry[]) {
    const key = new DataView(Uint8Array.from(fromHex(entry.key)).buffer).getUint32(0, true);
    const slots: number[][] = [];
    for (const { cpu, value } of entry.values) slots[cpu] = fromHex(value);
    view.set(key, slots);
  }
  return view;
}

/** Every entry of `map` read by one walk, split into CPU slots by the toolkit. */
type Reader = (map: BpfMap) => Promise<Map<number, number[][]>>;

function fromBatches(map: BpfMap, into: Map<number, number[][]>) {
  return (batch: BatchView) => {
    for (let i = 0; i < batch.count; i++) {
      const key = new DataView(batch.keys.buffer, batch.keys.byteOffset).getUint32(i * 4, true);
      const value = batch.values.subarray(i * map.valueBytes, (i + 1) * map.valueBytes);
      into.set(key, map.cpuValues(value).map((slot) => [...slot]));
    }
  };
}

const READERS: Record<string, Reader> = {
  lookup: (map) => {
    const read = new Map<number, number[][]>();
    for (let key = 0; key < ENTRIES; key++) {
      const value = map.lookup(u32Bytes(key));
      if (value) read.set(key, map.cpuValues(value).map((slot) => [...slot]));
    }
    return Promise.resolve(read);
  },
  "per-entry walk": (map) => {
    const read = new Map<number, number[][]>();
    map.forEachEntry((key, value) => {
      read.set(new DataView(key.buffer, key.byteOffset).getUint32(0, true), [
        ...map.cpuValues(value).map((slot) => [...slot]),
      ]);
    });
    return Promise.resolve(read);
  },
  "batch walk": (map) => {
    const read = new Map<number, number[][]>();
    map.forEachBatch(fromBatches(map, read), { chunk: 7 });
    return Promise.resolve(read);
  },
  "parallel walk": async (map) => {
    const read = new Map<number, number[][]>();
    await forEachBatchParallel(map, fromBatches(map, read), { ranges: 2, chunk: 5 });
    return read;
  },
  "bpf_iter walk": (map) => {
    const read = new Map<number, number[][]>();
    using iterator = MapIterator.attach(map);
    iterator.forEachBatch(fromBatches(map, read));
    return Promise.resolve(read);
  },
};

async function checkAgainstBpftool(
  type: MapTypeName,
  valueSize: number,
  backend: BackendName,
  readers: readonly (keyof typeof READERS)[],
): Promise<void> {
  const cpus = possibleCpus();
  using map = BpfMap.create(
    { type, keySize: 4, valueSize, maxEntries: roomFor(type, ENTRIES) },
    { backend },
  );
  // The writer moves between CPUs every few keys, as the scheduler may move it: an LRU map
  // keeps free elements per CPU, and a map sized without room for them evicts keys.
  const cpusOnline = navigator.hardwareConcurrency;
  for (let key = 0; key < ENTRIES; key++) {
    onCpu(Math.floor(key / 3) % cpusOnline, () => {
      map.update(u32Bytes(key), layout(key, valueSize, cpus));
    });
  }
  const expected = new Map<number, number[][]>();
  for (let key = 0; key < ENTRIES; key++) {
    expected.set(
      key,
      Array.from(
        { length: cpus },
        (_, cpu) => Array.from({ length: valueSize }, (_, at) => slotByte(key, cpu, at)),
      ),
    );
  }
  assert.deepEqual(await bpftoolView(map.info.id), expected, "bpftool's view of the map");
  for (const name of readers) {
    assert.deepEqual(await READERS[name](map), expected, `${name} read other per-CPU values`);
  }
}

for (const backend of ALL_BACKENDS) {
  for (const type of PER_CPU_TYPES) {
    for (const valueSize of VALUE_SIZES) {
      const which = `${valueSize}-byte values [${type}, ${backend}]`;
      bpfTest(
        `per-CPU values read by lookups and the per-entry, batch and parallel walks equal bpftool's view, ${which}`,
        () =>
          checkAgainstBpftool(type, valueSize, backend, [
            "lookup",
            "per-entry walk",
            "batch walk",
            "parallel walk",
          ]),
      );
      facilityTest(
        import.meta.url,
        `per-CPU values read by the bpf_iter walk equal bpftool's view, ${which}`,
        methodFacilities("iter", MapType[type]),
        () => checkAgainstBpftool(type, valueSize, backend, ["bpf_iter walk"]),
      );
    }
  }
}

bpfTest("a typed per-CPU value set on every CPU is what bpftool sees on each", async () => {
  const cpus = possibleCpus();
  using map = BpfMap.create({ type: "percpu_hash", keySize: 4, valueSize: 4, maxEntries: 4 });
  map.typed(u32, u32).set(3, 0xdeadbeef);
  const view = await bpftoolView(map.info.id);
  assert.deepEqual(view.get(3), Array(cpus).fill([0xef, 0xbe, 0xad, 0xde]));
  assert.deepEqual(map.typed(u32, u32).getPerCpu(3), Array(cpus).fill(0xdeadbeef));
});
