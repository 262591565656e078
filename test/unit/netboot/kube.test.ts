import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectMachineApi, statusPatchBody } from '../../../src/netboot/kube.js';
import { initialStatus, transition } from '../../../src/netboot/lifecycle.js';

interface Seen {
  method: string;
  url: string;
  contentType: string | undefined;
  body: string;
}

/** A fake API server on loopback: records requests, lists one Machine, accepts status patches. */
async function fakeApiServer(): Promise<{ url: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      seen.push({ method: request.method ?? '', url: request.url ?? '', contentType: request.headers['content-type'], body });
      response.setHeader('content-type', 'application/json');
      if (request.method === 'GET' && request.url?.startsWith('/apis/netboot.kib.dev/v1alpha1/machines')) {
        response.end(
          JSON.stringify({
            apiVersion: 'netboot.kib.dev/v1alpha1',
            kind: 'MachineList',
            items: [
              {
                apiVersion: 'netboot.kib.dev/v1alpha1',
                kind: 'Machine',
                metadata: { name: 'node-1', uid: 'u1', resourceVersion: '7', creationTimestamp: '2026-01-01T00:00:00Z' },
                spec: { macAddress: '52:54:00:00:00:01', ipAddress: '10.0.0.11', role: 'worker' },
                status: { phase: 'pending' },
              },
            ],
          }),
        );
        return;
      }
      response.end(body === '' ? '{}' : body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('Machines through the Kubernetes API (fake API server on loopback)', () => {
  it('lists Machines with the offline schema and writes status as a merge patch on the status subresource', async () => {
    const api = await fakeApiServer();
    const dir = await mkdtemp(join(tmpdir(), 'kib-kube-'));
    try {
      const kubeconfig = join(dir, 'kubeconfig');
      await writeFile(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters: [{name: fake, cluster: {server: "' + api.url + '", insecure-skip-tls-verify: true}}]',
          'users: [{name: u, user: {token: t0ken}}]',
          'contexts: [{name: c, context: {cluster: fake, user: u}}]',
          'current-context: c',
          '',
        ].join('\n'),
      );
      const client = await connectMachineApi(kubeconfig);
      const machines = await client.listMachines();
      expect(machines.map((m) => [m.metadata.name, m.spec.macAddress])).toEqual([['node-1', '52:54:00:00:00:01']]);

      const status = transition(initialStatus(new Date(0)), { type: 'stage2-offered' }, new Date(1000)).status;
      await client.writeStatus('node-1', status);
      const patch = api.seen.find((request) => request.method === 'PATCH');
      expect(patch?.url).toBe('/apis/netboot.kib.dev/v1alpha1/machines/node-1/status');
      expect(patch?.contentType).toBe('application/merge-patch+json');
      expect(JSON.parse(patch?.body ?? '{}')).toEqual({
        status: { phase: 'booting', reason: null, bytesWritten: null, diskSpeed: null, phaseTimes: { pending: '1970-01-01T00:00:00.000Z', booting: '1970-01-01T00:00:01.000Z' } },
      });
    } finally {
      await api.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a failed status keeps its reason in the patch', () => {
    const failed = transition(initialStatus(new Date(0)), { type: 'failed', reason: 'no disk' }, new Date(1)).status;
    expect(statusPatchBody(failed).status).toMatchObject({ phase: 'failed', reason: 'no disk' });
  });
});
