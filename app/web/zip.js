// makeZip(entries): a zip file (a Blob) of [{name, data: Uint8Array}], for the web page's
// "Download all results". STORE only, no compression: the label PNGs are compressed already.
// No zip64, so under 4 GiB and 65535 files in all. Names are UTF-8 (general flag bit 11).
// readZip(blob): the entries of the service's answer to several formats at once (stored or
// deflated, read with the browser's own DecompressionStream).
"use strict";

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** entries: [{name, data: Uint8Array}] → a zip Blob (names in UTF-8, general flag bit 11). */
function makeZip(entries) {
  const encoder = new TextEncoder();
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  const files = [];
  const directory = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const nameBytes = encoder.encode(name);
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    const central = new DataView(new ArrayBuffer(46));
    local.setUint32(0, 0x04034b50, true);
    central.setUint32(0, 0x02014b50, true);
    central.setUint16(4, 20, true); // version made by
    // version needed, flags, method 0 (store), time, date, crc, sizes, name length
    const common = [[20, 2], [0x0800, 2], [0, 2], [time, 2], [date, 2], [crc, 4],
      [data.length, 4], [data.length, 4], [nameBytes.length, 2]];
    let at = 4;
    for (const [value, size] of common) {
      (size === 2 ? local.setUint16 : local.setUint32).call(local, at, value, true);
      (size === 2 ? central.setUint16 : central.setUint32).call(central, at + 2, value, true);
      at += size;
    }
    central.setUint32(42, offset, true); // where the local header is
    files.push(local, nameBytes, data);
    directory.push(central, nameBytes);
    offset += 30 + nameBytes.length + data.length;
  }
  const size = directory.reduce((sum, part) => sum + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, size, true);
  end.setUint32(16, offset, true);
  return new Blob([...files, ...directory, end], { type: "application/zip" });
}

/** A zip Blob (no zip64) → Map of entry name → Uint8Array; stored and deflated entries. */
async function readZip(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const view = new DataView(bytes.buffer);
  let end = bytes.length - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end--;
  if (end < 0) throw new Error("not a zip file");
  const decoder = new TextDecoder();
  const entries = new Map();
  let at = view.getUint32(end + 16, true);
  for (let k = view.getUint16(end + 10, true); k > 0; k--) {
    const [method, size] = [view.getUint16(at + 10, true), view.getUint32(at + 20, true)];
    const [nameLength, extra, comment] = [28, 30, 32].map((o) => view.getUint16(at + o, true));
    const name = decoder.decode(bytes.subarray(at + 46, at + 46 + nameLength));
    const local = view.getUint32(at + 42, true);
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    let data = bytes.subarray(start, start + size);
    if (method === 8) {
      const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
      data = new Uint8Array(await new Response(stream).arrayBuffer());
    } else if (method !== 0) {
      throw new Error(`zip entry ${name}: compression method ${method} is not read here`);
    }
    entries.set(name, data);
    at += 46 + nameLength + extra + comment;
  }
  return entries;
}
