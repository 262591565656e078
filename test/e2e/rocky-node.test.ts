import { describe, it } from 'vitest';

/**
 * The network tier: the real Rocky Linux 9 GenericCloud base, Kubernetes packages from
 * pkgs.k8s.io, pre-pulled images from registry.k8s.io, `kubeadm init` on the artifact.
 * Opt-in because it needs internet access (and, to be quick, KVM).
 */
const enabled = process.env.KIB_E2E === '1';
const reason = 'set KIB_E2E=1 to run: needs internet access to the Rocky Linux mirror, pkgs.k8s.io and registry.k8s.io (unreachable on the offline CI machines)';

describe.skipIf(!enabled)(`e2e: Rocky Linux 9 node image${enabled ? '' : ` (skipped: ${reason})`}`, () => {
  it('builds the default image, verifies it with nothing skipped, and runs kubeadm init air-gapped', () => {
    throw new Error('not yet written: see docs/testing.md');
  });
});
