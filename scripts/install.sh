#!/usr/bin/env bash
# Set up pivotgym on a fresh Debian 12 machine (run as root): system packages, the
# Docker engine and the offline sandbox base image, and a virtual environment in .venv
# with the project installed. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (it installs packages and starts dockerd)" >&2
    exit 2
fi

log "system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# bubblewrap and docker.io run the sandboxes; debootstrap builds the base image offline;
# the rest are the tools the bundled terminal tasks use inside bwrap sandboxes, the
# Python and pytest that the SWE env's repositories are tested with there, and the
# Chromium headless shell that the browser env drives (Debian's: Playwright's own
# builds are never downloaded).
apt-get install -y -qq --no-install-recommends \
    bubblewrap docker.io debootstrap ca-certificates util-linux procps \
    python3 python3-venv python3-pip git jq zip unzip bzip2 xz-utils sqlite3 bc file \
    diffutils patch findutils tar gzip python3-pytest python-is-python3 chromium-headless-shell >/dev/null

log "docker engine"
if ! docker info >/dev/null 2>&1; then
    mkdir -p /var/log
    nohup dockerd >/var/log/pivotgym-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/pivotgym-dockerd.log" >&2; exit 1; }
fi

log "sandbox base image"
bash docker/build-base.sh

log "python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
# torch first, pinned, so that nothing later pulls a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test,tau2,browser]'

log "ready: $(.venv/bin/pivotgym --help | head -1)"
