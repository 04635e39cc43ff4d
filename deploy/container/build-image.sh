#!/usr/bin/env bash
# Builds the bank ledger container image FROM scratch out of already-built
# binaries: nothing is pulled from any registry.
#
# Usage: deploy/container/build-image.sh [BIN_DIR] [TAG]
#   BIN_DIR  directory holding bank-server and bank-client
#            (default: $BIN, else ${CARGO_TARGET_DIR:-target}/release)
#   TAG      image tag (default: $IMAGE, else bank-ledger:latest)
# Env: STRIP=0 keeps the binaries' symbols (default: strip the copies in the
#      image; the binaries in BIN_DIR are never touched).
#
# The image holds /usr/local/bin/bank-server (the entrypoint) and
# /usr/local/bin/bank-client, the shared libraries `ldd` names, at the same
# paths as on the build host, the dynamic loader, a minimal /etc (passwd and
# group with user `bank` = 10001, nsswitch.conf: hosts from files, then DNS;
# glibc >= 2.34 has the files and dns NSS modules built in), /tmp, and a
# /data volume owned by 10001. It runs as 10001:10001.
# The binaries must be dynamically linked against the build host's glibc
# (or static): the libraries are copied from this host.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${1:-${BIN:-${CARGO_TARGET_DIR:-target}/release}}
TAG=${2:-${IMAGE:-bank-ledger:latest}}
STRIP=${STRIP:-1}

die() { echo "build-image: $*" >&2; exit 1; }
for b in bank-server bank-client; do
  [ -x "$BIN/$b" ] || die "no executable $BIN/$b (build it first: cargo build --release, or pass BIN_DIR)"
done
docker info >/dev/null 2>&1 || die "no container engine: 'docker info' fails"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$ctx/data"
chmod 1777 "$root/tmp"

for b in bank-server bank-client; do
  cp "$BIN/$b" "$root/usr/local/bin/$b"
  if [ "$STRIP" = 1 ] && command -v strip >/dev/null; then
    strip "$root/usr/local/bin/$b"
  fi
  chmod 0755 "$root/usr/local/bin/$b"
done

# Shared libraries and the loader, at the paths the binaries look for them.
# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
# "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)" (in the kernel).
libs=$(for b in bank-server bank-client; do
  out=$(ldd "$BIN/$b" 2>&1) || true
  case $out in *"not a dynamic executable"* | *"statically linked"*) continue ;; esac
  echo "$out" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  if echo "$out" | grep -q "not found"; then
    echo "build-image: $b: a library is missing on this host: $out" >&2
    exit 1
  fi
done | sort -u)
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib" # the file itself, not a symlink into nowhere
done

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
bank:x:10001:10001:bank ledger:/data:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
bank:x:10001:
GROUP
# Without an nsswitch.conf glibc asks DNS first; /etc/hosts (which Docker and
# Kubernetes write, e.g. the pod's own name) should win.
cat >"$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS

cp "$here/Dockerfile" "$ctx/Dockerfile"
version=$("$BIN/bank-server" --version 2>/dev/null | awk '{ print $NF }') || version=unknown
build=(docker build --quiet --build-arg "VERSION=$version" -t "$TAG" "$ctx")
# Without the buildx plugin a recent docker CLI falls back to the legacy
# builder anyway; say so up front rather than fail on DOCKER_BUILDKIT=1.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
"${build[@]}" >/dev/null 2> >(grep -v -e "legacy builder is deprecated" -e "buildx component" -e "docs.docker.com/go/buildx" \
  -e "BuildKit is currently disabled" -e "DOCKER_BUILDKIT=0" -e "environment-variable" -e '^ *$' >&2)

# It must start: the loader and every library are in place.
docker run --rm "$TAG" --version >/dev/null || die "image $TAG: bank-server does not start"
docker run --rm --entrypoint /usr/local/bin/bank-client "$TAG" --version >/dev/null ||
  die "image $TAG: bank-client does not start"

bytes=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "built $TAG ($version): $((bytes / 1024 / 1024)) MiB ($bytes bytes) from $BIN"
