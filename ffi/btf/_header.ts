/**
 * `struct btf_header`: byte order from the magic, then the checks of libbpf's
 * `btf_parse_hdr()` and the kernel's `btf_parse_hdr()`/`btf_check_sec_info()`: version,
 * flags, header length, and both sections inside the blob, aligned, not overlapping.
 *
 * @module
 */

import { BtfError } from "./errors.ts";
import { BTF_HEADER, BTF_MAGIC, BTF_RECORD_SIZE, BTF_VERSION } from "./layout.ts";

/** Where the sections of a checked blob lie, in bytes from its start. */
export interface BtfSections {
  /** Byte order of every multi-byte field (and of the data the types describe). */
  readonly littleEndian: boolean;
  /** `hdr_len`. */
  readonly hdrLen: number;
  /** First byte of the type section. */
  readonly typeStart: number;
  /** End of the type section (exclusive). */
  readonly typeEnd: number;
  /** First byte of the string section. */
  readonly strStart: number;
  /** End of the string section (exclusive). */
  readonly strEnd: number;
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

/** Reads and checks the header of `bytes`; throws a `BtfError` saying what does not fit. */
export function readHeader(bytes: Uint8Array): BtfSections {
  const f = BTF_HEADER.fields;
  if (bytes.byteLength < BTF_RECORD_SIZE.header) {
    throw new BtfError(
      `BTF of ${bytes.byteLength} bytes is shorter than its ${BTF_RECORD_SIZE.header}-byte header`,
      { offset: 0 },
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let littleEndian: boolean;
  if (view.getUint16(f.magic.offset, true) === BTF_MAGIC) {
    littleEndian = true;
  } else if (view.getUint16(f.magic.offset, false) === BTF_MAGIC) {
    littleEndian = false;
  } else {
    throw new BtfError(
      `Bad BTF magic "${hex(view.getUint16(f.magic.offset, true))}": expected "${
        hex(BTF_MAGIC)
      }" in either byte order`,
      { offset: f.magic.offset },
    );
  }
  const version = view.getUint8(f.version.offset);
  if (version !== BTF_VERSION) {
    throw new BtfError(`Unsupported BTF version "${version}": expected ${BTF_VERSION}`, {
      offset: f.version.offset,
    });
  }
  const flags = view.getUint8(f.flags.offset);
  if (flags !== 0) {
    throw new BtfError(`Unsupported BTF header flags "${hex(flags)}": expected 0`, {
      offset: f.flags.offset,
    });
  }
  const u32 = (offset: number) => view.getUint32(offset, littleEndian);
  const hdrLen = u32(f.hdrLen.offset);
  if (hdrLen < BTF_RECORD_SIZE.header || hdrLen > bytes.byteLength) {
    throw new BtfError(
      `Invalid BTF hdr_len "${hdrLen}": expected from ${BTF_RECORD_SIZE.header} to the blob's ${bytes.byteLength} bytes`,
      { offset: f.hdrLen.offset },
    );
  }
  // A longer header than this reader knows is accepted only when the fields it does not
  // know are zero (the kernel's rule): anything else would change the meaning of the rest.
  for (let i = BTF_RECORD_SIZE.header; i < hdrLen; i++) {
    if (bytes[i] !== 0) {
      throw new BtfError(
        `BTF header of ${hdrLen} bytes has unknown non-zero fields: this reader knows ${BTF_RECORD_SIZE.header} bytes`,
        { offset: i },
      );
    }
  }
  const dataLen = bytes.byteLength - hdrLen;
  const typeOff = u32(f.typeOff.offset);
  const typeLen = u32(f.typeLen.offset);
  const strOff = u32(f.strOff.offset);
  const strLen = u32(f.strLen.offset);
  if (typeOff % 4 !== 0) {
    throw new BtfError(`Unaligned BTF type_off "${typeOff}": expected a multiple of 4`, {
      offset: f.typeOff.offset,
    });
  }
  if (typeLen % 4 !== 0) {
    throw new BtfError(`Invalid BTF type_len "${typeLen}": expected a multiple of 4`, {
      offset: f.typeLen.offset,
    });
  }
  if (typeOff + typeLen > dataLen) {
    throw new BtfError(
      `BTF type section (type_off ${typeOff}, type_len ${typeLen}) ends past the data's ${dataLen} bytes`,
      { offset: f.typeLen.offset },
    );
  }
  if (strOff + strLen > dataLen) {
    throw new BtfError(
      `BTF string section (str_off ${strOff}, str_len ${strLen}) ends past the data's ${dataLen} bytes`,
      { offset: f.strLen.offset },
    );
  }
  if (typeLen > 0 && strLen > 0 && typeOff < strOff + strLen && strOff < typeOff + typeLen) {
    throw new BtfError(
      `BTF type section [${typeOff}, ${
        typeOff + typeLen
      }) overlaps the string section [${strOff}, ${strOff + strLen})`,
      { offset: f.strOff.offset },
    );
  }
  return {
    littleEndian,
    hdrLen,
    typeStart: hdrLen + typeOff,
    typeEnd: hdrLen + typeOff + typeLen,
    strStart: hdrLen + strOff,
    strEnd: hdrLen + strOff + strLen,
  };
}
