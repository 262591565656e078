import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startArtifactServer } from '../../../src/serve/artifact-server.js';
import { countOpenFds, randomData, recordingReporter, waitForFdCount, writeArtifactDir } from './helpers.js';

const FILE_BYTES = 64 * 1024 * 1024;
const CLIENTS = 64;
const REQUESTS_PER_CLIENT = 4;
/** The loop stops on its own after this long even if requests remain. */
const TIME_BUDGET_MS = 90_000;

let root: string;
let source: Buffer;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'kib-serve-load-'));
  source = randomData(FILE_BYTES);
  await writeArtifactDir(root, 'load', { 'load.raw': source });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Outcome {
  kind: 'whole' | 'range' | 'aborted';
  bytes: number;
}

/**
 * Downloads `[start, end]` (or everything) and compares every byte with the source as it arrives,
 * so 64 parallel whole-file downloads do not need 64 copies in memory.
 */
function download(agent: Agent, url: string, range: { start: number; end: number } | undefined, abortAfterBytes?: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` };
    const req = request(url, { agent, headers }, (res) => {
      const expectedStatus = range === undefined ? 200 : 206;
      if (res.statusCode !== expectedStatus) {
        reject(new Error(`${url} ${headers.Range ?? ''}: status ${String(res.statusCode)}`));
        res.resume();
        return;
      }
      let offset = range?.start ?? 0;
      const end = range?.end ?? FILE_BYTES - 1;
      let mismatch: string | undefined;
      res.on('data', (chunk: Buffer) => {
        if (mismatch === undefined && !chunk.equals(source.subarray(offset, offset + chunk.length))) {
          mismatch = `bytes differ in [${offset}, ${offset + chunk.length})`;
        }
        offset += chunk.length;
        if (abortAfterBytes !== undefined && offset - (range?.start ?? 0) >= abortAfterBytes) {
          req.destroy();
          resolve({ kind: 'aborted', bytes: offset });
        }
      });
      res.on('end', () => {
        if (mismatch !== undefined) reject(new Error(mismatch));
        else if (offset !== end + 1) reject(new Error(`got ${offset} bytes, expected ${end + 1}`));
        else resolve({ kind: range === undefined ? 'whole' : 'range', bytes: offset - (range?.start ?? 0) });
      });
      res.on('error', (error) => {
        if (abortAfterBytes === undefined) reject(error);
      });
    });
    req.on('error', (error) => {
      if (abortAfterBytes === undefined) reject(new Error(`${headers.Range ?? 'whole'} reused=${String(req.reusedSocket)}: ${error.message}`));
    });
    req.end();
  });
}

describe('artifact server under load (loopback only, bounded)', () => {
  it(
    `${CLIENTS} concurrent clients x ${REQUESTS_PER_CLIENT} requests: every byte correct, no errors, no descriptor leak`,
    async () => {
      const fdsBefore = countOpenFds();
      const reporter = recordingReporter();
      const server = await startArtifactServer({ dir: root, reporter });
      const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
      const url = `${server.url}load/load.raw`;
      const deadline = performance.now() + TIME_BUDGET_MS;
      const outcomes: Outcome[] = [];
      // A fixed seed keeps a failing run reproducible.
      let seed = 0x2545f491;
      const random = (): number => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) / 0x1_0000_0000;
      };

      const client = async (index: number): Promise<void> => {
        for (let n = 0; n < REQUESTS_PER_CLIENT && performance.now() < deadline; n++) {
          const pick = random();
          if (pick < 0.12) {
            outcomes.push(await download(agent, url, undefined));
          } else if (pick < 0.2) {
            // Clients that hang up mid-body must not leave anything open on the server.
            outcomes.push(await download(agent, url, undefined, 256 * 1024 + index));
          } else {
            const length = 1 + Math.floor(random() * 4 * 1024 * 1024);
            const start = Math.floor(random() * (FILE_BYTES - 1));
            outcomes.push(await download(agent, url, { start, end: Math.min(FILE_BYTES - 1, start + length - 1) }));
          }
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, (_, index) => client(index)));
      agent.destroy();
      await server.close();

      expect(outcomes.length).toBe(CLIENTS * REQUESTS_PER_CLIENT);
      expect(outcomes.some((o) => o.kind === 'whole')).toBe(true);
      expect(outcomes.some((o) => o.kind === 'range')).toBe(true);
      expect(outcomes.some((o) => o.kind === 'aborted')).toBe(true);
      const statuses = reporter.logLines().filter((line) => / GET /.test(line)).map((line) => line.split(' ')[3]);
      expect(statuses.length).toBe(outcomes.length);
      expect(statuses.every((status) => status === '200' || status === '206')).toBe(true);
      expect(await waitForFdCount(fdsBefore)).toBeLessThanOrEqual(fdsBefore);
    },
    TIME_BUDGET_MS + 30_000,
  );
});
