import { describe, expect, it } from 'vitest';
import { findChecksum, parseChecksumFile } from '../../../src/base-image/checksum.js';

const A = '92c206cc6f790c61583247eefe87890f8828420662c17cacf247cec78ab4eec8';
const B = '15d81d3434b298142b2fdd8fb54aef2662684db5c082cc191c3c79762ed6360c';
const C = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('parseChecksumFile', () => {
  it('reads GNU sha256sum output in text and binary mode', () => {
    const text = `${A}  debian-12-genericcloud-amd64.qcow2\n${B} *noble-server-cloudimg-amd64.img\n`;
    expect(parseChecksumFile(text)).toEqual(
      new Map([
        ['debian-12-genericcloud-amd64.qcow2', A],
        ['noble-server-cloudimg-amd64.img', B],
      ]),
    );
  });

  it('reads BSD lines with their size comments, and lowercases the hex', () => {
    const text = [
      '# Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2: 645988352 bytes',
      `SHA256 (Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2) = ${A}`,
      '# Rocky-9-GenericCloud-Base.latest.x86_64.qcow2: 645988352 bytes',
      `SHA256 (Rocky-9-GenericCloud-Base.latest.x86_64.qcow2) = ${A.toUpperCase()}`,
      '',
    ].join('\r\n');
    expect(parseChecksumFile(text)).toEqual(
      new Map([
        ['Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2', A],
        ['Rocky-9-GenericCloud-Base.latest.x86_64.qcow2', A],
      ]),
    );
  });

  it('reads the checksums inside a PGP clear-signed file and nothing of the signature', () => {
    const text = [
      '-----BEGIN PGP SIGNED MESSAGE-----',
      'Hash: SHA256',
      '',
      '# Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2: 645988352 bytes',
      `SHA256 (Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2) = ${A}`,
      `- ${B}  -dash-named.qcow2`,
      '-----BEGIN PGP SIGNATURE-----',
      '',
      'iQIzBAEBCAAdFiEEIcslauFvxUxuZSlJcC1CbTUNJ10FAmZRtZgACgkQcC1CbTUN',
      `${C}  not-a-real-entry`,
      '=abcd',
      '-----END PGP SIGNATURE-----',
      '',
    ].join('\n');
    expect(parseChecksumFile(text)).toEqual(
      new Map([
        ['Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2', A],
        ['-dash-named.qcow2', B],
      ]),
    );
  });

  it('ignores other algorithms, short hex and junk', () => {
    const text = [`SHA512 (x.qcow2) = ${A}${A}`, 'abc123  short.qcow2', 'MD5 (x.qcow2) = 0123', 'hello world', ''].join('\n');
    expect(parseChecksumFile(text).size).toBe(0);
  });
});

describe('findChecksum', () => {
  it('finds an entry by exact name or by the last path component', () => {
    const text = `${A}  ./images/base.qcow2\n${B}  other.qcow2\n`;
    expect(findChecksum(text, 'base.qcow2')).toBe(A);
    expect(findChecksum(text, 'images/base.qcow2')).toBe(A);
    expect(findChecksum(text, 'other.qcow2')).toBe(B);
    expect(findChecksum(text, 'missing.qcow2')).toBeUndefined();
  });

  it('does not take a similar name for the one asked for', () => {
    const text = `SHA256 (Rocky-9-GenericCloud-LVM-9.8-20260525.0.x86_64.qcow2) = ${B}\n`;
    expect(findChecksum(text, 'Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2')).toBeUndefined();
  });
});
