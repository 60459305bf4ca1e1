#!/usr/bin/env bash
# Stand-ins for the Dockerfile's base images where no registry is reachable, built once and kept in
# podman's own storage (skipped while `podman image exists`):
#
#   localhost/breakwater-standin-python:bookworm  what python:3.11-slim-bookworm gives the Dockerfile:
#       `python` on PATH (Debian's 3.11), venv, groupadd/useradd, bash
#   localhost/breakwater-standin-node:bookworm    what node:20-bookworm-slim gives it: node, npm
#       (Debian bookworm's Node 18: npm ci only warns about the engines of Node 20)
#
# Each is `debootstrap --variant=minbase bookworm` plus a few packages, with the host's locally
# added CA certificates (/usr/local/share/ca-certificates) installed, so that pip and npm inside the
# build trust what the host trusts (a TLS-intercepting proxy). No pip or npm configuration goes into
# them: the build gets the host's index through build arguments (tools/image-check/run).
#
#   tools/image-check/standins.sh            build the missing ones
#   STANDIN_REBUILD=1 tools/image-check/standins.sh   rebuild both
#   STANDIN_MIRROR=http://...                the Debian mirror (default: the host's apt source)
set -euo pipefail

PYTHON_STANDIN=${PYTHON_STANDIN:-localhost/breakwater-standin-python:bookworm}
NODE_STANDIN=${NODE_STANDIN:-localhost/breakwater-standin-node:bookworm}
SUITE=bookworm

for tool in podman debootstrap chroot; do
    command -v "$tool" >/dev/null || {
        echo "standins: $tool is missing: apt-get install -y podman buildah runc debootstrap" >&2
        exit 1
    }
done
[ "$(id -u)" = 0 ] || { echo "standins: debootstrap needs root" >&2; exit 1; }

host_mirror() {
    # The first deb URI of the host's apt sources (deb822 or one-line format), else Debian's CDN.
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v -e security -e updates | head -n1 || true)
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
            /etc/apt/sources.list || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${STANDIN_MIRROR:-$(host_mirror)}

# build NAME PACKAGES... : debootstrap, the packages, the host's CAs, then `podman import`.
build() {
    local name=$1 root
    shift
    if [ -z "${STANDIN_REBUILD:-}" ] && podman image exists "$name"; then
        echo "standins: $name cached"
        return
    fi
    root=$(mktemp -d /var/tmp/breakwater-standin.XXXXXX)
    chmod 755 "$root" # apt's sandbox user (_apt) must reach the chroot's cache
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "umount '$root/proc' 2>/dev/null || true; rm -rf --one-file-system '$root'" RETURN
    echo "standins: $name: debootstrap $SUITE from $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || {
        tail -n 20 "$root.log" >&2
        echo "standins: debootstrap failed (full log: $root.log)" >&2
        exit 1
    }
    rm -f "$root.log"
    mount -t proc proc "$root/proc"
    # The host's locally added CAs (Debian's local CA directory), then the chroot's own bundle.
    if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
    fi
    echo "standins: $name: apt-get install $*"
    chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -euo pipefail -c '
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends ca-certificates "$@" >/dev/null
        update-ca-certificates >/dev/null
        apt-get clean
        rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log /var/log/apt/*
        : >/etc/resolv.conf
    ' bash "$@" >"$root.log" 2>&1 || {
        tail -n 20 "$root.log" >&2
        echo "standins: apt-get in the chroot failed (full log: $root.log)" >&2
        exit 1
    }
    rm -f "$root.log"
    umount "$root/proc"
    tar --numeric-owner -C "$root" -c . | podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL org.opencontainers.image.description=breakwater image-check stand-in ($*)" \
        - "$name" >/dev/null
    echo "standins: $name built ($(podman image inspect --format '{{.Size}}' "$name" | numfmt --to=iec))"
}

build "$PYTHON_STANDIN" python3 python3-venv python-is-python3
build "$NODE_STANDIN" nodejs npm
