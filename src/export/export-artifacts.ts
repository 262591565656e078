import { writeFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { BuildFacts } from '../core/build-facts.js';
import { KibError, throwIfAborted } from '../core/errors.js';
import type { Artifact, ArtifactKind, DiskImage } from '../core/types.js';
import type { Reporter } from '../report/events.js';
import { writeContainerDisk } from './container-disk.js';
import { sha256File, textArtifact, writeSha256Sums } from './hash.js';
import { buildManifest, MANIFEST_FILE, renderJson, type ManifestArtifact } from './manifest.js';
import { containerDiskTag } from './output.js';
import { convertDisk, type DiskFormat } from './qemu-img.js';
import { buildSbom, SBOM_FILE } from './sbom.js';
import type { ExportMeta, GuestInventory } from './types.js';

export type OutputFormat = 'qcow2' | 'raw' | 'containerdisk';

export interface ExportRequest {
  /** The sealed, powered-off disk (usually a qcow2 overlay on the base image). */
  disk: DiskImage;
  /** From `createStaging(outputDir, id)`; the caller finalizes or discards it. */
  stagingDir: string;
  /** `artifactStem(...)`: the file-name stem all artifacts share. */
  stem: string;
  /** qcow2 is always written; raw and containerdisk when listed. */
  formats: readonly OutputFormat[];
  /** Compress the qcow2's clusters. */
  compress: boolean;
  inventory: GuestInventory;
  meta: ExportMeta;
  signal?: AbortSignal;
  reporter?: Reporter;
  /** Clock for the manifest's `finishedAt`; tests pin it. */
  now?: () => Date;
}

/** Labels of the containerDisk image config. */
export function containerDiskLabels(facts: BuildFacts, diskSha256: string): Record<string, string> {
  return {
    'io.kube-image-builder.base-sha256': facts.base.sha256,
    'io.kube-image-builder.disk-format': 'qcow2',
    'io.kube-image-builder.disk-sha256': diskSha256,
    'io.kube-image-builder.kubernetes-version': facts.kubernetes.version,
    'org.opencontainers.image.created': rfc3339Seconds(new Date(facts.build.date)),
    ...(facts.image.commit === null ? {} : { 'org.opencontainers.image.revision': facts.image.commit }),
    'org.opencontainers.image.title': facts.image.name,
    'org.opencontainers.image.version': facts.image.version,
  };
}

/**
 * Turns the sealed disk into the build's artifacts inside the staging directory:
 * `<stem>.qcow2` (flattened, optionally compressed), `<stem>.raw`, `<stem>.containerdisk.tar`
 * (from the final qcow2), `sbom.cdx.json`, `manifest.json`, and `SHA256SUMS` over all of them.
 * Nothing is written outside `stagingDir`; on failure the caller discards it. Artifact events
 * are left to the caller, which knows the final paths.
 */
export async function exportArtifacts(request: ExportRequest): Promise<Artifact[]> {
  const started = performance.now();
  const { disk, stagingDir, stem, meta, inventory, signal, reporter } = request;
  const now = request.now ?? (() => new Date());
  if (!/^[A-Za-z0-9._-]+$/.test(stem) || stem.startsWith('.')) {
    throw new KibError('EXPORT_INVALID', `artifact stem '${stem}' must match [A-Za-z0-9._-]+ and not start with '.'`);
  }
  const createdAt = new Date(meta.facts.build.date);
  if (Number.isNaN(createdAt.getTime())) throw new KibError('EXPORT_INVALID', `build date '${meta.facts.build.date}' is not an RFC 3339 date`);
  const signalOption = signal === undefined ? {} : { signal };
  const reporterOption = reporter === undefined ? {} : { reporter };

  const artifacts: Artifact[] = [];
  const described: ManifestArtifact[] = [];
  const record = (artifact: Artifact, extra: { format?: DiskFormat; virtualSizeBytes?: number } = {}): void => {
    artifacts.push(artifact);
    described.push({ file: basename(artifact.path), kind: artifact.kind, sizeBytes: artifact.sizeBytes, sha256: artifact.sha256, ...extra });
  };
  const fileArtifact = async (path: string, kind: ArtifactKind): Promise<Artifact> => ({
    path,
    kind,
    sha256: await sha256File(path, signalOption),
    sizeBytes: (await stat(path)).size,
  });

  reporter?.emit({ type: 'step', phase: 'export', message: `writing ${stem}.qcow2 (flattened${request.compress ? ', compressed' : ''})` });
  const qcow2 = await convertDisk(
    { source: disk.path, sourceFormat: disk.format, target: join(stagingDir, `${stem}.qcow2`), targetFormat: 'qcow2', compress: request.compress },
    { ...signalOption, ...reporterOption, label: 'qcow2', sourceVirtualSizeBytes: disk.virtualSizeBytes },
  );
  const qcow2Artifact = await fileArtifact(qcow2.path, 'qcow2');
  record(qcow2Artifact, { format: 'qcow2', virtualSizeBytes: qcow2.virtualSizeBytes });

  if (request.formats.includes('raw')) {
    throwIfAborted(signal, 'The export');
    reporter?.emit({ type: 'step', phase: 'export', message: `writing ${stem}.raw` });
    const raw = await convertDisk(
      { source: qcow2.path, sourceFormat: 'qcow2', target: join(stagingDir, `${stem}.raw`), targetFormat: 'raw', compress: false },
      { ...signalOption, ...reporterOption, label: 'raw', sourceVirtualSizeBytes: qcow2.virtualSizeBytes },
    );
    record(await fileArtifact(raw.path, 'raw'), { format: 'raw', virtualSizeBytes: raw.virtualSizeBytes });
  }

  if (request.formats.includes('containerdisk')) {
    throwIfAborted(signal, 'The export');
    reporter?.emit({ type: 'step', phase: 'export', message: `writing ${stem}.containerdisk.tar` });
    const containerDisk = await writeContainerDisk({
      diskPath: qcow2.path,
      outPath: join(stagingDir, `${stem}.containerdisk.tar`),
      labels: containerDiskLabels(meta.facts, qcow2Artifact.sha256),
      created: createdAt,
      tag: containerDiskTag({ kubernetesVersion: meta.facts.kubernetes.version, imageVersion: meta.facts.image.version }),
      ...signalOption,
      ...reporterOption,
    });
    reporter?.emit({ type: 'step', phase: 'export', message: `containerDisk manifest ${containerDisk.manifestDigest}` });
    record({ path: containerDisk.path, kind: 'containerdisk', sha256: containerDisk.sha256, sizeBytes: containerDisk.sizeBytes });
  }

  throwIfAborted(signal, 'The export');
  const sbomText = renderJson(buildSbom(inventory, { facts: meta.facts, diskSha256: qcow2Artifact.sha256 }));
  const sbomPath = join(stagingDir, SBOM_FILE);
  await writeFile(sbomPath, sbomText);
  record(textArtifact(sbomPath, 'sbom', sbomText));

  const manifestText = renderJson(
    buildManifest({ meta, inventory, finishedAt: now().toISOString(), exportMs: Math.round(performance.now() - started), artifacts: described }),
  );
  const manifestPath = join(stagingDir, MANIFEST_FILE);
  await writeFile(manifestPath, manifestText);
  artifacts.push(textArtifact(manifestPath, 'manifest', manifestText));

  artifacts.push(await writeSha256Sums(stagingDir, artifacts));
  return artifacts;
}

function rfc3339Seconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
