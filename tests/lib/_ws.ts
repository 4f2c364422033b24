// What the WebSocket codec's tests share (ws_frame_test.ts, ws_parser_test.ts).

/** A masking key with no zero byte, so that masking shows in every byte. */
export const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** `n` bytes that differ from their neighbours, so that a shift shows. */
export function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + 3) & 0xff;
  return out;
}
