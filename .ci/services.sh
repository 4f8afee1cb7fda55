#!/usr/bin/env bash
# Install what fleetdeck's test bed needs and build the fake NVML library.
#
# Idempotent and quick when everything is present. Run as root (CI does: `sudo .ci/services.sh`).
# It starts no daemons: the pytest fixtures in tests/bed start their own sshd/dockerd/munged/
# slurmctld/slurmd under /tmp/fdbed-*/ and stop them at the end of the session.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(openssh-server openssh-client docker.io slurm-wlm munge busybox-static tmux gcc libc6-dev
          python3 python3-venv
          chromium prometheus
          stress-ng)  # the load test: the suite under `taskset -c 0` beside `stress-ng --cpu 1`
LIB_DIR="$REPO/.bed/lib"
NVML_DIR="$REPO/tests/bed/fake_nvml"

die() { echo "services.sh: error: $*" >&2; exit 1; }
say() { echo "services.sh: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (the bed runs sshd/dockerd/slurm as root)"
command -v dpkg-query >/dev/null || die "needs a Debian/Ubuntu system (dpkg-query not found)"

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    say "installing: ${missing[*]}"
    # Keep package scripts from starting system daemons (no init here; the bed runs its own).
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
    trap cleanup EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
    cleanup
    trap - EXIT
else
    say "packages present"
fi

[ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd missing after install"
[ -x /bin/busybox ] || die "/bin/busybox missing after install"
for bin in ssh ssh-keygen dockerd containerd runc docker slurmctld slurmd sbatch munged gcc; do
    command -v "$bin" >/dev/null || die "$bin missing after install"
done

# sshd refuses to start without its privilege separation directory.
mkdir -p /run/sshd
chmod 755 /run/sshd

# Fake libnvidia-ml.so.1; the stamp lets tests/bed/fake_nvml.build() skip rebuilding.
mkdir -p "$LIB_DIR"
# Same digest as tests/bed/fake_nvml.build(): sha256 over fake_nvml.c, state.c, fake_nvml.h.
digest="$(cat "$NVML_DIR/fake_nvml.c" "$NVML_DIR/state.c" "$NVML_DIR/fake_nvml.h" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$LIB_DIR/libnvidia-ml.so.1" ] || [ "$(cat "$LIB_DIR/fake_nvml.sha256" 2>/dev/null)" != "$digest" ]; then
    tmp="$(mktemp "$LIB_DIR/.libnvml-XXXXXX.so")"
    gcc -shared -fPIC -O2 -Wall -Wextra -fvisibility=hidden -o "$tmp" \
        "$NVML_DIR/fake_nvml.c" "$NVML_DIR/state.c" -lpthread \
        || { rm -f "$tmp"; die "building the fake NVML failed"; }
    chmod 755 "$tmp"
    mv -f "$tmp" "$LIB_DIR/libnvidia-ml.so.1"
    echo "$digest" > "$LIB_DIR/fake_nvml.sha256"
    say "built $LIB_DIR/libnvidia-ml.so.1"
else
    say "fake NVML up to date"
fi

say "ready (sshd $(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1), $(dockerd --version | cut -d, -f1), slurm $(slurmctld -V | cut -d' ' -f2))"
