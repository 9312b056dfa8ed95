#!/usr/bin/env bash
# Builds the wmproxy images offline (no registry needed):
#   wmproxy-base:local     a root filesystem holding only the JavaScript runtime
#                          (Bun by default, or Node), the shared libraries `ldd`
#                          lists for it, CA certificates and a nobody user;
#                          made with `docker import`.
#   wmproxy:local          base + the built repo (sources, dist, production
#                          node_modules); ENTRYPOINT runs the wmproxy CLI.
#   wmproxy-backend:local  base + docker/backend/echo-server.mjs, a small
#                          HTTP/HTTPS echo server used by the e2e tests.
#
# Usage: docker/build-image.sh [--runtime bun|node] [--tag NAME] [--no-build]
#   --runtime   which runtime goes into the images (default bun)
#   --tag       tag of the wmproxy image (default wmproxy:local)
#   --no-build  skip `tsc -b` (dist/ must exist)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNTIME=bun
TAG=wmproxy:local
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) RUNTIME=${2:?--runtime needs bun or node}; shift 2 ;;
    --tag) TAG=${2:?--tag needs a name}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

case "$RUNTIME" in
  bun) RUNTIME_BIN=$(readlink -f "$ROOT/node_modules/.bin/bun" 2>/dev/null || true) ;;
  node) RUNTIME_BIN=$(readlink -f "$(command -v node)") ;;
  *) echo "build-image.sh: --runtime must be bun or node, not $RUNTIME" >&2; exit 2 ;;
esac
if [ -z "$RUNTIME_BIN" ] || [ ! -x "$RUNTIME_BIN" ]; then
  echo "build-image.sh: no $RUNTIME binary found (run npm install first)" >&2
  exit 1
fi
command -v docker >/dev/null || { echo "build-image.sh: docker is not installed" >&2; exit 1; }

BASE_TAG=wmproxy-base-$RUNTIME:local
BACKEND_TAG=wmproxy-backend:local
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

log() { printf 'build-image: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- base image
# An image is rebuilt only when what goes into it changed (a hash kept as a label).
label_of() { docker image inspect -f "{{index .Config.Labels \"wmproxy.source\"}}" "$1" 2>/dev/null || true; }
RUNTIME_ID="$RUNTIME $("$RUNTIME_BIN" --version) $(stat -c %s "$RUNTIME_BIN")"
import_base() {
  rootfs=$WORK/rootfs
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/app"
  chmod 1777 "$rootfs/tmp"
  cp "$RUNTIME_BIN" "$rootfs/usr/local/bin/$RUNTIME"
  # `js` is the runtime under a neutral name, so the Dockerfiles need not know which one it is.
  ln -s "$RUNTIME" "$rootfs/usr/local/bin/js"
  # Every shared library the binary loads (and the loader itself), at the same paths.
  ldd "$RUNTIME_BIN" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    cp -L --parents "$lib" "$rootfs"
  done
  # glibc's DNS resolver reads these; Docker bind-mounts /etc/hosts and /etc/resolv.conf.
  printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
  printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  fi
  log "importing $BASE_TAG ($(du -sh "$rootfs" | cut -f1), $RUNTIME $("$RUNTIME_BIN" --version))"
  tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/bin HOME=/tmp' \
    --change 'WORKDIR /app' \
    --change 'ENTRYPOINT ["/usr/local/bin/js"]' \
    --change "LABEL wmproxy.source=\"$RUNTIME_ID\"" \
    - "$BASE_TAG" >/dev/null
}
if [ "$(label_of "$BASE_TAG")" = "$RUNTIME_ID" ]; then
  log "$BASE_TAG is up to date ($RUNTIME_ID)"
else
  previous_base=$(docker image inspect -f '{{.Id}}' "$BASE_TAG" 2>/dev/null || true)
  import_base
  [ -n "$previous_base" ] && docker rmi "$previous_base" >/dev/null 2>&1 || true
fi

# ------------------------------------------------------------- wmproxy image
if [ "$BUILD" = 1 ]; then
  log "building TypeScript (tsc -b)"
  (cd "$ROOT" && node_modules/.bin/tsc -b)
fi
app=$WORK/context/app
mkdir -p "$app"
cd "$ROOT"
# The workspace packages and the CLI: sources (Bun runs them), dist (Node runs it), manifests.
files=(package.json tsconfig.base.json)
for dir in cli packages/*; do
  for entry in package.json tsconfig.json bin src dist README.md; do
    [ -e "$dir/$entry" ] && files+=("$dir/$entry")
  done
done
# Production dependencies only (npm's own view of the tree, so nested copies are kept).
while read -r path; do
  files+=("$path")
done < <(npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$ROOT/||" | grep '^node_modules/' | grep -vx 'node_modules/typescript')
# (typescript, 23 MB, is only a peer dependency of elysia for its types; nothing loads it at run time.)
tar -c --exclude='*/dist/test' --exclude='*.tsbuildinfo' --exclude='*.map' "${files[@]}" | tar -x -C "$app"
log "app: $(du -sh "$app" | cut -f1)"
cp "$ROOT/docker/Dockerfile" "$WORK/context/Dockerfile"
# Docker (20.10) may print a deprecation notice for the legacy builder on stderr; keep it out of the way.
build() { # build TAG CONTEXT
  local hash
  hash=$( (echo "$RUNTIME_ID"; cd "$2" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
  if [ "$(label_of "$1")" = "$hash" ]; then
    log "$1 is up to date ($hash)"
    return
  fi
  log "building $1 ($hash)"
  REBUILT=1
  local previous
  previous=$(docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true)
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$BASE_TAG" --label "wmproxy.source=$hash" -t "$1" "$2" >/dev/null 2>"$WORK/build.log" || {
    cat "$WORK/build.log" >&2
    return 1
  }
  # The image this one replaces is now untagged: drop it (unless a container still uses it).
  [ -n "$previous" ] && docker rmi "$previous" >/dev/null 2>&1 || true
}
REBUILT=0
build "$TAG" "$WORK/context"

# ------------------------------------------------------------- backend image
mkdir -p "$WORK/backend"
cp "$ROOT/docker/backend/Dockerfile" "$ROOT/docker/backend/echo-server.mjs" "$WORK/backend/"
build "$BACKEND_TAG" "$WORK/backend"

if [ "$REBUILT" = 1 ]; then
  docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E "^(${TAG}|${BASE_TAG}|${BACKEND_TAG})\b" >&2 || true
  docker run --rm "$TAG" version >&2
fi
