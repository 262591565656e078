export { cacheDir, stateDir } from '../core/dirs.js';

/** A sortable, unique build id: 20261121T122500Z-rocky-9-3f2a. */
export function newBuildId(name: string, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const random = Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, '0');
  return `${stamp}-${name}-${random}`;
}
