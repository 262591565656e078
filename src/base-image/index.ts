export { findChecksum, parseChecksumFile } from './checksum.js';
export { type BaseImageSource, type FetchBaseImageOptions, type FetchedBaseImage, fetchBaseImage, OFFLINE_HINT, rockyVaultUrl } from './fetch.js';
export { type BaseStoreMetadata, baseStoreDir, detectImageFormat, findStoredByUrl, readStoreMetadata, storedImagePath } from './store.js';
