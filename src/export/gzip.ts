import { Transform, type TransformCallback } from 'node:stream';
import { crc32, createDeflateRaw } from 'node:zlib';

/**
 * gzip with a header we write ourselves: no file name, mtime 0, XFL 0, OS 3 (Unix). zlib's own
 * gzip header takes the OS byte from how zlib was compiled (macOS builds write 19), so layers
 * built on different hosts would differ; framing raw deflate ourselves keeps them identical.
 */
export const GZIP_HEADER: Buffer = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]);

/**
 * A duplex that gzips what is written to it. `level` 1 (fastest) suits disk images: a compressed
 * qcow2 barely shrinks further, and a multi-GiB layer at level 6 costs minutes on two cores.
 */
export function createDeterministicGzip(options: { level?: number } = {}): Transform {
  let crc = 0;
  let isize = 0;
  let headerSent = false;
  const deflate = createDeflateRaw({ level: options.level ?? 1 });

  const framing = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      crc = crc32(chunk, crc);
      // ISIZE is the input length modulo 2^32 (RFC 1952).
      isize = (isize + chunk.length) % 0x1_0000_0000;
      if (deflate.write(chunk)) callback();
      else deflate.once('drain', () => callback());
    },
    flush(callback: TransformCallback) {
      deflate.once('end', () => {
        if (!headerSent) {
          headerSent = true;
          this.push(GZIP_HEADER);
        }
        const trailer = Buffer.alloc(8);
        trailer.writeUInt32LE(crc >>> 0, 0);
        trailer.writeUInt32LE(isize >>> 0, 4);
        callback(null, trailer);
      });
      deflate.end();
    },
  });

  deflate.on('data', (out: Buffer) => {
    if (!headerSent) {
      headerSent = true;
      framing.push(GZIP_HEADER);
    }
    framing.push(out);
  });
  deflate.on('error', (error) => framing.destroy(error));
  framing.on('close', () => deflate.destroy());
  return framing;
}
