import { describe, expect, it } from 'vitest';
import {
  compareDebianVersions,
  compareRpmVersions,
  debianPartCompare,
  parseDebianVersion,
  renderPackageVersion,
  rpmVersionCompare,
} from '../../../src/kubernetes-repo/version.js';

const sign = (n: number): number => (n === 0 ? 0 : Math.sign(n));

describe('rpmVersionCompare', () => {
  it.each([
    ['1.37.2', '1.37.2', 0],
    ['1.37.10', '1.37.9', 1],
    ['1.37.2', '1.37.10', -1],
    ['1.9.1', '1.10.0', -1],
    ['150500.1.1', '150500.1.2', -1],
    ['150500.2.1', '150500.1.9', 1],
    ['1.0', '1.0.1', -1],
    ['1.0a', '1.0', 1],
    ['1.0a', '1.0.1', -1],
    ['001', '1', 0],
    ['1.0~rc1', '1.0', -1],
    ['1.0~rc1', '1.0~rc2', -1],
    ['1.0^git1', '1.0', 1],
    ['1.0^git1', '1.0.1', -1],
    ['1_0', '1.0', 0],
    ['2a', '2.0', -1],
  ])('%s vs %s is %i', (a, b, expected) => {
    expect(sign(rpmVersionCompare(a, b))).toBe(expected);
    expect(sign(rpmVersionCompare(b, a))).toBe(expected === 0 ? 0 : -expected);
  });
});

describe('debianPartCompare', () => {
  it.each([
    ['1.37.2', '1.37.2', 0],
    ['1.37.10', '1.37.9', 1],
    ['1.0~rc1', '1.0', -1],
    ['1.0~~', '1.0~', -1],
    ['1.0', '1.0a', -1],
    ['1.0a', '1.0+', -1],
    ['1.1', '1.01', 0],
    ['1.1', '1.2', -1],
    ['2.1', '1.10', 1],
  ])('%s vs %s is %i', (a, b, expected) => {
    expect(sign(debianPartCompare(a, b))).toBe(expected);
    expect(sign(debianPartCompare(b, a))).toBe(expected === 0 ? 0 : -expected);
  });
});

describe('full versions', () => {
  it('compare rpm epoch, then version, then release', () => {
    const v = (epoch: number, version: string, release: string) => ({ epoch, version, release });
    expect(compareRpmVersions(v(0, '1.37.2', '150500.1.1'), v(0, '1.37.2', '150500.1.1'))).toBe(0);
    expect(compareRpmVersions(v(0, '1.37.10', '150500.1.1'), v(0, '1.37.9', '150500.9.9'))).toBeGreaterThan(0);
    expect(compareRpmVersions(v(0, '1.37.2', '150500.1.2'), v(0, '1.37.2', '150500.1.1'))).toBeGreaterThan(0);
    expect(compareRpmVersions(v(1, '1.0.0', '1'), v(0, '9.0.0', '1'))).toBeGreaterThan(0);
  });

  it('split and compare Debian versions at the first colon and the last hyphen', () => {
    expect(parseDebianVersion('1.37.2-1.1')).toEqual({ epoch: 0, version: '1.37.2', release: '1.1' });
    expect(parseDebianVersion('2:1.0-rc-3')).toEqual({ epoch: 2, version: '1.0-rc', release: '3' });
    expect(parseDebianVersion('1.7.1')).toEqual({ epoch: 0, version: '1.7.1', release: '' });
    const cmp = (a: string, b: string): number => sign(compareDebianVersions(parseDebianVersion(a), parseDebianVersion(b)));
    expect(cmp('1.37.10-1.1', '1.37.9-1.1')).toBe(1);
    expect(cmp('1.37.2-1.2', '1.37.2-1.1')).toBe(1);
    expect(cmp('1.37.2~rc.1-1.1', '1.37.2-1.1')).toBe(-1);
    expect(cmp('1:1.0-1', '2.0-1')).toBe(1);
  });

  it('render the string the package managers take', () => {
    expect(renderPackageVersion({ epoch: 0, version: '1.37.2', release: '150500.1.1' })).toBe('1.37.2-150500.1.1');
    expect(renderPackageVersion({ epoch: 1, version: '1.0', release: '2' })).toBe('1:1.0-2');
    expect(renderPackageVersion({ epoch: 0, version: '1.7.1', release: '' })).toBe('1.7.1');
  });
});
