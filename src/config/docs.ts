import * as z from 'zod';
import { DEFAULT_IMAGE_YAML } from './default-image.js';
import { imageConfigSchema } from './schema.js';

/** Where the generated reference lives, relative to the package root. */
export const CONFIGURATION_DOC_PATH = 'docs/configuration.md';

interface JsonSchemaNode {
  type?: string;
  enum?: unknown[];
  default?: unknown;
  description?: string;
  docType?: string;
  /** Replaces the default column (for fields that are required in a way the schema cannot show). */
  docDefault?: string;
  properties?: Record<string, JsonSchemaNode>;
  required?: string[];
}

interface Row {
  path: string;
  type: string;
  default: string;
  description: string;
}

/**
 * docs/configuration.md, generated from the schema: every field with its type, default and
 * description. A unit test fails when the committed file differs from this output.
 */
export function renderConfigurationDoc(): string {
  const root = z.toJSONSchema(imageConfigSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
  const rows: Row[] = [];
  collectRows(root, [], true, rows);
  const table = [
    '| Field | Type | Default | Description |',
    '|---|---|---|---|',
    ...rows.map((row) => `| \`${row.path}\` | ${cell(row.type)} | ${cell(row.default)} | ${cell(row.description)} |`),
  ];
  return `${[
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs:config`. Do not edit by hand: a unit test fails when this file is stale. -->',
    '',
    '`kib` reads its build definition from `image.yaml`: the file given with `--config`, else `./image.yaml` in the',
    'working directory, else a built-in default that is the same as the `image.yaml` at the root of the kib repository.',
    'Relative paths in the file are resolved from the file\'s own directory. Unknown keys are errors, and every problem',
    'in the file is reported at once, each with its field path and line.',
    '',
    '## Fields',
    '',
    ...table,
    '',
    '## Sizes and durations',
    '',
    '- A **size** is a number with an optional unit `K`, `M`, `G` or `T` (powers of 1024, as in `qemu-img`; `GiB`',
    '  and `GB` are read the same way), or a plain number of bytes: `20G`, `512M`, `1.5G`, `21474836480`.',
    '- A **duration** is a number with a unit `ms`, `s`, `m` or `h`, or several in a row: `30s`, `10m`, `1h`,',
    '  `1h30m`. A bare number is rejected because it would be ambiguous.',
    '',
    '## The lock file',
    '',
    '`image.lock` (beside `image.yaml`; `foo.yaml` has `foo.lock`) records what the definition resolved to when',
    '`kib lock --update` last ran: the base image, and the Kubernetes release with the exact package builds of its',
    'pkgs.k8s.io repository for the image\'s OS family and architecture:',
    '',
    '```yaml',
    'lockVersion: 1',
    'base:',
    '  url: "https://example.org/images/base.qcow2"',
    '  sha256: <64 hex digits>',
    '  sizeBytes: 645988352',
    'kubernetes:',
    '  version: "1.37.2"',
    '  series: "v1.37"',
    '  osFamily: redhat',
    '  arch: "x86_64"',
    '  source: "https://pkgs.k8s.io/core:/stable:/v1.37/rpm/"',
    '  packages:',
    '    kubeadm: "1.37.2-150500.1.1"',
    '    kubelet: "1.37.2-150500.1.1"',
    '    kubectl: "1.37.2-150500.1.1"',
    '    cri-tools: "<version-release>"',
    '    kubernetes-cni: "<version-release>"',
    '```',
    '',
    '(The package versions above show the format only.) While `base.url` is the URL in the lock, the lock pins',
    '`base.sha256` (a sha256 pinned in `image.yaml` itself takes precedence, with a warning that the lock is stale).',
    'While `kubernetes.version` is the locked release (or `kubernetes.series` its series) and `base.osFamily` the',
    'locked family, a build installs exactly the locked package builds: `name-<version-release>` with dnf,',
    '`name=<version-revision>` with apt. A `kubernetes.series` needs the lock to name its release; without one the',
    'build does not start. When `base.url` or the Kubernetes setting changes, that part of the lock no longer applies',
    'and `kib` says so until `kib lock --update` is run. Without a lock, `kubernetes.version` is installed from the',
    'series\' repository at that release (its newest build) with the repository\'s newest cri-tools and kubernetes-cni.',
    '',
    '`kib lock --update` reads the series\' repository over HTTP (`rpm/repodata/repomd.xml` and its primary metadata,',
    'or the flat `deb/Packages.gz`, `.xz` or plain index; gzip is read directly, zstd and xz with the host tools) before it touches the base image, so without network access it fails within',
    'seconds, naming the URL, and leaves the lock file unchanged. The environment variable `KIB_KUBERNETES_REPO_BASE`',
    'replaces `https://pkgs.k8s.io/core:/stable:/` with a mirror of the same layout. The lock is only ever rewritten on',
    'request, and atomically. Lock files written before the `kubernetes` section existed stay valid.',
    '',
    '## Command-line overrides',
    '',
    '| Option | Overrides | Notes |',
    '|---|---|---|',
    '| `--base PATH\\|URL` | `base.url` | Relative to the working directory. `base.checksumUrl` and `base.sha256` from the file are dropped. |',
    '| `--base-sha256 HEX` | `base.sha256` | Verifies the base (given with `--base` or from the file) against this sha256. |',
    '| `--output DIR` | `outputs.dir` | Relative to the working directory. |',
    '| `--accelerator auto\\|kvm\\|tcg` | `vm.accelerator` | |',
    '| `--firmware bios\\|uefi` | `vm.firmware` | |',
    '',
    '## The default build definition',
    '',
    '```yaml',
    DEFAULT_IMAGE_YAML.trimEnd(),
    '```',
  ].join('\n')}\n`;
}

function collectRows(node: JsonSchemaNode, path: string[], required: boolean, rows: Row[]): void {
  if (path.length > 0) {
    rows.push({
      path: path.join('.'),
      type: typeOf(node),
      default: node.docDefault !== undefined ? node.docDefault : required ? '*required*' : node.default === undefined ? '—' : `\`${formatDefault(node.default)}\``,
      description: node.description ?? '',
    });
  }
  if (node.type !== 'object' || node.properties === undefined) return;
  for (const [key, child] of Object.entries(node.properties)) {
    // A child of an optional section is required only if the section is written at all; showing its default is clearer.
    collectRows(child, [...path, key], required && (node.required ?? []).includes(key), rows);
  }
}

function typeOf(node: JsonSchemaNode): string {
  if (node.enum !== undefined) return node.enum.map((value) => `\`${String(value)}\``).join(' \\| ');
  return node.docType ?? node.type ?? 'any';
}

function formatDefault(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(String).join(', ')}]`;
  if (value !== null && typeof value === 'object') return Object.keys(value).length === 0 ? '{}' : JSON.stringify(value);
  return String(value);
}

/** Escapes what would break a Markdown table cell, leaving already escaped pipes alone. */
function cell(text: string): string {
  return text.replace(/\n/g, ' ').replace(/(?<!\\)\|/g, '\\|');
}
