import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeterministicGzip, GZIP_HEADER } from '../../../src/export/index.js';
import { run } from '../../../src/process/index.js';
import { makeTempDir } from './support.js';

async function gzip(chunks: Buffer[], level?: number): Promise<Buffer> {
  return buffer(Readable.from(chunks).pipe(createDeterministicGzip(level === undefined ? {} : { level })));
}

describe('createDeterministicGzip', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    tmp = await makeTempDir('gzip');
  });
  afterAll(async () => tmp.remove());

  it('writes a fixed header (no name, mtime 0, OS Unix) and round-trips through gunzip and gzip -t', async () => {
    const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(2_000_000, 7), Buffer.from('end')]);
    const out = await gzip([data.subarray(0, 100_000), data.subarray(100_000)]);
    expect(out.subarray(0, 10).equals(GZIP_HEADER)).toBe(true);
    expect([...out.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    expect(gunzipSync(out).equals(data)).toBe(true);
    const path = join(tmp.dir, 'x.gz');
    await writeFile(path, out);
    const tested = await run('gzip', ['-t', path], { allowFailure: true });
    expect(tested.exitCode).toBe(0);
  });

  it('gives the same bytes however the input is chunked, and for empty input a valid stream', async () => {
    const data = randomBytes(1_000_000);
    const whole = await gzip([data]);
    const pieces = await gzip(Array.from({ length: 100 }, (_, i) => data.subarray(i * 10_000, (i + 1) * 10_000)));
    expect(pieces.equals(whole)).toBe(true);
    expect(gunzipSync(await gzip([])).length).toBe(0);
  });

  it('honours the compression level', async () => {
    const text = Buffer.from('kube-image-builder '.repeat(100_000));
    const fast = await gzip([text], 1);
    const best = await gzip([text], 9);
    expect(best.length).toBeLessThan(fast.length);
    expect(gunzipSync(best).equals(text)).toBe(true);
  });
});
