import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { parseBuildManifest } from '../core/build-facts.js';
import { UsageError } from '../core/errors.js';
import { placeholderContainerDiskRef, renderKubevirtManifestStream, renderKubevirtManifests } from '../kubevirt/manifests.js';
import { pushContainerDisk } from '../push/push-container-disk.js';
import { startArtifactServer } from '../serve/artifact-server.js';
import { stringOption } from './args.js';
import { defineCommand } from './define.js';
import { CliReporter } from './reporting.js';

export const serveCommand = defineCommand({
  name: 'serve',
  usage: 'serve DIR [--listen HOST:PORT]',
  summary: 'Serve finished artifacts over HTTP for KubeVirt CDI import (HEAD, ranges, ETag from sha256). Ctrl-C stops it.',
  help: [
    'Options:',
    '  --listen HOST:PORT   address to listen on (default 127.0.0.1:8080; use 0.0.0.0:8080 to reach it from a cluster)',
    '',
    'Only files listed in a SHA256SUMS of a finished build are visible; staging directories, dotfiles and',
    'paths outside DIR are not. One access-log line per request goes to stderr.',
  ].join('\n'),
  options: { listen: { type: 'string' } },
  async action(parsed, context) {
    const [dir, ...extra] = parsed.positionals;
    if (dir === undefined || extra.length > 0) throw new UsageError('kib serve takes exactly one DIR (an output directory)', 'Example: kib serve output/');
    const listen = stringOption(parsed.values, 'listen') ?? '127.0.0.1:8080';
    const match = /^(.*):(\d{1,5})$/.exec(listen);
    if (match === null) throw new UsageError(`--listen must be HOST:PORT, got "${listen}"`);
    const host = (match[1] ?? '').replace(/^\[(.*)\]$/, '$1');
    const port = Number(match[2]);
    const reporter = new CliReporter({ ...parsed.globals, verbose: true }, context.stderr);
    const server = await startArtifactServer({ dir: resolve(context.cwd, dir), host, port, reporter, signal: context.signal });
    context.stdout.write(`${server.url}\n`);
    context.stderr.write(`serving ${resolve(context.cwd, dir)} at ${server.url} (Ctrl-C to stop)\n`);
    await new Promise<void>((resolvePromise) => context.signal.addEventListener('abort', () => resolvePromise(), { once: true }));
    await server.close();
    context.stderr.write('server stopped\n');
    return 0;
  },
});

export const pushCommand = defineCommand({
  name: 'push',
  usage: 'push ARTIFACT REF [--username U --password-stdin] [--insecure]',
  summary: 'Upload a containerDisk archive (<stem>.containerdisk.tar) to an OCI registry and print the pushed digest.',
  help: [
    'REF is host[:port]/repository[:tag]. HTTPS, except for localhost, 127.0.0.1 and [::1] (or --insecure).',
    'Blobs the registry already has are not uploaded again.',
    '',
    'Options:',
    '  --username U        registry user (basic auth, or to obtain a bearer token)',
    '  --password-stdin    read the password from standard input (also: $KIB_REGISTRY_PASSWORD)',
    '  --insecure          plain HTTP for a registry that is not on loopback',
    '  --chunk-size SIZE   upload chunk size (default 64M); 0 uploads each blob in one request',
  ].join('\n'),
  options: { username: { type: 'string' }, 'password-stdin': { type: 'boolean' }, insecure: { type: 'boolean' }, 'chunk-size': { type: 'string' } },
  async action(parsed, context) {
    const [artifact, reference, ...extra] = parsed.positionals;
    if (artifact === undefined || reference === undefined || extra.length > 0) {
      throw new UsageError('kib push takes ARTIFACT and REF', 'Example: kib push output/<stem>/<stem>.containerdisk.tar registry.example.com/images/rocky-9:v1.36.1');
    }
    const username = stringOption(parsed.values, 'username');
    let password = context.env.KIB_REGISTRY_PASSWORD;
    if (parsed.values['password-stdin'] === true) password = (await readStdin()).replace(/\r?\n$/, '');
    if (username !== undefined && password === undefined) throw new UsageError('--username needs a password: --password-stdin or $KIB_REGISTRY_PASSWORD');
    const chunkText = stringOption(parsed.values, 'chunk-size');
    let chunkSizeBytes: number | undefined;
    if (chunkText !== undefined) {
      const { parseSize } = await import('../config/index.js');
      chunkSizeBytes = chunkText === '0' ? Number.POSITIVE_INFINITY : parseSize(chunkText);
    }
    const reporter = new CliReporter(parsed.globals, context.stderr);
    const result = await pushContainerDisk({
      archivePath: resolve(context.cwd, artifact),
      reference,
      ...(username === undefined || password === undefined ? {} : { auth: { username, password } }),
      ...(parsed.values.insecure === true ? { insecureHttp: true } : {}),
      ...(chunkSizeBytes === undefined ? {} : { chunkSizeBytes }),
      signal: context.signal,
      reporter,
    });
    if (parsed.globals.json) context.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      context.stdout.write(`${result.reference}\n`);
      context.stderr.write(`pushed ${result.digest}: ${result.uploadedBlobs} blob(s) uploaded, ${result.skippedBlobs} already there\n`);
    }
    return 0;
  },
});

export const kubevirtCommand = defineCommand({
  name: 'kubevirt',
  usage: 'kubevirt manifests ARTIFACT_DIR --url URL [--containerdisk REF]',
  summary: 'Print ready-to-apply YAML for a built image: CDI DataVolume (HTTP import), VirtualMachine, containerDisk VM, CAPK KubevirtMachineTemplate.',
  help: [
    'ARTIFACT_DIR is a finished output directory (it holds manifest.json and SHA256SUMS).',
    '',
    'Options:',
    '  --url URL             where CDI downloads the qcow2 (e.g. the address of `kib serve`, ending in /)',
    '  --containerdisk REF   the pushed containerDisk (kib push prints it, pinned by digest). Without it the',
    '                        containerDisk VirtualMachine and the CAPK template name a placeholder,',
    '                        registry.example.com/<name>:v<kubernetes version>, marked "# PLACEHOLDER image:"',
    '  --name NAME  --namespace NS  --storage-class SC  --firmware bios|uefi',
  ].join('\n'),
  options: { url: { type: 'string' }, containerdisk: { type: 'string' }, name: { type: 'string' }, namespace: { type: 'string' }, 'storage-class': { type: 'string' }, firmware: { type: 'string' } },
  async action(parsed, context) {
    const [sub, dir, ...extra] = parsed.positionals;
    if (sub !== 'manifests' || dir === undefined || extra.length > 0) throw new UsageError('Usage: kib kubevirt manifests ARTIFACT_DIR --url URL [--containerdisk REF]');
    const url = stringOption(parsed.values, 'url');
    if (url === undefined) throw new UsageError('--url is required: where CDI imports the qcow2 from (for example the address `kib serve` prints)');
    const artifactDir = resolve(context.cwd, dir);
    const manifestPath = join(artifactDir, 'manifest.json');
    const manifest = parseBuildManifest(await readFile(manifestPath, 'utf8'), manifestPath);
    const qcow2 = manifest.artifacts.find((a) => a.kind === 'qcow2');
    if (qcow2 === undefined) throw new UsageError(`${artifactDir}/manifest.json lists no qcow2 artifact`);
    const base = url.endsWith('/') ? `${url}${basename(artifactDir)}/${qcow2.file}` : url;
    const firmware = stringOption(parsed.values, 'firmware');
    if (firmware !== undefined && firmware !== 'bios' && firmware !== 'uefi') throw new UsageError(`--firmware must be bios or uefi, got "${firmware}"`);
    const name = stringOption(parsed.values, 'name');
    const namespace = stringOption(parsed.values, 'namespace');
    const storageClassName = stringOption(parsed.values, 'storage-class');
    const containerDiskRef = stringOption(parsed.values, 'containerdisk');
    if (containerDiskRef === undefined) {
      const placeholder = placeholderContainerDiskRef(manifest.image.name, manifest.image.kubernetesVersion);
      new CliReporter(parsed.globals, context.stderr).emit({
        type: 'warning',
        message: `no --containerdisk given: the containerDisk VirtualMachine and the KubevirtMachineTemplate name the placeholder ${placeholder}; pass the reference kib push prints`,
      });
    }
    const yaml = renderKubevirtManifestStream(renderKubevirtManifests({
      imageName: manifest.image.name,
      kubernetesVersion: manifest.image.kubernetesVersion,
      imageVersion: manifest.image.version,
      httpUrl: base,
      sha256: qcow2.sha256,
      virtualSizeBytes: qcow2.virtualSizeBytes ?? 0,
      ...(containerDiskRef === undefined ? {} : { containerDiskRef }),
      ...(name === undefined ? {} : { name }),
      ...(namespace === undefined ? {} : { namespace }),
      ...(storageClassName === undefined ? {} : { storageClassName }),
      ...(firmware === undefined ? {} : { firmware: firmware as 'bios' | 'uefi' }),
    }));
    context.stdout.write(yaml.endsWith('\n') ? yaml : `${yaml}\n`);
    return 0;
  },
});

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
