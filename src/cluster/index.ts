export * from './model.js';
export * from './bootstrap.js';
export * from './cluster.js';
