import { describe, expect, it } from 'vitest';
import type { CheckResult } from '../../../src/verify/check.js';
import { expectedFromManifest } from '../../../src/verify/expected.js';
import { guestChecks } from '../../../src/verify/guest-checks.js';
import { hygieneChecks, type ArtifactFs } from '../../../src/verify/hygiene.js';
import { runChecks } from '../../../src/verify/runner.js';
import { VERIFY_USER } from '../../../src/verify/verify-artifact.js';
import {
  DEBIAN_FAMILY_SKIPPED_CHECKS,
  DEBIAN_FAMILY_SKIP_DETAIL,
  OFFLINE_DEBIAN_SKIPPED_CHECKS,
  PACKAGE_SOURCE_SKIPPED_CHECKS,
} from '../../support/offline-skips.js';
import { fakeContext, goodDebianOfflineNode } from './fake-node.js';
import { offlineDebianManifest } from '../../support/manifests.js';

const REASON = 'pkgs.k8s.io is not reachable from the build VM';

/** manifest.json as the offline build of examples/debian-12.yaml writes it. */
const offlineManifest = { ...offlineDebianManifest, kubernetes: { ...offlineDebianManifest.kubernetes, skippedReason: REASON } };

const emptyFs: ArtifactFs = {
  readFile: async () => undefined,
  listDir: async () => undefined,
  stat: async () => undefined,
};

/** Runs both check lists the way `kib verify --grow 2G` does: hygiene with the build user, guest checks as the verify user. */
async function verifyOffline(): Promise<CheckResult[]> {
  const expected = expectedFromManifest(offlineManifest, { diskGrownToBytes: 4 * 1024 ** 3 + 2 * 1024 ** 3 });
  const hygiene = await runChecks(hygieneChecks, { fs: emptyFs, expected, buildUser: 'kib' });
  const guest = await runChecks(guestChecks, fakeContext(goodDebianOfflineNode(), expected, VERIFY_USER));
  return [...hygiene, ...guest];
}

describe('the checks kib verify skips on the offline Debian build (the vm tier expects the same set)', () => {
  it('are exactly OFFLINE_DEBIAN_SKIPPED_CHECKS', async () => {
    const skipped = (await verifyOffline()).filter((r) => r.status === 'skip').map((r) => r.id);
    expect(skipped.sort()).toEqual(OFFLINE_DEBIAN_SKIPPED_CHECKS);
  });

  it("give the package-source reason recorded in the image, or the Debian family's", async () => {
    const results = await verifyOffline();
    for (const id of PACKAGE_SOURCE_SKIPPED_CHECKS) {
      const result = results.find((r) => r.id === id);
      expect(result?.detail, id).toMatch(new RegExp(`: ${REASON.replace(/\./g, '\\.')}$`));
    }
    for (const id of DEBIAN_FAMILY_SKIPPED_CHECKS) expect(results.find((r) => r.id === id)?.detail, id).toBe(DEBIAN_FAMILY_SKIP_DETAIL);
  });
});
