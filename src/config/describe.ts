import type { BuildSpec } from './build-spec.js';
import { formatBytes, formatDuration } from './units.js';

/**
 * The resolved build definition as plain data for `kib plan`: every value the build will use,
 * with sizes and durations also shown the way people write them. Absent values are null so the
 * shape is the same for every spec (and survives JSON).
 */
export function describeSpec(spec: BuildSpec): Record<string, unknown> {
  return {
    config: spec.configPath ?? '(embedded default)',
    configSha256: spec.configSha256,
    name: spec.name,
    base: {
      url: spec.base.url,
      checksumUrl: spec.base.checksumUrl ?? null,
      sha256: spec.base.sha256 ?? null,
      verification:
        spec.base.sha256 !== undefined
          ? 'pinned sha256'
          : spec.base.checksumUrl !== undefined
            ? 'sha256 from the checksum file'
            : 'none (no sha256 or checksumUrl given)',
      osFamily: spec.base.osFamily,
    },
    kubernetes: {
      version: spec.kubernetes.version ?? null,
      series: spec.kubernetes.series,
      pinnedBy: spec.kubernetes.pinnedBy,
      packages: spec.kubernetes.packages,
      lockedPackages: spec.kubernetes.lockedPackages ?? null,
    },
    node: { selinux: spec.node.selinux, firewall: spec.node.firewall, network: spec.node.network },
    disk: { size: formatBytes(spec.disk.sizeBytes), sizeBytes: spec.disk.sizeBytes },
    vm: {
      cpus: spec.vm.cpus,
      memory: formatBytes(spec.vm.memoryMiB * 1024 ** 2),
      memoryMiB: spec.vm.memoryMiB,
      accelerator: spec.vm.accelerator,
      firmware: spec.vm.firmware,
      bootTimeout: formatDuration(spec.vm.bootTimeoutMs),
      bootTimeoutMs: spec.vm.bootTimeoutMs,
    },
    provision: { playbook: spec.provision.playbookPath, vars: spec.provision.vars },
    outputs: { dir: spec.outputs.dir, formats: [...spec.outputs.formats], compress: spec.outputs.compress },
  };
}
