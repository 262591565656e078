import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, sha256Hex } from '../../../src/config/canonical.js';

describe('canonicalJson', () => {
  it('sorts keys at every level and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
  });

  it('gives the same text for the same data in any key order', () => {
    expect(canonicalJson({ x: 1, y: { p: true, q: null } })).toBe(canonicalJson({ y: { q: null, p: true }, x: 1 }));
  });

  it('drops undefined properties like JSON.stringify and keeps array order', () => {
    expect(canonicalJson({ a: undefined, b: [2, 1, undefined] })).toBe('{"b":[2,1,null]}');
  });
});

describe('sha256Hex', () => {
  it('hashes strings as UTF-8 and bytes as they are', () => {
    const expected = createHash('sha256').update(Buffer.from('käse', 'utf8')).digest('hex');
    expect(sha256Hex('käse')).toBe(expected);
    expect(sha256Hex(Buffer.from('käse', 'utf8'))).toBe(expected);
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});
