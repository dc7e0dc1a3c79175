#!/usr/bin/env bash
# Build the sandbox base image pivotgym/base:bookworm without any container registry.
#
# A minimal Debian bookworm tree is bootstrapped from the Debian archive with
# debootstrap, then imported as a single-layer image. Needs root, debootstrap and a
# running Docker daemon:
#
#     apt-get install -y debootstrap docker.io
#     docker/build-base.sh            # skips the build when the image exists
#     docker/build-base.sh --force    # rebuilds it
#
# Environment:
#     PIVOTGYM_BASE_IMAGE      image name (default pivotgym/base:bookworm)
#     PIVOTGYM_DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#     PIVOTGYM_DEB_CACHE       where downloaded .deb files are kept between builds, so a
#                              forced rebuild downloads nothing (default
#                              /var/cache/pivotgym/debootstrap; empty to disable)

set -euo pipefail

IMAGE="${PIVOTGYM_BASE_IMAGE:-pivotgym/base:bookworm}"
MIRROR="${PIVOTGYM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEB_CACHE="${PIVOTGYM_DEB_CACHE-/var/cache/pivotgym/debootstrap}"
SUITE=bookworm

# Exactly what the bundled terminal tasks use; adding a tool here changes the image
# every sandbox runs on, so tasks that need more ship their own Dockerfile.
TOOLS=(
    bash coreutils grep sed mawk findutils tar gzip bzip2 xz-utils zip unzip git jq
    python3 sqlite3 diffutils patch bc file procps ca-certificates
)

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "build-base.sh: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

die() {
    echo "build-base.sh: $*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || die "must run as root (debootstrap creates device nodes and chroots)"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install -y debootstrap"
command -v docker >/dev/null || die "docker not found: apt-get install -y docker.io"
docker info >/dev/null 2>&1 || die "docker daemon not reachable: start dockerd first"

old_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if [[ $force -eq 0 && -n "$old_id" ]]; then
    echo "$IMAGE already present (use --force to rebuild)"
    exit 0
fi

work="$(mktemp -d /var/tmp/pivotgym-base.XXXXXX)"
root="$work/rootfs"

cleanup() {
    # debootstrap mounts /proc and /sys inside the target; an interrupted run can leave
    # them behind, and rm must never descend into them.
    local mnt
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v p="$work/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r)
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

cache_args=()
if [[ -n "$DEB_CACHE" ]]; then
    mkdir -p "$DEB_CACHE"
    cache_args=(--cache-dir="$(realpath "$DEB_CACHE")")
fi

start=$SECONDS
echo "bootstrapping $SUITE from $MIRROR into $root"
include="$(IFS=,; echo "${TOOLS[*]}")"
debootstrap --variant=minbase --include="$include" "${cache_args[@]}" \
    "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed (full log above was in $work/debootstrap.log)"
}

# Leave out what only matters to a package manager with network access, and logs whose
# content differs between builds.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
mkdir -p "$root/app"

echo "importing $IMAGE"
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'WORKDIR /' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE" \
    - "$IMAGE" >/dev/null

# The replaced image is left untagged; drop it unless containers still use it.
if [[ -n "$old_id" ]]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
fi

echo "built $IMAGE in $((SECONDS - start)) s"
