import { z } from 'zod';
import { KibError } from './errors.js';

/**
 * What the playbook reports about the guest before sealing (/var/lib/kib/inventory.json):
 * the source of the SBOM and of the manifest's guest section.
 */
const inventorySchema = z.object({
  os: z.object({ id: z.string(), versionId: z.string(), prettyName: z.string() }),
  packages: z.array(z.object({ name: z.string(), version: z.string(), arch: z.string(), manager: z.enum(['rpm', 'dpkg']) })),
  binaries: z.array(z.object({ name: z.string(), path: z.string(), version: z.string(), sha256: z.string() })),
  images: z.array(z.object({ ref: z.string(), digest: z.string() })),
  kubernetes: z.object({ installed: z.boolean(), skippedReason: z.string().nullable(), version: z.string().nullable() }),
});

export type GuestInventory = z.infer<typeof inventorySchema>;

export function parseGuestInventory(text: string): GuestInventory {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new KibError('INVENTORY_INVALID', `The guest inventory is not JSON: ${(error as Error).message}`);
  }
  const parsed = inventorySchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new KibError('INVENTORY_INVALID', `The guest inventory does not have the expected shape: ${issues}`);
  }
  return parsed.data;
}
