import { createHash, randomInt, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { KibError } from '../core/errors.js';
import { run } from '../process/index.js';
import { API_PORT, BRIDGE_IP, CLUSTER_DOMAIN, POD_NETWORK, REGISTRY_PORT, SERVICE_NETWORK, type ClusterNode } from './model.js';

/**
 * What kubeadm needs so that every node's cloud-config can be written before any node boots: the
 * cluster CA (kib makes it, so its hash is known up front and joins verify it, with no unsafe
 * skip) and a bootstrap token that never expires (`ttl: 0s`), because a cluster resumed from a
 * snapshot days later may still add nodes with it.
 */
export interface ClusterCa {
  certPem: string;
  keyPem: string;
  /** `sha256:<hex>` of the CA's DER SubjectPublicKeyInfo, as `kubeadm join` expects. */
  hash: string;
}

export const KUBEADM_INIT_CONFIG_PATH = '/etc/kib/kubeadm-init.yaml';
export const BOOTSTRAP_SCRIPT_PATH = '/etc/kib/bootstrap.sh';
export const BOOTSTRAP_LOG_PATH = '/var/log/kib-bootstrap.log';
export const POD_ROUTES_PATH = '/etc/kib/pod-routes.sh';
export const CNI_CONFIG_PATH = '/etc/cni/net.d/10-kib-bridge.conflist';
export const CNI_MANIFEST_PATH = '/etc/kib/cni.yaml';

/** kubeadm's token format: [a-z0-9]{6}.[a-z0-9]{16}. */
export function generateBootstrapToken(random: (max: number) => number = randomInt): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const pick = (n: number): string => Array.from({ length: n }, () => alphabet[random(alphabet.length)]).join('');
  return `${pick(6)}.${pick(16)}`;
}

/** `sha256:` + hex of the certificate's public key (DER SubjectPublicKeyInfo). */
export function caCertHash(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/** A self-signed CA (CN=kubernetes, 10 years) made with openssl in `dir`. */
export async function generateClusterCa(dir: string, signal?: AbortSignal): Promise<ClusterCa> {
  const keyPath = join(dir, 'ca.key');
  const certPath = join(dir, 'ca.crt');
  await run(
    'openssl',
    [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-subj', '/CN=kubernetes', '-days', '3650',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign',
    ],
    { timeoutMs: 60_000, ...(signal === undefined ? {} : { signal }) },
  );
  const certPem = await readFile(certPath, 'utf8');
  return { certPem, keyPem: await readFile(keyPath, 'utf8'), hash: caCertHash(certPem) };
}

export interface NodeCloudConfigSpec {
  node: ClusterNode;
  nodes: readonly ClusterNode[];
  user: string;
  publicKey: string;
  token: string;
  ca: ClusterCa;
  kubernetesVersion: string | undefined;
  /** kib's bridge CNI (config + routes), or a manifest node 1 applies after init. */
  cni: { kind: 'kib-bridge' } | { kind: 'manifest'; text: string };
  registry: boolean;
  /** Extra cloud-init write_files entries for every node (a CA bundle, a stand-in program). */
  extraFiles?: readonly Record<string, unknown>[];
}

/** kubeadm's init configuration for node 1 (v1beta4). Pure. */
export function renderKubeadmInitConfig(spec: { node: ClusterNode; token: string; kubernetesVersion: string | undefined }): string {
  const { node } = spec;
  const init = {
    apiVersion: 'kubeadm.k8s.io/v1beta4',
    kind: 'InitConfiguration',
    bootstrapTokens: [{ token: spec.token, ttl: '0s', usages: ['signing', 'authentication'], groups: ['system:bootstrappers:kubeadm:default-node-token'] }],
    localAPIEndpoint: { advertiseAddress: node.ip, bindPort: API_PORT },
    nodeRegistration: { name: node.name, kubeletExtraArgs: [{ name: 'node-ip', value: node.ip }] },
  };
  const cluster = {
    apiVersion: 'kubeadm.k8s.io/v1beta4',
    kind: 'ClusterConfiguration',
    ...(spec.kubernetesVersion === undefined ? {} : { kubernetesVersion: `v${spec.kubernetesVersion.replace(/^v/, '')}` }),
    controlPlaneEndpoint: `${node.ip}:${API_PORT}`,
    networking: { podSubnet: POD_NETWORK, serviceSubnet: SERVICE_NETWORK },
    apiServer: { certSANs: ['127.0.0.1', 'localhost', node.ip, node.name, `${node.name}.${CLUSTER_DOMAIN}`] },
  };
  return `${stringify(init)}---\n${stringify(cluster)}`;
}

/** The join command of a worker (argv). Pure. */
export function kubeadmJoinArgs(controlPlane: ClusterNode, node: ClusterNode, token: string, hash: string): string[] {
  return ['kubeadm', 'join', `${controlPlane.ip}:${API_PORT}`, '--token', token, '--discovery-token-ca-cert-hash', hash, '--node-name', node.name];
}

/** The bridge + host-local CNI config for one node: pods get addresses from its own /24. Pure. */
export function renderBridgeCniConfig(node: ClusterNode): string {
  const gateway = node.podCidr.replace(/0\/24$/, '1');
  return `${JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'kib-bridge',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: node.podCidr, gateway }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

/** Routes to the other nodes' pod CIDRs through their bridge addresses. Pure. */
export function renderPodRoutes(node: ClusterNode, nodes: readonly ClusterNode[]): string {
  return ['#!/bin/sh', '# Written by kib: each other node\'s pod CIDR is reached through that node.', 'set -e', ...nodes.filter((n) => n.name !== node.name).map((n) => `ip route replace ${n.podCidr} via ${n.ip}`), ''].join('\n');
}

/** containerd's mirror for the cluster's registry (hosts.toml, config_path style). Pure. */
export function renderRegistryHostsToml(): string {
  const host = `${BRIDGE_IP}:${REGISTRY_PORT}`;
  return [`server = "http://${host}"`, '', `[host."http://${host}"]`, '  capabilities = ["pull", "resolve", "push"]', '  skip_verify = true', ''].join('\n');
}

/**
 * The bootstrap script: node 1 runs kubeadm init (and applies a CNI manifest if one was given),
 * the others kubeadm join. Without kubeadm in the image it says so in its log and does nothing.
 */
export function renderBootstrapScript(spec: Pick<NodeCloudConfigSpec, 'node' | 'nodes' | 'token' | 'ca' | 'cni'>): string {
  const controlPlane = spec.nodes[0];
  if (controlPlane === undefined) throw new KibError('CLUSTER_EMPTY', 'no nodes');
  const quote = (arg: string): string => (/^[A-Za-z0-9_./:=@-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`);
  const lines = ['#!/bin/sh', '# Written by kib.', `exec >>${BOOTSTRAP_LOG_PATH} 2>&1`, 'set -eu', 'echo "kib bootstrap of $(hostname) starting at $(date -u +%FT%TZ)"'];
  if (spec.cni.kind === 'kib-bridge') lines.push(`sh ${POD_ROUTES_PATH}`);
  lines.push('if ! command -v kubeadm >/dev/null 2>&1; then echo "kib: no kubeadm in this image; nothing to bootstrap"; exit 0; fi');
  if (spec.node.name === controlPlane.name) {
    lines.push(`kubeadm init --config ${KUBEADM_INIT_CONFIG_PATH}`);
    if (spec.cni.kind === 'manifest') lines.push(`kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f ${CNI_MANIFEST_PATH}`);
  } else {
    lines.push(kubeadmJoinArgs(controlPlane, spec.node, spec.token, spec.ca.hash).map(quote).join(' '));
  }
  lines.push('echo "kib bootstrap finished at $(date -u +%FT%TZ)"', '');
  return lines.join('\n');
}

/** One node's user-data (#cloud-config). Pure. */
export function renderNodeUserData(spec: NodeCloudConfigSpec): string {
  const { node } = spec;
  const isControlPlane = node.name === spec.nodes[0]?.name;
  const files: Record<string, unknown>[] = [];
  if (isControlPlane) {
    files.push({ path: '/etc/kubernetes/pki/ca.crt', permissions: '0644', content: spec.ca.certPem });
    files.push({ path: '/etc/kubernetes/pki/ca.key', permissions: '0600', content: spec.ca.keyPem });
    files.push({ path: KUBEADM_INIT_CONFIG_PATH, permissions: '0600', content: renderKubeadmInitConfig({ node, token: spec.token, kubernetesVersion: spec.kubernetesVersion }) });
    if (spec.cni.kind === 'manifest') files.push({ path: CNI_MANIFEST_PATH, permissions: '0644', content: spec.cni.text });
  }
  if (spec.cni.kind === 'kib-bridge') {
    files.push({ path: CNI_CONFIG_PATH, permissions: '0644', content: renderBridgeCniConfig(node) });
    files.push({ path: POD_ROUTES_PATH, permissions: '0755', content: renderPodRoutes(node, spec.nodes) });
  }
  if (spec.registry) files.push({ path: `/etc/containerd/certs.d/${BRIDGE_IP}:${REGISTRY_PORT}/hosts.toml`, permissions: '0644', content: renderRegistryHostsToml() });
  files.push(...(spec.extraFiles ?? []));
  files.push({ path: BOOTSTRAP_SCRIPT_PATH, permissions: '0755', content: renderBootstrapScript(spec) });
  const config = {
    hostname: node.name,
    fqdn: `${node.name}.${CLUSTER_DOMAIN}`,
    prefer_fqdn_over_hostname: false,
    users: [{ name: spec.user, sudo: 'ALL=(ALL) NOPASSWD:ALL', shell: '/bin/bash', lock_passwd: true, ssh_authorized_keys: [spec.publicKey.trim()] }],
    write_files: files,
    runcmd: [['sh', BOOTSTRAP_SCRIPT_PATH]],
  };
  return `#cloud-config\n${stringify(config, { lineWidth: 0 })}`;
}

/** NoCloud meta-data for one node. Pure. */
export function renderNodeMetaData(cluster: string, node: ClusterNode, instanceSuffix: string): string {
  return stringify({ 'instance-id': `kib-${cluster}-${node.name}-${instanceSuffix}`, 'local-hostname': node.name });
}
