/**
 * `KeySet`: counts the distinct keys a dump reports, so a dump can prove it saw every key
 * exactly once. Nothing here allocates per key for 4-byte keys: they go into a bitmap of
 * 64 Ki-key pages made on first use (a dense u32 map of N keys costs N / 8 bytes). Other
 * key sizes go into a `Set` of their bytes as strings.
 *
 * @module
 */

const PAGE_BITS = 16;
const PAGE_KEYS = 1 << PAGE_BITS;

/** The distinct keys seen so far, and how many were seen more than once. */
export class KeySet {
  /** Keys added, duplicates included. */
  added = 0;
  /** Keys added that had been added before. */
  duplicates = 0;
  readonly #keySize: number;
  readonly #pages: (Uint8Array | undefined)[] = [];
  readonly #other = new Set<string>();

  constructor(keySize: number) {
    this.#keySize = keySize;
  }

  /** Distinct keys seen. */
  get distinct(): number {
    return this.added - this.duplicates;
  }

  #addU32(key: number): void {
    const index = key >>> PAGE_BITS;
    const page = this.#pages[index] ??= new Uint8Array(PAGE_KEYS / 8);
    const bit = key & (PAGE_KEYS - 1);
    const byte = bit >>> 3;
    const mask = 1 << (bit & 7);
    if (page[byte] & mask) this.duplicates++;
    else page[byte] |= mask;
    this.added++;
  }

  #addBytes(key: Uint8Array): void {
    const text = String.fromCharCode(...key);
    if (this.#other.has(text)) this.duplicates++;
    else this.#other.add(text);
    this.added++;
  }

  /** Adds one key (`keySize` bytes). */
  add(key: Uint8Array): void {
    if (this.#keySize === 4) {
      this.#addU32(
        (key[0] | (key[1] << 8) | (key[2] << 16) | (key[3] << 24)) >>> 0,
      );
    } else {
      this.#addBytes(key);
    }
  }

  /** Adds `count` packed keys. */
  addPacked(keys: Uint8Array, count: number): void {
    if (this.#keySize === 4 && keys.byteOffset % 4 === 0) {
      const words = new Uint32Array(keys.buffer, keys.byteOffset, count);
      for (let i = 0; i < count; i++) this.#addU32(words[i]);
      return;
    }
    const size = this.#keySize;
    for (let i = 0; i < count; i++) {
      this.add(keys.subarray(i * size, (i + 1) * size));
    }
  }
}
