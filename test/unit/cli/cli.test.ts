import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, makeKibDirs, runKib, startKib } from '../../support/kib-cli.js';
import { offlineDebianManifest } from '../../support/manifests.js';

describe('kib CLI', () => {
  let dirs: { root: string; env: Record<string, string> };
  let scratch: string;

  beforeAll(async () => {
    dirs = await makeKibDirs();
    scratch = await mkdtemp(join(tmpdir(), 'kib-cli-'));
  });
  afterAll(async () => {
    await rm(dirs.root, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  });

  it('--help lists every command and exits 0', async () => {
    const result = await runKib(['--help']);
    expect(result.exitCode).toBe(0);
    for (const command of ['build', 'plan', 'fetch', 'lock', 'verify', 'cache', 'doctor']) expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('an unknown command or flag is a usage error (exit 2) that names it', async () => {
    const unknown = await runKib(['frobnicate']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('frobnicate');
    const flag = await runKib(['plan', '--no-such-flag']);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toContain('--no-such-flag');
  });

  it('plan prints the resolved default build, its steps and cache keys, and changes nothing', async () => {
    const result = await runKib(['plan', '--json'], { env: dirs.env });
    expect(result.exitCode, result.stderr).toBe(0);
    const plan = JSON.parse(result.stdout) as { config: Record<string, any>; steps: { phase: string; cacheKey?: string }[]; cacheKeys: Record<string, string> };
    expect(plan.config.base.osFamily).toBe('redhat');
    expect(plan.config.kubernetes.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(plan.steps.map((s) => s.phase)).toEqual(expect.arrayContaining(['preflight', 'base', 'provision', 'export']));
    for (const key of Object.values(plan.cacheKeys)) expect(key).toMatch(/^[0-9a-f]{64}$/);
    const human = await runKib(['plan'], { env: dirs.env });
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain('cache key');
  });

  it('a changed input changes its cache key and every key after it, not the ones before', async () => {
    const config = join(scratch, 'k8s.yaml');
    const baseline = JSON.parse((await runKib(['plan', '--json'], { env: dirs.env })).stdout) as { cacheKeys: Record<string, string> };
    const original = await readFile(join(REPO_ROOT, 'image.yaml'), 'utf8');
    // The copy lives elsewhere, so its relative playbook path is made absolute.
    const copy = original.replace(/^(\s*playbook:\s*)playbook\/site\.yml/m, `$1${join(REPO_ROOT, 'playbook', 'site.yml')}`);
    await writeFile(config, copy.replace(/^(\s*selinux:\s*)permissive/m, '$1enforcing'));
    const changed = JSON.parse((await runKib(['plan', '--json', '--config', config], { env: dirs.env })).stdout) as { cacheKeys: Record<string, string> };
    expect(changed.cacheKeys.base).toBe(baseline.cacheKeys.base);
    expect(changed.cacheKeys['provision.disk']).toBe(baseline.cacheKeys['provision.disk']);
    expect(changed.cacheKeys['provision.os']).not.toBe(baseline.cacheKeys['provision.os']);
    expect(changed.cacheKeys.export).not.toBe(baseline.cacheKeys.export);
  });

  it('plan --explain says for each stage whether its layer is stored, and cache ls/prune work on an empty store', async () => {
    const explained = await runKib(['plan', '--explain'], { env: dirs.env });
    expect(explained.exitCode, explained.stderr).toBe(0);
    for (const stage of ['os', 'runtime', 'kubernetes', 'images', 'finalize']) expect(explained.stdout).toMatch(new RegExp(`^- ${stage}: miss [0-9a-f]{16}  no layer of this stage is stored$`, 'm'));
    const listed = await runKib(['cache', 'ls'], { env: dirs.env });
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('0 layer(s)');
    const pruned = await runKib(['cache', 'prune', '--max-size', '1G', '--json'], { env: dirs.env });
    expect(pruned.exitCode, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout)).toMatchObject({ removed: [], freedBytes: 0 });
    expect((await runKib(['cache', 'frobnicate'], { env: dirs.env })).exitCode).toBe(2);
  });

  it('a bad build definition lists every problem with its path and exits 2', async () => {
    const config = join(scratch, 'bad.yaml');
    await writeFile(
      config,
      ['name: Bad Name!', 'base:', '  url: ""', '  osFamily: windows', 'kubernetes:', '  version: latest', 'disk:', '  size: lots', 'vm:', '  cpus: 0', 'colour: blue', ''].join('\n'),
    );
    const result = await runKib(['build', '--config', config], { env: dirs.env });
    expect(result.exitCode).toBe(2);
    for (const path of ['name', 'base.osFamily', 'kubernetes.version', 'disk.size', 'vm.cpus', 'colour']) expect(result.stderr).toContain(path);
    expect(result.stderr).toContain('"lots"');
    // Rejected before anything slow: no build directory was created.
    await expect(readdir(join(dirs.env.KIB_STATE_DIR ?? '', 'builds'))).rejects.toThrow();
  });

  it('kib netboot: a join needs a token secret file or a cluster to create the tokens in (usage error, exit 2)', async () => {
    const hash = `sha256:${'ab'.repeat(32)}`;
    const base = ['netboot', '--interface', 'nope0', '--machines', scratch, '--image', join(scratch, 'none.raw'), '--join-endpoint', '10.0.0.1:6443'];
    const noHash = await runKib(base, { env: dirs.env });
    expect(noHash.exitCode).toBe(2);
    expect(noHash.stderr).toContain('--join-endpoint and --join-ca-cert-hash go together');
    const noSecret = await runKib([...base, '--join-ca-cert-hash', hash], { env: dirs.env });
    expect(noSecret.exitCode).toBe(2);
    expect(noSecret.stderr).toMatch(/--join-token-secret-file, or --kubeconfig/);
  });

  it('a YAML syntax error is reported with its line', async () => {
    const config = join(scratch, 'syntax.yaml');
    await writeFile(config, 'name: x\nbase: [unclosed\n');
    const result = await runKib(['plan', '--config', config], { env: dirs.env });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/line 2|2:\d+/);
  });

  it('kib kubevirt manifests without --containerdisk marks the placeholder image in the YAML and warns on stderr', async () => {
    const artifactDir = join(scratch, 'rocky-9-out');
    await mkdir(artifactDir, { recursive: true });
    await writeFile(
      join(artifactDir, 'manifest.json'),
      JSON.stringify({
        ...offlineDebianManifest,
        image: { ...offlineDebianManifest.image, name: 'rocky-9', version: '1.4.0', kubernetesVersion: '1.36.1' },
        artifacts: [{ file: 'rocky-9.qcow2', kind: 'qcow2', sizeBytes: 1024, sha256: 'a'.repeat(64), format: 'qcow2', virtualSizeBytes: 20 * 1024 ** 3 }],
      }),
    );
    const placeholder = 'registry.example.com/rocky-9:v1.36.1';
    const help = await runKib(['kubevirt', '--help']);
    expect(help.stdout).toContain('placeholder');
    expect(help.stdout).toContain('registry.example.com/<name>:v<kubernetes version>');

    const bare = await runKib(['kubevirt', 'manifests', artifactDir, '--url', 'http://192.0.2.10:8080/'], { env: dirs.env });
    expect(bare.exitCode, bare.stderr).toBe(0);
    expect(bare.stdout.match(new RegExp(`^# PLACEHOLDER image: ${placeholder.replace(/\./g, '\\.')} `, 'gm'))).toHaveLength(2);
    expect(bare.stdout).toContain(`image: ${placeholder}\n`);
    expect(bare.stderr).toContain(`warning: no --containerdisk given`);
    expect(bare.stderr).toContain(placeholder);

    const ref = `registry.example.com/kib/rocky-9:v1.36.1@sha256:${'b'.repeat(64)}`;
    const pushed = await runKib(['kubevirt', 'manifests', artifactDir, '--url', 'http://192.0.2.10:8080/', '--containerdisk', ref], { env: dirs.env });
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    expect(pushed.stdout).not.toContain('PLACEHOLDER');
    expect(pushed.stdout).toContain(`image: ${ref}\n`);
    expect(pushed.stderr).toBe('');
  });

  it('kib fetch of the default build fails at once when the base URL refuses connections, naming the URL and --base', async () => {
    // The default image.yaml with its base moved to a loopback port nothing listens on: a
    // connection there is refused at once, so the test never reaches the network.
    const port = await closedLoopbackPort();
    const url = `http://127.0.0.1:${port}/images/Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2`;
    const original = await readFile(join(REPO_ROOT, 'image.yaml'), 'utf8');
    const copy = original
      .replace(/^(\s*url:\s*)\S+$/m, `$1${url}`)
      .replace(/^(\s*checksumUrl:\s*)\S+$/m, `$1http://127.0.0.1:${port}/images/CHECKSUM`)
      .replace(/^(\s*playbook:\s*)playbook\/site\.yml/m, `$1${join(REPO_ROOT, 'playbook', 'site.yml')}`);
    expect(copy).toContain(url);
    const config = join(scratch, 'unreachable-base.yaml');
    await writeFile(config, copy);

    const started = performance.now();
    const result = await runKib(['fetch', '--config', config, '--log-format', 'json'], { env: { ...dirs.env, NO_PROXY: '127.0.0.1', no_proxy: '127.0.0.1' } });
    const elapsedMs = performance.now() - started;
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(url);
    expect(result.stderr).toContain('--base');
    // A refused connection is reported without waiting: well inside the 15 s kib allows for a
    // response, and the test's own timeout (60 s) is far from deciding it.
    expect(elapsedMs).toBeLessThan(10_000);
  }, 60_000);
});

/** A loopback port that was free a moment ago: connecting to it is refused at once. */
async function closedLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolvePromise);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
  return port;
}
