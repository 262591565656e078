import { execFileSync } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';

/**
 * Bootstrap data shaped like what the Cluster API kubeadm bootstrap provider (CABPK) writes for
 * the first control-plane machine, as the Cluster API KubeVirt provider (CAPK) hands it to the VM
 * on a ConfigDrive: a Jinja-templated cloud-config that writes the kubeadm config and the cluster
 * CA, runs kubeadm, and marks success in the file CAPK reads over SSH. CAPK adds its own `capk`
 * user to every cloud-config it passes on. Shared by the vm tier (kubeadm replaced by a recorder)
 * and the e2e tier (the real kubeadm).
 */

/** Where CABPK's runcmd writes success, and what CAPK expects to read there. */
export const BOOTSTRAP_SUCCESS_FILE = '/run/cluster-api/bootstrap-success.complete';
export const KUBEADM_CONFIG_PATH = '/run/kubeadm/kubeadm.yaml';

/**
 * The vm tier's stand-in for kubeadm: a script that records its arguments and succeeds. Not under
 * /run, which Debian mounts noexec.
 */
export const KUBEADM_RECORDER_PATH = '/usr/local/bin/kib-test-record-kubeadm';
export const KUBEADM_RECORDED_ARGUMENTS_PATH = '/run/kib-test/kubeadm-arguments';

export interface ClusterCa {
  cert: string;
  key: string;
}

/** A throwaway cluster CA, as CABPK generates one per cluster and writes to control-plane nodes. */
export async function makeClusterCa(dir: string): Promise<ClusterCa> {
  await mkdir(dir, { recursive: true });
  const keyPath = join(dir, 'ca.key');
  const certPath = join(dir, 'ca.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-subj', '/CN=kubernetes', '-days', '2'], {
    stdio: 'ignore',
  });
  return { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8') };
}

/** CAPK's per-cluster SSH key: ECDSA P-384. */
export async function makeCapkKey(dir: string): Promise<{ privateKeyPath: string; publicKey: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const privateKeyPath = join(dir, 'capk_ecdsa');
  execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-b', '384', '-N', '', '-C', 'capk', '-f', privateKeyPath]);
  return { privateKeyPath, publicKey: (await readFile(`${privateKeyPath}.pub`, 'utf8')).trim() };
}

export interface CabpkUserDataOptions {
  capkPublicKey: string;
  ca: ClusterCa;
  kubernetesVersion: string;
  /**
   * What stands where CABPK writes `kubeadm`: `kubeadm` itself (e2e), or KUBEADM_RECORDER_PATH
   * (vm tier, where no Kubernetes packages can be installed).
   */
  kubeadm: 'kubeadm' | 'recorder';
}

export function cabpkControlPlaneUserData(options: CabpkUserDataOptions): string {
  // Jinja runs before YAML parsing, so these expressions may sit inside YAML strings.
  const nodeName = '{{ ds.meta_data.local_hostname }}';
  const kubeadmConfig = [
    'apiVersion: kubeadm.k8s.io/v1beta4',
    'kind: InitConfiguration',
    'nodeRegistration:',
    `  name: ${nodeName}`,
    '  criSocket: unix:///run/containerd/containerd.sock',
    '  kubeletExtraArgs:',
    '  - name: provider-id',
    `    value: kubevirt://${nodeName}`,
    '---',
    'apiVersion: kubeadm.k8s.io/v1beta4',
    'kind: ClusterConfiguration',
    `kubernetesVersion: v${options.kubernetesVersion}`,
    'networking:',
    '  podSubnet: 10.244.0.0/16',
    '',
  ].join('\n');
  const writeFiles: Record<string, unknown>[] = [
    { path: '/etc/kubernetes/pki/ca.crt', owner: 'root:root', permissions: '0640', content: options.ca.cert },
    { path: '/etc/kubernetes/pki/ca.key', owner: 'root:root', permissions: '0600', content: options.ca.key },
    { path: KUBEADM_CONFIG_PATH, owner: 'root:root', permissions: '0640', content: kubeadmConfig },
    // CABPK creates /run/cluster-api this way rather than with mkdir (it works on Windows too).
    { path: '/run/cluster-api/placeholder', owner: 'root:root', permissions: '0640', content: 'This placeholder file is used to create the /run/cluster-api sub directory\n' },
  ];
  let kubeadm = 'kubeadm';
  if (options.kubeadm === 'recorder') {
    kubeadm = KUBEADM_RECORDER_PATH;
    writeFiles.push({
      path: KUBEADM_RECORDER_PATH,
      owner: 'root:root',
      permissions: '0755',
      content: `#!/bin/sh\n# Stands in for kubeadm offline: records its arguments and succeeds.\nmkdir -p ${dirname(KUBEADM_RECORDED_ARGUMENTS_PATH)}\necho "$*" > ${KUBEADM_RECORDED_ARGUMENTS_PATH}\n`,
    });
  }
  const cloudConfig = {
    write_files: writeFiles,
    runcmd: [`${kubeadm} init --config ${KUBEADM_CONFIG_PATH} && echo success > ${BOOTSTRAP_SUCCESS_FILE}`],
    // What CAPK adds (string form of groups, as CAPK writes it).
    users: [{ name: 'capk', gecos: 'CAPK User', sudo: 'ALL=(ALL) NOPASSWD:ALL', groups: 'users, admin', ssh_authorized_keys: [options.capkPublicKey] }],
  };
  return `## template: jinja\n#cloud-config\n${stringify(cloudConfig, { lineWidth: 0 })}`;
}

/** Metadata KubeVirt writes on a ConfigDrive for VM `name` in `namespace`. */
export function configDriveMetaData(name: string, namespace = 'default'): Record<string, unknown> {
  return { instance_id: `${name}.${namespace}`, uuid: '6b69622d-6361-706b-0000-000000000001', hostname: name, name };
}
