import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { UsageError } from '../core/errors.js';
import { cacheDir, stateDir } from '../core/dirs.js';
import { connectMachineApi, type BootstrapTokenSpec, type MachineApi } from '../netboot/kube.js';
import { loadMachineDir, type Machine } from '../netboot/machines.js';
import type { MachineStatus } from '../netboot/lifecycle.js';
import { startNetboot } from '../netboot/service.js';
import { stringOption } from './args.js';
import { defineCommand } from './define.js';
import { CliReporter } from './reporting.js';

export const netbootCommand = defineCommand({
  name: 'netboot',
  usage: 'netboot --interface IF (--machines DIR | --kubeconfig FILE) --image ARTIFACT [--proxy-dhcp] [--http-port N]',
  summary: 'Install Machines that boot from the network: DHCP/TFTP (dnsmasq), iPXE, stage2 writes and verifies the image. Ctrl-C stops it.',
  help: [
    'Options:',
    '  --interface IF              the interface the Machines are on (its IPv4 address serves HTTP)',
    '  --machines DIR              a directory of Machine YAML files (apiVersion netboot.kib.dev/v1alpha1)',
    '  --kubeconfig FILE           watch the Machines in this cluster (deploy/crd-machine.yaml), write their status there,',
    '                              and create each Machine\'s bootstrap token there when joining',
    '  --image ARTIFACT            the disk image to install (raw or qcow2); served as raw+zstd',
    '  --proxy-dhcp                leave addresses to the DHCP server already on the network; answer PXE only',
    '  --http-port N               HTTP port (default 8080)',
    '  --ssh-authorized-keys FILE  keys put into every installed system',
    '  --join-endpoint HOST:PORT   join the installed nodes to this cluster (with --join-ca-cert-hash, --join-token-secret-file)',
    '  --join-ca-cert-hash HASH    sha256:<hex> of the cluster CA public key',
    '  --join-token-secret-file F  the secret each Machine\'s bootstrap token is derived from (with --kubeconfig:',
    '                              optional, default a random one kept in <state>/netboot/token-secret)',
    '  --measure-disk              stage2 first measures the disk\'s raw streaming speed (benchmarks; slower installs)',
    '',
    'Without --proxy-dhcp, kib netboot refuses to start when another DHCP server answers on the interface.',
    'Machine states go to <state>/netboot/machines/<name>.json; an installed Machine is never reimaged',
    'unless its spec.reinstall gets a new value. See docs/netboot.md.',
  ].join('\n'),
  options: {
    interface: { type: 'string' },
    machines: { type: 'string' },
    kubeconfig: { type: 'string' },
    image: { type: 'string' },
    'proxy-dhcp': { type: 'boolean' },
    'http-port': { type: 'string' },
    'ssh-authorized-keys': { type: 'string' },
    'join-endpoint': { type: 'string' },
    'join-ca-cert-hash': { type: 'string' },
    'join-token-secret-file': { type: 'string' },
    'measure-disk': { type: 'boolean' },
  },
  async action(parsed, context) {
    const iface = stringOption(parsed.values, 'interface');
    const machinesDir = stringOption(parsed.values, 'machines');
    const image = stringOption(parsed.values, 'image');
    const kubeconfig = stringOption(parsed.values, 'kubeconfig');
    const missing = [iface === undefined ? '--interface' : '', machinesDir === undefined && kubeconfig === undefined ? '--machines or --kubeconfig' : '', image === undefined ? '--image' : ''].filter((x) => x !== '');
    if (iface === undefined || image === undefined || missing.length > 0) throw new UsageError(`kib netboot needs ${missing.join(', ')}`);
    const httpPort = Number(stringOption(parsed.values, 'http-port') ?? '8080');
    if (!Number.isInteger(httpPort) || httpPort < 1 || httpPort > 65535) throw new UsageError('--http-port must be a port number');
    const keysFile = stringOption(parsed.values, 'ssh-authorized-keys');
    const keys = keysFile === undefined ? [] : (await readFile(resolve(context.cwd, keysFile), 'utf8')).split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
    const endpoint = stringOption(parsed.values, 'join-endpoint');
    const caHash = stringOption(parsed.values, 'join-ca-cert-hash');
    const secretFile = stringOption(parsed.values, 'join-token-secret-file');
    if ((endpoint === undefined) !== (caHash === undefined)) throw new UsageError('--join-endpoint and --join-ca-cert-hash go together');
    if (secretFile !== undefined && endpoint === undefined) throw new UsageError('--join-token-secret-file needs --join-endpoint and --join-ca-cert-hash');
    if (endpoint !== undefined && secretFile === undefined && kubeconfig === undefined) {
      throw new UsageError('--join-endpoint needs --join-token-secret-file, or --kubeconfig (then kib creates the tokens in the cluster)');
    }
    if (caHash !== undefined && !/^sha256:[0-9a-f]{64}$/.test(caHash)) throw new UsageError('--join-ca-cert-hash must be sha256:<64 hex>');
    const api: MachineApi | undefined = kubeconfig === undefined ? undefined : await connectMachineApi(resolve(context.cwd, kubeconfig));
    const fromDir: Machine[] = machinesDir === undefined ? [] : await loadMachineDir(resolve(context.cwd, machinesDir));
    // The cluster's Machines come with the watch's first list, right after the start.
    const machines = fromDir;
    const reporter = new CliReporter({ ...parsed.globals, verbose: true }, context.stderr);
    const state = stateDir(context.env);
    const tokenSecret =
      endpoint === undefined ? undefined : secretFile !== undefined ? (await readFile(resolve(context.cwd, secretFile), 'utf8')).trim() : await ensureTokenSecret(join(state, 'netboot', 'token-secret'));
    const service = await startNetboot(
      {
        interface: iface,
        machines,
        imagePath: resolve(context.cwd, image),
        proxyDhcp: parsed.values['proxy-dhcp'] === true,
        httpPort,
        cacheDir: cacheDir(context.env),
        stateDir: state,
        sshAuthorizedKeys: keys,
        ...(parsed.values['measure-disk'] === true ? { measureDisk: true } : {}),
        ...(api === undefined ? {} : { writeStatus: (name: string, status: MachineStatus) => api.writeStatus(name, status) }),
        ...(endpoint === undefined || caHash === undefined || tokenSecret === undefined
          ? {}
          : {
              join: {
                endpoint,
                caCertHash: caHash,
                tokenSecret,
                ...(api === undefined ? {} : { createToken: (token: BootstrapTokenSpec) => api.createBootstrapToken(token) }),
              },
            }),
      },
      {
        signal: context.signal,
        reporter,
        onStatus: (change) => context.stdout.write(`${JSON.stringify({ machine: change.machine, event: change.event.type, status: change.status })}\n`),
      },
    );
    // With a cluster: watch the Machines there; every change (with the directory's Machines) is applied at once.
    const stopWatch = new AbortController();
    const onAbort = (): void => stopWatch.abort();
    context.signal.addEventListener('abort', onAbort, { once: true });
    const watching =
      api === undefined
        ? undefined
        : api.watchMachines({
            signal: stopWatch.signal,
            log: (line, level) => reporter.emit({ type: 'log', source: 'netboot', line, level }),
            onChange: async (fromApi) => {
              await service.setMachines([...fromDir, ...fromApi]);
            },
          });
    context.stderr.write(`kib netboot serving ${service.url} on ${iface} (Ctrl-C to stop)\n`);
    try {
      await service.done;
    } finally {
      stopWatch.abort();
      context.signal.removeEventListener('abort', onAbort);
      await watching;
    }
    context.stderr.write('netboot stopped\n');
    return 0;
  },
});

/** The secret the Machines' tokens are derived from when no file is given: random, made once, kept with the state. */
async function ensureTokenSecret(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  await mkdir(dirname(file), { recursive: true });
  const secret = randomBytes(32).toString('hex');
  await writeFile(file, `${secret}\n`, { mode: 0o600, flag: 'wx' }).catch(async (error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  });
  return (await readFile(file, 'utf8')).trim();
}
