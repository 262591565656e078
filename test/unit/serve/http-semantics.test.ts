import { describe, expect, it } from 'vitest';
import {
  ifRangeHolds,
  notModifiedSince,
  parseEntityTagList,
  parseRangeHeader,
  strongEntityTagMatch,
  weakEntityTagMatch,
} from '../../../src/serve/http-semantics.js';
import { parseSha256Sums } from '../../../src/serve/sha256sums.js';

describe('parseRangeHeader', () => {
  const size = 1000;

  it.each([
    ['bytes=0-99', { kind: 'single', start: 0, end: 99 }],
    ['bytes=500-', { kind: 'single', start: 500, end: 999 }],
    ['bytes=-100', { kind: 'single', start: 900, end: 999 }],
    ['bytes=-5000', { kind: 'single', start: 0, end: 999 }],
    ['bytes=990-2000', { kind: 'single', start: 990, end: 999 }],
    ['bytes=999-999', { kind: 'single', start: 999, end: 999 }],
    ['BYTES = 1-2', { kind: 'single', start: 1, end: 2 }],
    ['bytes=0-0,', { kind: 'single', start: 0, end: 0 }],
    ['bytes=0-99999999999999999999', { kind: 'single', start: 0, end: 999 }],
  ])('%s is one satisfiable range', (header, expected) => {
    expect(parseRangeHeader(header, size)).toEqual(expected);
  });

  it.each([['bytes=1000-'], ['bytes=1000-1001'], ['bytes=-0'], ['bytes=99999999999999999999-']])(
    '%s is unsatisfiable',
    (header) => {
      expect(parseRangeHeader(header, size)).toEqual({ kind: 'unsatisfiable' });
    },
  );

  it.each([[undefined], ['items=0-1'], ['bytes='], ['bytes=abc'], ['bytes=5-1'], ['bytes=-'], ['bytes=1-2-3'], ['0-99'], ['bytes=0x10-']])(
    '%s is ignored (full response)',
    (header) => {
      expect(parseRangeHeader(header, size)).toEqual({ kind: 'none' });
    },
  );

  it('answers several ranges with the full representation, unless none is satisfiable', () => {
    expect(parseRangeHeader('bytes=0-1, 5-6', size)).toEqual({ kind: 'multiple' });
    expect(parseRangeHeader('bytes=2000-, 3000-', size)).toEqual({ kind: 'unsatisfiable' });
    // One malformed member invalidates the whole header.
    expect(parseRangeHeader('bytes=0-1, x', size)).toEqual({ kind: 'none' });
  });

  it('treats every range of an empty file as unsatisfiable', () => {
    expect(parseRangeHeader('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRangeHeader('bytes=-10', 0)).toEqual({ kind: 'unsatisfiable' });
  });
});

describe('entity tags', () => {
  const etag = '"sha256:abc"';

  it('splits lists, keeping commas inside quoted tags', () => {
    expect(parseEntityTagList('"a", W/"b,c" ,"d"')).toEqual(['"a"', 'W/"b,c"', '"d"']);
    expect(parseEntityTagList('*')).toEqual(['*']);
  });

  it('If-None-Match uses weak comparison', () => {
    expect(weakEntityTagMatch('"x", "sha256:abc"', etag)).toBe(true);
    expect(weakEntityTagMatch('W/"sha256:abc"', etag)).toBe(true);
    expect(weakEntityTagMatch('*', etag)).toBe(true);
    expect(weakEntityTagMatch('"sha256:abd"', etag)).toBe(false);
  });

  it('If-Match uses strong comparison', () => {
    expect(strongEntityTagMatch('"sha256:abc"', etag)).toBe(true);
    expect(strongEntityTagMatch('W/"sha256:abc"', etag)).toBe(false);
  });

  it('If-Range accepts the exact strong tag or the exact Last-Modified date', () => {
    const lastModified = 'Tue, 01 Jul 2025 10:00:00 GMT';
    expect(ifRangeHolds('"sha256:abc"', etag, lastModified)).toBe(true);
    expect(ifRangeHolds('W/"sha256:abc"', etag, lastModified)).toBe(false);
    expect(ifRangeHolds('"other"', etag, lastModified)).toBe(false);
    expect(ifRangeHolds(lastModified, etag, lastModified)).toBe(true);
    expect(ifRangeHolds('Tue, 01 Jul 2025 09:59:59 GMT', etag, lastModified)).toBe(false);
    expect(ifRangeHolds('not a date', etag, lastModified)).toBe(false);
  });

  it('If-Modified-Since compares at one-second resolution', () => {
    const mtimeMs = Date.parse('Tue, 01 Jul 2025 10:00:00 GMT') + 700;
    expect(notModifiedSince('Tue, 01 Jul 2025 10:00:00 GMT', mtimeMs)).toBe(true);
    expect(notModifiedSince('Tue, 01 Jul 2025 09:59:59 GMT', mtimeMs)).toBe(false);
    expect(notModifiedSince('garbage', mtimeMs)).toBe(false);
  });
});

describe('parseSha256Sums', () => {
  const a = 'a'.repeat(64);
  const b = 'B'.repeat(64);

  it('reads GNU and BSD lines and lower-cases digests', () => {
    const text = `${a}  disk.qcow2\n${b} *disk.raw\r\nSHA256 (image.tar) = ${a}\n\n`;
    expect(parseSha256Sums(text)).toEqual([
      { name: 'disk.qcow2', sha256: a },
      { name: 'disk.raw', sha256: 'b'.repeat(64) },
      { name: 'image.tar', sha256: a },
    ]);
  });

  it('drops names that are not plain files beside the sums file', () => {
    const text = [`${a}  ../escape`, `${a}  sub/file`, `${a}  .hidden`, `${a}  back\\slash`, `${a}  ok`, 'junk'].join('\n');
    expect(parseSha256Sums(text).map((entry) => entry.name)).toEqual(['ok']);
  });
});
