/**
 * A forwarding path inside one booted node, built from real interfaces named the way CNI plugins
 * name theirs, so the image's firewall is exercised on the traffic a multi-node cluster sends:
 *
 *   pod-a (netns, 10.244.0.2) ── veth ── cni0 (bridge, 10.244.0.1)        the bridge plugin / flannel
 *   pod-b (netns, 10.244.1.2) ── veth named flannel.1 (10.244.1.1)         "pods on another node",
 *                                                                           behind an overlay device
 *   outside (netns, 192.0.2.2) ── veth named ext0 (192.0.2.1)              a peer on the node's network:
 *                                                                           no zone by name, so the
 *                                                                           default (node) zone
 *
 * Forwarding between cni0 and flannel.1 is what flannel#2055 showed firewalld rejecting. The
 * outside peer checks that the node's own ports stay closed (12345 has a listener and must still be
 * rejected; 6443 must pass), that a NodePort-style DNAT from the node's address to a pod passes, and
 * that a peer routing straight to a pod address (routed pod networks, e.g. Calico peering with the
 * network) passes.
 *
 * Every probe prints `RESULT <name> <ok|rejected|timeout|error:...>`; parseForwardingResults reads them.
 */

export const FORWARDING_PROBES = [
  'pod-a->pod-b',
  'pod-b->pod-a',
  'outside->node:6443',
  'outside->node:12345',
  'outside->nodeport->pod-a',
  'outside->pod-a',
] as const;
export type ForwardingProbe = (typeof FORWARDING_PROBES)[number];
export type ProbeOutcome = 'ok' | 'rejected' | 'timeout' | `error:${string}`;

/** Builds the namespaces, veths, bridge and listeners. Run as root; idempotent enough to run once per boot. */
export const SETUP_FORWARDING_PATH = String.raw`
set -eu
sysctl -qw net.ipv4.ip_forward=1
for ns in pod-a pod-b outside; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

ip link add cni0 type bridge
ip addr add 10.244.0.1/24 dev cni0
ip link set cni0 up
ip link add veth-pod-a type veth peer name eth0 netns pod-a
ip link set veth-pod-a master cni0 up
ip -n pod-a addr add 10.244.0.2/24 dev eth0
ip -n pod-a link set eth0 up
ip -n pod-a route add default via 10.244.0.1

ip link add flannel.1 type veth peer name eth0 netns pod-b
ip addr add 10.244.1.1/24 dev flannel.1
ip link set flannel.1 up
ip -n pod-b addr add 10.244.1.2/24 dev eth0
ip -n pod-b link set eth0 up
ip -n pod-b route add default via 10.244.1.1

ip link add ext0 type veth peer name eth0 netns outside
ip addr add 192.0.2.1/24 dev ext0
ip link set ext0 up
ip -n outside addr add 192.0.2.2/24 dev eth0
ip -n outside link set eth0 up
ip -n outside route add default via 192.0.2.1

# Listeners: a pod on each side, and two on the node itself (one on an open port, one on a closed one).
ip netns exec pod-a setsid socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:'echo pod-a' </dev/null >/dev/null 2>&1 &
ip netns exec pod-b setsid socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:'echo pod-b' </dev/null >/dev/null 2>&1 &
setsid socat TCP-LISTEN:6443,fork,reuseaddr SYSTEM:'echo node' </dev/null >/dev/null 2>&1 &
setsid socat TCP-LISTEN:12345,fork,reuseaddr SYSTEM:'echo node' </dev/null >/dev/null 2>&1 &

# A NodePort the way kube-proxy makes one: DNAT from the node's address to a pod, in its own table.
nft -f - <<'NFT'
table ip kib-nodeport {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 192.0.2.1 tcp dport 30080 dnat to 10.244.0.2:8080
  }
}
NFT
sleep 1
`;

/** Runs every probe; each prints one RESULT line. */
export const PROBE_FORWARDING_PATH = String.raw`
probe() {
  name="$1"; ns="$2"; addr="$3"; port="$4"; want="$5"
  out=$(ip netns exec "$ns" socat -T 3 - "TCP:$addr:$port,connect-timeout=3" </dev/null 2>&1)
  case "$out" in
    "$want") echo "RESULT $name ok" ;;
    *"No route to host"*|*"Connection refused"*|*"unreachable"*|*"prohibited"*) echo "RESULT $name rejected" ;;
    *"timed out"*|*"Operation now in progress"*) echo "RESULT $name timeout" ;;
    *) echo "RESULT $name error:$(echo "$out" | tr ' \n' '_' | cut -c1-120)" ;;
  esac
}
probe pod-a-\>pod-b pod-a 10.244.1.2 8080 pod-b
probe pod-b-\>pod-a pod-b 10.244.0.2 8080 pod-a
probe outside-\>node:6443 outside 192.0.2.1 6443 node
probe outside-\>node:12345 outside 192.0.2.1 12345 node
probe outside-\>nodeport-\>pod-a outside 192.0.2.1 30080 pod-a
probe outside-\>pod-a outside 10.244.0.2 8080 pod-a
`;

/**
 * Takes the fix away at run time: the pod zone and the policy into it are deleted, so the CNI
 * interfaces fall back into the default zone, as they did before the fix.
 */
export const REVERT_FIREWALL_FIX = String.raw`
set -eu
firewall-cmd --permanent --delete-policy=kubernetes-to-pods >/dev/null
firewall-cmd --permanent --delete-zone=kubernetes-pods >/dev/null
firewall-cmd --reload >/dev/null
`;

export function parseForwardingResults(output: string): Record<ForwardingProbe, ProbeOutcome> {
  const results: Partial<Record<ForwardingProbe, ProbeOutcome>> = {};
  for (const line of output.split('\n')) {
    const match = /^RESULT (\S+) (\S+)$/.exec(line.trim());
    if (match === null) continue;
    const name = match[1] as ForwardingProbe;
    if ((FORWARDING_PROBES as readonly string[]).includes(name)) results[name] = match[2] as ProbeOutcome;
  }
  for (const probe of FORWARDING_PROBES) {
    if (results[probe] === undefined) throw new Error(`probe ${probe} printed no RESULT line; output:\n${output}`);
  }
  return results as Record<ForwardingProbe, ProbeOutcome>;
}
