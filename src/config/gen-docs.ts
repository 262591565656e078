import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONFIGURATION_DOC_PATH, renderConfigurationDoc } from './docs.js';
import { kibPackageRoot } from './load.js';

// Entry point of `npm run docs:config` (run from dist/ after tsc): regenerates docs/configuration.md.
const target = join(kibPackageRoot(), CONFIGURATION_DOC_PATH);
await writeFile(target, renderConfigurationDoc(), 'utf8');
process.stdout.write(`${target}\n`);
