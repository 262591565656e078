import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, parseDuration, parseSize } from '../../../src/config/units.js';

describe('parseSize', () => {
  it.each([
    ['20G', 20 * 1024 ** 3],
    ['512M', 512 * 1024 ** 2],
    ['1.5G', 1.5 * 1024 ** 3],
    ['20GiB', 20 * 1024 ** 3],
    ['20gb', 20 * 1024 ** 3],
    ['4K', 4096],
    ['1T', 1024 ** 4],
    ['1024', 1024],
    [' 2G ', 2 * 1024 ** 3],
  ])('reads %j', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it('takes a whole number of bytes as a number', () => {
    expect(parseSize(21474836480)).toBe(21474836480);
  });

  it.each(['lots', '', '20X', '-1G', 'G', '1.2.3G'])('rejects %j with the expected form in the message', (text) => {
    expect(() => parseSize(text)).toThrow(`expected a size like "20G", got ${JSON.stringify(text)}`);
  });

  it('rejects sizes that are not whole bytes', () => {
    expect(() => parseSize('0.1K')).toThrow('not a whole number of bytes');
    expect(() => parseSize(1.5)).toThrow('whole number of bytes');
  });
});

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['10m', 600_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1.5s', 1500],
  ])('reads %j', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('rejects a bare number, asking for a unit', () => {
    expect(() => parseDuration(600)).toThrow('add a unit');
    expect(() => parseDuration('600')).toThrow('expected a duration like');
  });

  it.each(['10 minutes', 'm10', '', '10d'])('rejects %j', (text) => {
    expect(() => parseDuration(text)).toThrow('expected a duration like');
  });
});

describe('formatting', () => {
  it('shows sizes in binary units', () => {
    expect(formatBytes(20 * 1024 ** 3)).toBe('20 GiB');
    expect(formatBytes(1.5 * 1024 ** 3)).toBe('1.5 GiB');
    expect(formatBytes(512)).toBe('512 B');
  });

  it('shows durations in a form parseDuration reads back', () => {
    for (const ms of [600_000, 5_400_000, 30_000, 1500, 500, 3_600_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(formatDuration(600_000)).toBe('10m');
    expect(formatDuration(5_400_000)).toBe('1h30m');
  });
});
