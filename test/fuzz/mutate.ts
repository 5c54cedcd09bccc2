/**
 * Mutations of a valid request, shared by the codec and the live-server fuzzers. Each op is
 * [kind 0..5, position, value]: 0 flips a bit, 1 overwrites a byte, 2 inserts one, 3 deletes one, 4 truncates,
 * 5 appends a copy of the first `value % maxDuplicate` bytes.
 */
export type MutationOp = readonly [number, number, number];

export function mutate(base: Buffer, ops: readonly MutationOp[], maxDuplicate: number): Buffer {
  let b = Buffer.from(base);
  for (const [op, at0, value] of ops) {
    const at = b.length === 0 ? 0 : at0 % b.length;
    switch (op % 6) {
      case 0:
        if (b.length) b[at] = b[at]! ^ (1 << (value % 8));
        break;
      case 1:
        if (b.length) b[at] = value & 0xff;
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), Buffer.from([value & 0xff]), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
        break;
      case 4:
        b = b.subarray(0, at);
        break;
      case 5:
        b = Buffer.concat([b, b.subarray(0, value % maxDuplicate)]);
        break;
    }
  }
  return b;
}
