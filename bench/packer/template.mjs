/**
 * The Packer 1.6.6 side of the benchmark: a JSON template for the QEMU builder and the Ansible
 * provisioner that does the same work as `kib build` — same base, disk size, VM size, accelerator,
 * device model, seed, playbook, variables and final seal — so the timings compare the tools and
 * not the setups. Pure: returns plain data, the caller writes it.
 */

/**
 * @typedef {object} PackerBenchSpec
 * @property {string} basePath       local qcow2 of the base image (Packer "retrieves" it in place)
 * @property {string} baseSha256     verified by Packer like kib verifies it
 * @property {string} outputDir      Packer's output_directory (must not exist yet)
 * @property {string} vmName         file name of the disk inside outputDir
 * @property {number} diskSizeBytes  the same virtual size kib gives its overlay
 * @property {number} cpus
 * @property {number} memoryMiB
 * @property {'tcg'|'kvm'} accelerator
 * @property {'bios'|'uefi'} firmware
 * @property {{code: string, vars: string}|undefined} ovmf  OVMF code and a per-run copy of its vars (uefi only)
 * @property {string} seedIsoPath    NoCloud ISO (label cidata) built by the caller
 * @property {string} consoleLogPath where the guest's serial console is written (kib keeps one too)
 * @property {string} sshUser
 * @property {string} sshPrivateKeyPath
 * @property {string} bootTimeout    e.g. "10m"
 * @property {string} playbookPath
 * @property {string} varsFilePath   JSON extra variables, passed as -e @file
 * @property {string} ansibleConfigPath
 * @property {string} shutdownCommand
 */

/** @param {PackerBenchSpec} spec */
export function renderPackerTemplate(spec) {
  const mib = Math.ceil(spec.diskSizeBytes / 1024 ** 2);
  const qemuargs = [
    // Packer 1.6.6 has no cpu_model option; without -cpu QEMU under TCG emulates qemu64, while kib uses `max`.
    ['-cpu', spec.accelerator === 'kvm' ? 'host' : 'max'],
    // Packer's own default is "cpus=N,sockets=N"; kib gives plain N (N cores of one socket).
    ['-smp', String(spec.cpus)],
    // Any -drive in qemuargs replaces all of Packer's drive arguments, so the main disk is listed
    // here too, with the options kib uses (discard passed through so the guest's fstrim shrinks it).
    ['-drive', `file={{ .OutputDir }}/{{ .Name }},if=virtio,format=qcow2,discard=unmap,detect-zeroes=unmap`],
    // The seed on virtio: the Debian cloud kernel has no AHCI driver, and Packer 1.6.6's cd_files with
    // cdrom_interface=virtio collides with the boot disk (both get index=0).
    ['-drive', `file=${spec.seedIsoPath},if=virtio,format=raw,readonly=on`],
    ['-object', 'rng-random,id=rng0,filename=/dev/urandom'],
    ['-device', 'virtio-rng-pci,rng=rng0'],
    // Packer shows the console only over VNC; a file makes a boot that never reaches SSH explainable.
    ['-serial', `file:${spec.consoleLogPath}`],
  ];
  if (spec.firmware === 'uefi') {
    // Packer 1.6.6 has no efi_boot/firmware option: OVMF goes in as pflash drives.
    if (spec.ovmf === undefined) throw new Error('uefi needs OVMF code and vars paths');
    qemuargs.push(['-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${spec.ovmf.code}`]);
    qemuargs.push(['-drive', `if=pflash,format=raw,unit=1,file=${spec.ovmf.vars}`]);
  }

  return {
    builders: [
      {
        type: 'qemu',
        iso_url: spec.basePath,
        iso_checksum: `sha256:${spec.baseSha256}`,
        disk_image: true,
        // use_backing_file=true makes Packer 1.6.6 run `qemu-img create -b` without -F, which current
        // qemu-img refuses; a full copy it is.
        use_backing_file: false,
        disk_size: `${mib}M`,
        skip_resize_disk: false,
        format: 'qcow2',
        disk_compression: true,
        disk_interface: 'virtio',
        net_device: 'virtio-net',
        machine_type: 'q35',
        accelerator: spec.accelerator,
        cpus: spec.cpus,
        memory: spec.memoryMiB,
        headless: true,
        vnc_bind_address: '127.0.0.1',
        // Packer's default, written out: 1.6.6 treats "0s" as unset and waits 10 s anyway. The guest
        // needs far longer than that to boot, so it does not delay the SSH login.
        boot_wait: '10s',
        output_directory: spec.outputDir,
        vm_name: spec.vmName,
        qemuargs,
        communicator: 'ssh',
        ssh_username: spec.sshUser,
        ssh_private_key_file: spec.sshPrivateKeyPath,
        ssh_timeout: spec.bootTimeout,
        ssh_handshake_attempts: 100,
        shutdown_command: spec.shutdownCommand,
        shutdown_timeout: '5m',
      },
    ],
    provisioners: [
      {
        type: 'ansible',
        playbook_file: spec.playbookPath,
        user: spec.sshUser,
        // Ansible talks to the guest's forwarded port directly, as kib's does, instead of through
        // Packer's in-process SSH proxy (which adds a hop and lacks sftp in this version).
        use_proxy: false,
        extra_arguments: ['-e', `@${spec.varsFilePath}`],
        ansible_env_vars: [
          `ANSIBLE_CONFIG=${spec.ansibleConfigPath}`,
          'ANSIBLE_FORCE_COLOR=0',
          'ANSIBLE_NOCOLOR=1',
          'PYTHONUNBUFFERED=1',
        ],
      },
    ],
  };
}
