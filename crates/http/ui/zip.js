// Packs loose files into one uncompressed .zip (stored entries) in the browser, so that a
// dropped folder can be uploaded and imported like a zip. DICOM pixel data rarely deflates
// well, and storing keeps this small and fast. No ZIP64: at most 4 GiB and 65535 entries.
// The bytes depend only on the entries (names, contents, modification times), so packing the
// same files again gives the same zip: an interrupted upload of it can be resumed.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function dosTime(ms) {
  const date = new Date(Number.isFinite(ms) && ms > 315532800000 ? ms : 315532800000); // ≥ 1980
  const time = (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1);
  const day = ((date.getFullYear() - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
  return [time, day];
}

export const MAX_ZIP_BYTES = 0xffffffff - 1024 * 1024;

/**
 * Builds a Blob of a zip holding `entries` (`{ name, file }`, name with `/` folders);
 * `onProgress(done, total)` counts files read.
 */
export async function zipFiles(entries, onProgress = () => {}) {
  if (entries.length > 0xffff) throw new Error(`${entries.length} files are too many for one zip here: zip them yourself or send them with dcmsend`);
  const parts = [];
  const central = [];
  let offset = 0;
  let done = 0;
  for (const { name, file } of entries) {
    const [time, day] = dosTime(file.lastModified);
    const data = new Uint8Array(await file.arrayBuffer());
    const nameBytes = new TextEncoder().encode(name);
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(6, 0x0800, true); // UTF-8 names
    local.setUint16(8, 0, true); // stored
    local.setUint16(10, time, true);
    local.setUint16(12, day, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, nameBytes.length, true);
    local.setUint16(28, 0, true);
    const header = new DataView(new ArrayBuffer(46));
    header.setUint32(0, 0x02014b50, true);
    header.setUint16(4, 20, true);
    header.setUint16(6, 20, true);
    header.setUint16(8, 0x0800, true);
    header.setUint16(10, 0, true);
    header.setUint16(12, time, true);
    header.setUint16(14, day, true);
    header.setUint32(16, crc, true);
    header.setUint32(20, data.length, true);
    header.setUint32(24, data.length, true);
    header.setUint16(28, nameBytes.length, true);
    header.setUint32(42, offset, true);
    central.push(header, nameBytes);
    parts.push(local, nameBytes, data);
    offset += 30 + nameBytes.length + data.length;
    if (offset > MAX_ZIP_BYTES) throw new Error('these files are more than 4 GB together: zip them yourself or send them with dcmsend');
    done += 1;
    onProgress(done, entries.length);
  }
  const centralSize = central.reduce((n, p) => n + p.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, centralSize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: 'application/zip' });
}
