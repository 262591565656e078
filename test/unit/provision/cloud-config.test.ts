import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { LAYER_STASH_DIR, LAYER_STASH_READY, LAYER_STASH_RESTORED, renderStashBuildUserScript } from '../../../src/provision/cloud-config.js';

describe('renderStashBuildUserScript', () => {
  const script = renderStashBuildUserScript('kib');

  it('is valid POSIX shell (dash parses it)', () => {
    expect(() => execFileSync('sh', ['-n', '-c', script])).not.toThrow();
  });

  it('stashes to tmpfs, removes the user, syncs and says so before it waits; restores only after the answer', () => {
    const at = (text: string): number => {
      const index = script.indexOf(text);
      expect(index, text).toBeGreaterThanOrEqual(0);
      return index;
    };
    expect(script).toContain(`stash=${LAYER_STASH_DIR}`);
    expect(LAYER_STASH_DIR.startsWith('/run/')).toBe(true);
    const removed = at('userdel --force --remove "$user"');
    expect(at('cp -a "$f" "$stash/"')).toBeLessThan(removed);
    expect(at('rm -rf /var/lib/cloud/instances')).toBeGreaterThan(removed);
    const ready = at(`echo '${LAYER_STASH_READY}'`);
    expect(at('sync')).toBeLessThan(ready);
    const wait = at('read -r _');
    expect(wait).toBeGreaterThan(ready);
    expect(at('cp -a "$stash/$f" "/etc/$f"')).toBeGreaterThan(wait);
    expect(at(`echo '${LAYER_STASH_RESTORED}'`)).toBeGreaterThan(at('getent passwd "$user" >/dev/null || fail'));
  });
});
