import { describe, expect, it } from 'vitest';
import { run } from '../../../src/process/index.js';
import { createConfigDriveSeed, createNoCloudSeed, isoArgs } from '../../../src/vm/index.js';
import { tempDir } from '../process/helpers.js';

async function volumeId(iso: string): Promise<string> {
  const { stdout } = await run('isoinfo', ['-d', '-i', iso]);
  return /^Volume id: (.*)$/m.exec(stdout)?.[1]?.trim() ?? '';
}

async function listing(iso: string): Promise<string[]> {
  const { stdout } = await run('isoinfo', ['-R', '-f', '-i', iso]);
  return stdout.split('\n').filter((line) => line !== '').sort();
}

async function extract(iso: string, path: string): Promise<string> {
  return (await run('isoinfo', ['-R', '-i', iso, '-x', path])).stdout;
}

describe('isoArgs', () => {
  it('builds xorriso and genisoimage command lines with Joliet and Rock Ridge', () => {
    const options = { outputPath: '/w/cidata.iso', volumeId: 'cidata', sourceDir: '/w/cidata.d' };
    expect(isoArgs('xorriso', options)).toEqual([
      '-as',
      'mkisofs',
      '-quiet',
      '-output',
      '/w/cidata.iso',
      '-volid',
      'cidata',
      '-joliet',
      '-rock',
      '/w/cidata.d',
    ]);
    expect(isoArgs('genisoimage', options)).toEqual(['-quiet', '-output', '/w/cidata.iso', '-volid', 'cidata', '-joliet', '-rock', '/w/cidata.d']);
  });
});

describe('createNoCloudSeed', () => {
  it('writes an ISO labelled cidata with user-data, meta-data and network-config at its root', async () => {
    const dir = tempDir('nocloud');
    const userData = '#cloud-config\nusers:\n  - name: kib\n';
    const iso = await createNoCloudSeed({
      dir,
      userData,
      metaData: { 'instance-id': 'i-1', 'local-hostname': 'node-1' },
      networkConfig: 'version: 2\nethernets: {}\n',
    });
    expect(iso).toBe(`${dir}/cidata.iso`);
    expect(await volumeId(iso)).toBe('cidata');
    expect(await listing(iso)).toEqual(['/meta-data', '/network-config', '/user-data']);
    expect(await extract(iso, '/user-data')).toBe(userData);
    expect(JSON.parse(await extract(iso, '/meta-data'))).toEqual({ 'instance-id': 'i-1', 'local-hostname': 'node-1' });
  });

  it('leaves network-config out when none is given and takes meta-data as text', async () => {
    const dir = tempDir('nocloud-min');
    const iso = await createNoCloudSeed({ dir, userData: '#cloud-config\n', metaData: 'instance-id: i-2\n' });
    expect(await listing(iso)).toEqual(['/meta-data', '/user-data']);
    expect(await extract(iso, '/meta-data')).toBe('instance-id: i-2\n');
  });
});

describe('createConfigDriveSeed', () => {
  it('writes an ISO labelled config-2 with the OpenStack latest tree', async () => {
    const dir = tempDir('configdrive');
    const metaData = { uuid: '3f2a', hostname: 'node-1', public_keys: { kib: 'ssh-ed25519 AAAA kib' } };
    const iso = await createConfigDriveSeed({
      dir,
      userData: '#cloud-config\n',
      metaData,
      networkData: { links: [], networks: [], services: [] },
    });
    expect(iso).toBe(`${dir}/config-2.iso`);
    expect(await volumeId(iso)).toBe('config-2');
    expect(await listing(iso)).toEqual([
      '/openstack',
      '/openstack/latest',
      '/openstack/latest/meta_data.json',
      '/openstack/latest/network_data.json',
      '/openstack/latest/user_data',
    ]);
    expect(JSON.parse(await extract(iso, '/openstack/latest/meta_data.json'))).toEqual(metaData);
    expect(await extract(iso, '/openstack/latest/user_data')).toBe('#cloud-config\n');
  });
});
