export { run, minimalEnv, type RunOptions, type RunResult } from './run.js';
export { exitsWithin, spawnDaemon, type DaemonExit, type DaemonOptions, type StartedDaemon, type StopOptions } from './daemon.js';
export { killAllDaemonsSync, liveProcessGroups, isPidAlive, isProcessRunning, signalGroup } from './registry.js';
export { findTool, checkTools, type ToolNeed } from './tools.js';
export { LineSplitter, TailBuffer, lastLines } from './lines.js';
