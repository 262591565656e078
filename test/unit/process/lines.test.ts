import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../../../src/process/lines.js';

function split(chunks: readonly string[]): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  for (const chunk of chunks) splitter.push(chunk);
  splitter.flush();
  return lines;
}

describe('LineSplitter', () => {
  it('splits at \\n and \\r\\n and delivers an unterminated last line on flush', () => {
    expect(split(['a\nb\r\nc'])).toEqual(['a', 'b', 'c']);
  });

  it('delivers each redraw of a \\r progress meter as its own line (qemu-img -p)', () => {
    expect(split(['    (0.00/100%)\r    (12.50/100%)\r', '    (100.00/100%)\r\n'])).toEqual([
      '    (0.00/100%)',
      '    (12.50/100%)',
      '    (100.00/100%)',
    ]);
  });

  it('keeps a \\r\\n split across two chunks as one line break', () => {
    expect(split(['one\r', '\ntwo\n'])).toEqual(['one', 'two']);
  });

  it('treats a \\r at the end of a chunk followed by text as a break', () => {
    expect(split(['10%\r', '20%\r'])).toEqual(['10%', '20%']);
  });

  it('holds a partial line across chunks', () => {
    expect(split(['par', 'tial\nnext'])).toEqual(['partial', 'next']);
  });
});
