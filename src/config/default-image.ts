/**
 * The build definition used when there is no image.yaml in the working directory and none is
 * given: the same text as the repository root image.yaml (a unit test keeps the two equal).
 * Its relative playbook path is resolved from the kib package directory, its output directory
 * from the working directory.
 */
export const DEFAULT_IMAGE_YAML = `# The build definition of kube-image-builder (kib). Every field is described in
# docs/configuration.md. Relative paths are resolved from this file's directory.
# image.lock beside this file records the base image and Kubernetes packages it resolves to
# (kib lock --update).

# Prefix of every artifact name: lowercase letters, digits, "." and "-".
name: rocky-9

base:
  # Rocky Linux 9.8 GenericCloud for x86_64, the 2026-05-25 build of the point release (not the
  # moving ".latest" link). When a newer 9.x ships, Rocky moves this directory to
  # https://dl.rockylinux.org/vault/rocky/9.8/images/x86_64/ (same file name).
  url: https://dl.rockylinux.org/pub/rocky/9.8/images/x86_64/Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2
  # Rocky's CHECKSUM file for that directory (BSD "SHA256 (file) = hex" lines).
  checksumUrl: https://dl.rockylinux.org/pub/rocky/9.8/images/x86_64/CHECKSUM
  # The published sha256 of the image above; a download that does not match is rejected.
  sha256: 92c206cc6f790c61583247eefe87890f8828420662c17cacf247cec78ab4eec8
  # Guest OS family: selects the package manager and repositories in the playbook.
  osFamily: redhat

kubernetes:
  # The one Kubernetes release in the image, exactly MAJOR.MINOR.PATCH: 1.37.1, the newest 1.37
  # patch release public sources confirm (kubernetes.io/releases/1.37). \`kib lock --update\` checks it
  # against the v1.37 pkgs.k8s.io repository and records the exact package builds in image.lock;
  # \`series: "1.37"\` instead of \`version\` would follow the newest patch through the lock.
  version: 1.37.1
  # required: fail when the Kubernetes packages cannot be installed.
  packages: required

node:
  # SELinux mode of the image (Red Hat family only).
  selinux: permissive
  # firewalld: the Kubernetes, overlay and SSH ports open on the node's NICs, the rest closed;
  # CNI interfaces and the networks below in an accepting zone of their own, so pod traffic is
  # forwarded between nodes.
  firewall: true
  network:
    # Match kubeadm init --pod-network-cidr (kubeadm has no default; its docs and flannel use this).
    podCidrs: [10.244.0.0/16]
    # kubeadm's default serviceSubnet.
    serviceCidrs: [10.96.0.0/12]
    # VXLAN (Calico 4789, flannel and Cilium 8472) and BGP (Calico 179) between nodes.
    overlayPorts: [4789/udp, 8472/udp, 179/tcp]

disk:
  # Virtual disk size (K/M/G/T are powers of 1024); the root filesystem grows into it.
  size: 20G

vm:
  # Virtual CPUs of the build VM.
  cpus: 2
  # Memory of the build VM.
  memory: 2G
  # auto: KVM when it works on this host, otherwise TCG software emulation.
  accelerator: auto
  # Firmware of the build VM: bios or uefi.
  firmware: bios
  # How long the build VM may take to answer on SSH.
  bootTimeout: 10m

provision:
  # The Ansible playbook run inside the build VM.
  playbook: playbook/site.yml
  # Extra Ansible variables, passed through unchanged (kib_* names are reserved).
  vars: {}

outputs:
  # Where finished artifacts are moved.
  dir: output
  # Artifacts to produce; qcow2 is always produced.
  formats: [qcow2, containerdisk]
  # Compress the qcow2 artifact.
  compress: true
`;
