/**
 * The `bpf(2)` commands the BTF code issues itself, through the `syscall` backend's one-off
 * command path (`bpfCommand`): `BPF_BTF_GET_FD_BY_ID`, `BPF_BTF_LOAD` and `BPF_MAP_CREATE`
 * with BTF ids (no backend method has them yet). `BPF_OBJ_GET_INFO_BY_FD` on BTF fds is the
 * backend's `objInfo`.
 *
 * @module
 */

import { addressOf, keepAlive, ownedBytes } from "../sys/buffers.ts";
import { BpfCommand } from "../sys/constants.ts";
import {
  encodeMapCreate,
  layoutSize,
  MAP_CREATE_ATTR,
  type MapCreateAttr,
  writeField,
} from "../sys/layout.ts";
import { bpfCommand } from "../sys/syscall_backend.ts";
import { BTF_GET_FD_BY_ID_ATTR, BTF_LOAD_ATTR } from "./layout.ts";

/** `BPF_BTF_GET_FD_BY_ID`: an fd of the BTF object `id`, or `-errno`. */
export function btfFdById(id: number): number {
  const attr = ownedBytes(layoutSize(BTF_GET_FD_BY_ID_ATTR));
  writeField(new DataView(attr.buffer), BTF_GET_FD_BY_ID_ATTR.fields.btfId, id);
  return bpfCommand(BpfCommand.BTF_GET_FD_BY_ID, attr);
}

/**
 * `BPF_BTF_LOAD` of `bytes` (owned); with `log` (owned), the kernel's verdict at log level 1
 * is written there. Returns the BTF fd or `-errno`.
 */
export function btfLoad(bytes: Uint8Array, log?: Uint8Array): number {
  const attr = ownedBytes(layoutSize(BTF_LOAD_ATTR));
  const view = new DataView(attr.buffer);
  const f = BTF_LOAD_ATTR.fields;
  writeField(view, f.btf, addressOf(bytes));
  writeField(view, f.btfSize, bytes.byteLength);
  if (log) {
    writeField(view, f.btfLogBuf, addressOf(log));
    writeField(view, f.btfLogSize, log.byteLength);
    writeField(view, f.btfLogLevel, 1);
  }
  const result = bpfCommand(BpfCommand.BTF_LOAD, attr);
  keepAlive(bytes);
  keepAlive(log ?? null);
  return result;
}

/** `BPF_MAP_CREATE` with BTF: `attr` plus the BTF fd and key and value type ids. Returns an fd or `-errno`. */
export function mapCreateWithBtf(
  attr: MapCreateAttr,
  btf: { fd: number; keyTypeId: number; valueTypeId: number },
): number {
  const bytes = ownedBytes(layoutSize(MAP_CREATE_ATTR));
  const view = new DataView(bytes.buffer);
  encodeMapCreate(view, attr);
  const f = MAP_CREATE_ATTR.fields;
  writeField(view, f.btfFd, btf.fd);
  writeField(view, f.btfKeyTypeId, btf.keyTypeId);
  writeField(view, f.btfValueTypeId, btf.valueTypeId);
  return bpfCommand(BpfCommand.MAP_CREATE, bytes);
}
