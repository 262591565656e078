import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GuestAgentClient, GuestAgentError } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

/**
 * A stand-in for QEMU's end of the guest-agent channel with qemu-ga behind it: 0xFF resets its
 * parser, guest-sync-delimited answers with a leading 0xFF, guest-shutdown answers nothing.
 * `deafForMs` models an agent that has not started yet; `slow` delays one command's answer.
 */
class FakeAgent {
  readonly requests: { execute: string; arguments?: Record<string, unknown> }[] = [];
  deafForMs = 0;
  slow: { command: string; delayMs: number } | undefined;
  staleGreeting = '';
  readonly #server: Server;
  readonly #started = Date.now();

  constructor(readonly path: string) {
    this.#server = createServer((socket) => this.#serve(socket));
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.#server.listen(this.path, resolve));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: Socket): void {
    // Left over from an earlier client: the new client must skip it.
    if (this.staleGreeting !== '') socket.write(this.staleGreeting);
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      if (Date.now() - this.#started < this.deafForMs) return;
      let text = '';
      for (const byte of chunk) {
        if (byte === 0xff) {
          pending = '';
          text = '';
        } else text += String.fromCharCode(byte);
      }
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        const request = JSON.parse(line) as { execute: string; arguments?: Record<string, unknown> };
        this.requests.push(request);
        this.#answer(socket, request);
      }
    });
    socket.on('error', () => {});
  }

  #answer(socket: Socket, request: { execute: string; arguments?: Record<string, unknown> }): void {
    const reply = (body: unknown, prefix = ''): void => {
      const text = `${prefix}${JSON.stringify(body)}\n`;
      if (this.slow?.command === request.execute) setTimeout(() => socket.write(text), this.slow.delayMs);
      else socket.write(text);
    };
    switch (request.execute) {
      case 'guest-sync-delimited':
        socket.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(`${JSON.stringify({ return: request.arguments?.id })}\n`)]));
        return;
      case 'guest-ping':
        reply({ return: {} });
        return;
      case 'guest-info':
        reply({ return: { version: '7.2.0', supported_commands: [{ name: 'guest-ping', enabled: true }] } });
        return;
      case 'guest-get-time':
        reply({ return: 1_700_000_000_000_000_000 });
        return;
      case 'guest-shutdown':
        return;
      default:
        reply({ error: { class: 'CommandNotFound', desc: `The command ${request.execute} has not been found` } });
    }
  }
}

const servers: FakeAgent[] = [];
const clients: GuestAgentClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function setup(configure: (agent: FakeAgent) => void = () => {}): Promise<{ agent: FakeAgent; client: GuestAgentClient }> {
  const agent = new FakeAgent(join(tempDir('qga'), 'qga.sock'));
  configure(agent);
  await agent.listen();
  servers.push(agent);
  const client = new GuestAgentClient(agent.path);
  clients.push(client);
  return { agent, client };
}

describe('GuestAgentClient', () => {
  it('synchronises first, skipping stale bytes, then runs commands', async () => {
    const { agent, client } = await setup((a) => {
      a.staleGreeting = '{"return": {"version": "old"}}\n{"return": 4';
    });
    expect(client.hasAnswered).toBe(false);
    expect(await client.execute('guest-ping')).toEqual({});
    expect(client.hasAnswered).toBe(true);
    expect(await client.execute('guest-info')).toMatchObject({ version: '7.2.0' });
    expect(agent.requests.map((r) => r.execute)).toEqual(['guest-sync-delimited', 'guest-ping', 'guest-info']);
  });

  it('reports agent errors with their class', async () => {
    const { client } = await setup();
    const error = await client.execute('guest-exec', { path: '/bin/true' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GuestAgentError);
    expect((error as GuestAgentError).errorClass).toBe('CommandNotFound');
  });

  it('after a timeout, resynchronises so a late answer is not taken for the next command', async () => {
    const { agent, client } = await setup((a) => {
      a.slow = { command: 'guest-get-time', delayMs: 300 };
    });
    await expect(client.execute('guest-get-time', undefined, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'GUEST_AGENT_TIMEOUT' });
    await new Promise((resolve) => setTimeout(resolve, 400));
    // The late guest-get-time answer (a number) is now in the channel; guest-ping must get {}.
    expect(await client.execute('guest-ping')).toEqual({});
    expect(agent.requests.filter((r) => r.execute === 'guest-sync-delimited')).toHaveLength(2);
  });

  it('times out while the agent is not running yet, and works once it is', async () => {
    const { client } = await setup((a) => {
      a.deafForMs = 400;
    });
    await expect(client.execute('guest-ping', undefined, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'GUEST_AGENT_TIMEOUT' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await client.execute('guest-ping', undefined, { timeoutMs: 2_000 })).toEqual({});
  });

  it('does not wait for an answer to guest-shutdown', async () => {
    const { agent, client } = await setup();
    expect(await client.execute('guest-shutdown', { mode: 'powerdown' }, { timeoutMs: 500 })).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(agent.requests.at(-1)).toEqual({ execute: 'guest-shutdown', arguments: { mode: 'powerdown' } });
  });

  it('runs concurrent calls one after another', async () => {
    const { client } = await setup();
    const results = await Promise.all([client.execute('guest-ping'), client.execute('guest-info'), client.execute('guest-get-time')]);
    expect(results[0]).toEqual({});
    expect(results[1]).toMatchObject({ version: '7.2.0' });
    expect(results[2]).toBe(1_700_000_000_000_000_000);
  });

  it('fails clearly when there is no channel to connect to', async () => {
    const client = new GuestAgentClient(join(tempDir('qga-none'), 'qga.sock'));
    clients.push(client);
    await expect(client.execute('guest-ping', undefined, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'SOCKET_CONNECT' });
  });
});
