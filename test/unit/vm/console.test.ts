import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cleanConsoleText, readConsoleTail } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

describe('console log', () => {
  it('strips terminal escapes and carriage returns that firmware and boot loaders write', () => {
    expect(cleanConsoleText('\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01HBooting `Debian`\r\n\x1bcLoading\x07 Linux\r\n')).toBe(
      'Booting `Debian`\nLoading Linux\n',
    );
  });

  it('returns the last lines of a long log, without the partial first line of the read window', async () => {
    const path = join(tempDir('console'), 'console.log');
    const lines = Array.from({ length: 5_000 }, (_, i) => `[ ${i}.000000] kernel line ${i}`);
    writeFileSync(path, `${lines.join('\r\n')}\r\n\r\n`);
    const tail = await readConsoleTail(path, 3);
    expect(tail).toBe('[ 4997.000000] kernel line 4997\n[ 4998.000000] kernel line 4998\n[ 4999.000000] kernel line 4999');
  });

  it('is empty for a console log that does not exist (yet)', async () => {
    expect(await readConsoleTail(join(tempDir('console-none'), 'missing.log'))).toBe('');
  });
});
