import { parseSize } from '../config/index.js';
import { UsageError } from '../core/errors.js';
import { DEFAULT_LAYER_STORE_MAX_BYTES, LayerStore } from '../layers/index.js';
import { cacheDir, stateDir } from '../pipeline/dirs.js';
import { reapStaleWorkDirs } from '../pipeline/work-dirs.js';
import { formatBytes, formatDuration } from '../report/renderers.js';
import { stringOption } from './args.js';
import { defineCommand } from './define.js';

/** The layer store's size cap: $KIB_LAYER_CACHE_MAX_SIZE (e.g. "30G"), else the default. */
export function layerStoreFor(env: NodeJS.ProcessEnv): LayerStore {
  const text = env.KIB_LAYER_CACHE_MAX_SIZE;
  return LayerStore.inCache(cacheDir(env), { maxSizeBytes: text === undefined || text === '' ? DEFAULT_LAYER_STORE_MAX_BYTES : parseSize(text) });
}

export const cacheCommand = defineCommand({
  name: 'cache',
  usage: 'cache ls | cache prune [--max-size SIZE] [--all]',
  summary: 'List or prune the layer store (provisioning stages cached as qcow2 layers) and work directories of builds that are gone.',
  help: [
    'ls                 one line per layer: key, stage, size, last use, backing; then the total',
    'prune              remove least recently used layers until the store fits the cap, and the',
    '                   work directories (overlay disks) of builds whose kib is gone',
    '  --max-size SIZE  the cap for this prune (default: $KIB_LAYER_CACHE_MAX_SIZE, else 30G)',
    '  --all            remove every layer (layers in use by a running build are kept)',
    '',
    'Layers live in <cache>/layers ($KIB_CACHE_DIR); build work directories in <state>/builds/<id>/work.',
  ].join('\n'),
  options: { 'max-size': { type: 'string' }, all: { type: 'boolean' } },
  async action(parsed, context) {
    const [sub, ...extra] = parsed.positionals;
    if ((sub !== 'ls' && sub !== 'prune') || extra.length > 0) throw new UsageError('Usage: kib cache ls | kib cache prune [--max-size SIZE] [--all]');
    const store = layerStoreFor(context.env);
    if (sub === 'ls') {
      const entries = await store.list();
      const total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
      if (parsed.globals.json) {
        const rows = entries.map((e) => ({ key: e.key, stage: e.meta.stage, sizeBytes: e.sizeBytes, createdAt: e.meta.createdAt, lastUsedAt: new Date(e.lastUsedMs).toISOString(), backing: e.meta.backing, inUse: e.leased }));
        context.stdout.write(`${JSON.stringify({ root: store.root, entries: rows, totalBytes: total, maxSizeBytes: store.maxSizeBytes }, null, 2)}\n`);
        return 0;
      }
      const now = Date.now();
      for (const e of entries) {
        const backing = e.meta.backing.kind === 'layer' ? `on ${e.meta.backing.key.slice(0, 12)}` : e.meta.backing.kind === 'file' ? `on ${e.meta.backing.path}` : 'standalone';
        const age = formatDuration(now - Date.parse(e.meta.createdAt));
        context.stdout.write(`${e.key.slice(0, 12)}  ${e.meta.stage.padEnd(10)}  ${formatBytes(e.sizeBytes).padStart(10)}  created ${age} ago, used ${formatDuration(now - e.lastUsedMs)} ago  ${backing}${e.leased ? '  (in use)' : ''}\n`);
      }
      context.stdout.write(`${entries.length} layer(s), ${formatBytes(total)} of ${formatBytes(store.maxSizeBytes)} in ${store.root}\n`);
      return 0;
    }
    const maxText = stringOption(parsed.values, 'max-size');
    const result = await store.prune({ ...(maxText === undefined ? {} : { maxSizeBytes: parseSize(maxText) }), all: parsed.values.all === true, signal: context.signal });
    const work = await reapStaleWorkDirs(stateDir(context.env));
    const workBytes = work.reduce((sum, w) => sum + w.sizeBytes, 0);
    if (parsed.globals.json) {
      context.stdout.write(`${JSON.stringify({ removed: result.removed, freedBytes: result.freedBytes, tempDirsRemoved: result.tempDirsRemoved, workDirsRemoved: work }, null, 2)}\n`);
      return 0;
    }
    for (const r of result.removed) context.stdout.write(`removed ${r.key.slice(0, 12)}  ${r.stage.padEnd(10)}  ${formatBytes(r.sizeBytes).padStart(10)}  (${r.why})\n`);
    for (const w of work) context.stdout.write(`removed ${w.path}  ${formatBytes(w.sizeBytes)}  (its build is gone)\n`);
    context.stdout.write(`freed ${formatBytes(result.freedBytes + workBytes)}: ${result.removed.length} layer(s), ${work.length} work dir(s), ${result.tempDirsRemoved} unfinished put(s)\n`);
    return 0;
  },
});
