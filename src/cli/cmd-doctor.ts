import { findTool } from '../process/index.js';
import { detectAccelerator } from '../vm/index.js';
import { buildToolNeeds } from '../pipeline/preflight.js';
import { cacheDir, stateDir } from '../pipeline/dirs.js';
import { defineCommand } from './define.js';

export const doctorCommand = defineCommand({
  name: 'doctor',
  usage: 'doctor',
  summary: 'Check this machine: host tools, the accelerator (KVM or software emulation), cache and state directories.',
  help: 'Exits 1 when a tool `kib build` needs is missing.',
  options: {},
  async action(_parsed, context) {
    let missing = 0;
    const needs = buildToolNeeds({ outputs: { dir: '', formats: ['qcow2'], compress: true }, vm: { cpus: 1, memoryMiB: 1024, accelerator: 'auto', firmware: 'bios', bootTimeoutMs: 0 } });
    for (const need of needs) {
      const path = await findTool(need.command);
      if (path === undefined) missing += 1;
      context.stdout.write(`${path === undefined ? 'MISSING' : 'ok     '} ${need.command.padEnd(20)} ${path ?? `install ${need.packageName} (to ${need.purpose})`}\n`);
    }
    const accel = await detectAccelerator('auto');
    context.stdout.write(`accel   ${accel.accelerator.padEnd(20)} ${accel.reason}\n`);
    context.stdout.write(`cache   ${cacheDir(context.env)}\nstate   ${stateDir(context.env)}\n`);
    return missing === 0 ? 0 : 1;
  },
});
