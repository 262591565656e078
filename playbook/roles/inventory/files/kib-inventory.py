#!/usr/bin/env python3
"""Write the guest inventory (OS, packages, Kubernetes binaries, pre-pulled images) as JSON.

Runs inside the build VM with the standard library only (Python 3.9 on Rocky Linux 9).
The shape is the engine's contract; see docs/playbook.md.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import tempfile

CTR = "/usr/local/bin/ctr"

# name, path, version command (None: no command), how to read the version
BINARIES = [
    ("kubeadm", "/usr/bin/kubeadm", ["version", "-o", "short"], "semver"),
    ("kubelet", "/usr/bin/kubelet", ["--version"], "semver"),
    ("kubectl", "/usr/bin/kubectl", ["version", "--client", "-o", "json"], "kubectl-json"),
    ("crictl", "/usr/bin/crictl", ["--version"], "semver"),
    ("containerd", "/usr/local/bin/containerd", ["--version"], "semver"),
    ("containerd-shim-runc-v2", "/usr/local/bin/containerd-shim-runc-v2", ["-v"], "semver"),
    ("ctr", CTR, ["--version"], "semver"),
    ("runc", "/usr/local/sbin/runc", ["--version"], "runc"),
]
CNI_DIR = "/opt/cni/bin"
SEMVER = re.compile(r"\bv?(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?)\b")


def run(argv, env=None):
    """Output of a command, or None when it cannot run or fails."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.decode("utf-8", "replace")
    # CNI plugins print their version and exit non-zero when called without CNI_COMMAND.
    return text if done.returncode == 0 or env is not None else None


def read_os_release():
    fields = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    key, sep, value = line.rstrip("\n").partition("=")
                    if sep:
                        fields[key] = value.strip().strip('"').strip("'")
            break
    return {
        "id": fields.get("ID", ""),
        "versionId": fields.get("VERSION_ID", ""),
        "prettyName": fields.get("PRETTY_NAME", ""),
    }


def read_packages(manager):
    packages = []
    if manager == "rpm":
        out = run(["rpm", "-qa", "--queryformat",
                   "%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"])
        for line in (out or "").splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] != "gpg-pubkey":
                packages.append({"name": parts[0], "version": parts[1], "arch": parts[2], "manager": "rpm"})
    else:
        out = run(["dpkg-query", "--show", "--showformat",
                   "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"])
        for line in (out or "").splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0].startswith("ii"):
                packages.append({"name": parts[1], "version": parts[2], "arch": parts[3], "manager": "dpkg"})
    return sorted(packages, key=lambda p: (p["name"], p["arch"], p["version"]))


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_version(style, out):
    if out is None:
        return None
    if style == "kubectl-json":
        try:
            return json.loads(out)["clientVersion"]["gitVersion"]
        except (ValueError, KeyError, TypeError):
            return None
    if style == "runc":
        match = re.search(r"runc version (\S+)", out)
        return match.group(1) if match else None
    match = SEMVER.search(out)
    if not match:
        return None
    text = match.group(0)
    return text if text.startswith("v") else "v" + text


def read_binaries():
    binaries = []
    for name, path, args, style in BINARIES:
        if os.path.isfile(path):
            binaries.append({"name": name, "path": path,
                             "version": parse_version(style, run([path] + args)),
                             "sha256": sha256_of(path)})
    if os.path.isdir(CNI_DIR):
        for entry in sorted(os.listdir(CNI_DIR)):
            path = os.path.join(CNI_DIR, entry)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                # Without CNI_COMMAND a plugin prints "CNI <name> plugin vX.Y.Z".
                out = run([path], env={"PATH": "/usr/bin:/bin"})
                binaries.append({"name": "cni-" + entry, "path": path,
                                 "version": parse_version("semver", out), "sha256": sha256_of(path)})
    return binaries


def read_images():
    if not os.path.isfile(CTR):
        return []
    out = run([CTR, "--namespace", "k8s.io", "images", "list"])
    images = {}
    for line in (out or "").splitlines()[1:]:
        columns = line.split()
        if len(columns) < 3:
            continue
        ref, digest = columns[0], columns[2]
        # containerd also lists each image by its digest and config ID; the tag refs suffice.
        if ref.startswith("sha256:") or "@sha256:" in ref:
            continue
        images[ref] = digest
    return [{"ref": ref, "digest": images[ref]} for ref in sorted(images)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--package-manager", choices=["rpm", "dpkg"], required=True)
    parser.add_argument("--kubernetes-source", choices=["used", "skipped"], required=True)
    parser.add_argument("--skipped-reason", default="")
    args = parser.parse_args()

    binaries = read_binaries()
    kubeadm = next((b for b in binaries if b["name"] == "kubeadm"), None)
    installed = args.kubernetes_source == "used" and kubeadm is not None
    inventory = {
        "os": read_os_release(),
        "packages": read_packages(args.package_manager),
        "binaries": binaries,
        "images": read_images(),
        "kubernetes": {
            "installed": installed,
            "skippedReason": None if installed else (args.skipped_reason or "Kubernetes packages are not installed"),
            "version": kubeadm["version"] if installed else None,
        },
    }
    directory = os.path.dirname(args.output)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    # Written beside the target and renamed, so a reader never sees half a file.
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".inventory-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(inventory, out, indent=2, sort_keys=False)
        out.write("\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, args.output)


if __name__ == "__main__":
    main()
