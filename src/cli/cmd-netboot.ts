import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { UsageError } from '../core/errors.js';
import { cacheDir, stateDir } from '../core/dirs.js';
import { connectMachineApi, type MachineApi } from '../netboot/kube.js';
import { checkMachineSet, loadMachineDir, type Machine } from '../netboot/machines.js';
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
    '  --kubeconfig FILE           read Machines from the cluster (deploy/crd-machine.yaml) and write their status there',
    '  --image ARTIFACT            the disk image to install (raw or qcow2); served as raw+zstd',
    '  --proxy-dhcp                leave addresses to the DHCP server already on the network; answer PXE only',
    '  --http-port N               HTTP port (default 8080)',
    '  --ssh-authorized-keys FILE  keys put into every installed system',
    '  --join-endpoint HOST:PORT   join the installed nodes to this cluster (with --join-ca-cert-hash, --join-token-secret-file)',
    '  --join-ca-cert-hash HASH    sha256:<hex> of the cluster CA public key',
    '  --join-token-secret-file F  the secret each Machine\'s bootstrap token is derived from',
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
    const joinGiven = [endpoint, caHash, secretFile].filter((value) => value !== undefined).length;
    if (joinGiven !== 0 && joinGiven !== 3) throw new UsageError('--join-endpoint, --join-ca-cert-hash and --join-token-secret-file go together');
    if (caHash !== undefined && !/^sha256:[0-9a-f]{64}$/.test(caHash)) throw new UsageError('--join-ca-cert-hash must be sha256:<64 hex>');
    const api: MachineApi | undefined = kubeconfig === undefined ? undefined : await connectMachineApi(resolve(context.cwd, kubeconfig));
    const machines: Machine[] = [...(machinesDir === undefined ? [] : await loadMachineDir(resolve(context.cwd, machinesDir))), ...(api === undefined ? [] : await api.listMachines())];
    checkMachineSet(machines);
    const reporter = new CliReporter({ ...parsed.globals, verbose: true }, context.stderr);
    const service = await startNetboot(
      {
        interface: iface,
        machines,
        imagePath: resolve(context.cwd, image),
        proxyDhcp: parsed.values['proxy-dhcp'] === true,
        httpPort,
        cacheDir: cacheDir(context.env),
        stateDir: stateDir(context.env),
        sshAuthorizedKeys: keys,
        ...(api === undefined ? {} : { writeStatus: (name: string, status: MachineStatus) => api.writeStatus(name, status) }),
        ...(endpoint === undefined || caHash === undefined || secretFile === undefined
          ? {}
          : { join: { endpoint, caCertHash: caHash, tokenSecret: (await readFile(resolve(context.cwd, secretFile), 'utf8')).trim() } }),
      },
      {
        signal: context.signal,
        reporter,
        onStatus: (change) => context.stdout.write(`${JSON.stringify({ machine: change.machine, event: change.event.type, status: change.status })}\n`),
      },
    );
    context.stderr.write(`kib netboot serving ${service.url} on ${iface} (Ctrl-C to stop)\n`);
    await service.done;
    context.stderr.write('netboot stopped\n');
    return 0;
  },
});
