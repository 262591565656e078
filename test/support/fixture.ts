import { ensureDebianFixture as ensureFixture } from '../../scripts/fixture.mjs';

/**
 * The absolute path of the offline Debian 12 test base image (qcow2), built on first use and
 * cached by its recipe (test/fixtures/debian-base/). Test files that ask at the same time wait
 * for one build. The image is shared: use it as a backing file, never write to it.
 */
export async function ensureDebianFixture(): Promise<string> {
  return ensureFixture();
}
