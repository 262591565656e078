export { acquireLock } from './lock.js';
export type { HeldLock, LockOwner } from './lock.js';
export { DEFAULT_LAYER_STORE_MAX_BYTES, KEY_FILE, LAYER_FILE, LayerStore, META_FILE } from './store.js';
export type { LayerBacking, LayerEntry, LayerInfo, LayerLookup, LayerMeta, PruneResult, PutRequest } from './store.js';
