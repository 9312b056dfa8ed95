#!/usr/bin/env bash
# Builds the images offline (no registry needed):
#   wmproxy-base-bun:local  a root filesystem holding only the local Bun binary
#                           (node_modules/bun), the shared libraries `ldd` lists
#                           for it, CA certificates and a nobody user; made with
#                           `docker import`. It stands in for both oven/bun
#                           images of the Dockerfiles (BUILDER and BASE).
#   wmproxy:local           docker/Dockerfile: the runtime tree + HEALTHCHECK.
#   wmproxy-backend:local   docker/backend: the flaky backend of the e2e tests.
#   wmproxy-curl:local      the host's curl and its libraries, for tests that
#                           drive the proxies from inside a container.
# Each image carries a `wmproxy.source` label (a hash of what went into it);
# an image whose inputs did not change is not rebuilt, so tests can call this
# every time.
#
# Usage: docker/build-image.sh [--tag NAME] [--no-build]
#   --tag       tag of the wmproxy image (default wmproxy:local)
#   --no-build  skip `tsc -b` (the image does not need it; it checks that the sources compile)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=wmproxy:local
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=${2:?--tag needs a name}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

BUN_BIN=$(readlink -f "$ROOT/node_modules/.bin/bun" 2>/dev/null || true)
if [ -z "$BUN_BIN" ] || [ ! -x "$BUN_BIN" ]; then
  echo "build-image.sh: no bun binary in node_modules (run npm install first)" >&2
  exit 1
fi
command -v docker >/dev/null || { echo "build-image.sh: docker is not installed" >&2; exit 1; }

BASE_TAG=wmproxy-base-bun:local
BACKEND_TAG=wmproxy-backend:local
CURL_TAG=wmproxy-curl:local
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

log() { printf 'build-image: %s\n' "$*" >&2; }
label_of() { docker image inspect -f "{{index .Config.Labels \"wmproxy.source\"}}" "$1" 2>/dev/null || true; }
replaced() { # the image a new build untagged: drop it (unless a container still uses it)
  [ -n "$1" ] && docker rmi "$1" >/dev/null 2>&1 || true
}

# A root filesystem with BINARY at DEST and every shared library it loads (and
# the loader) at the same paths, plus what glibc and TLS clients read.
make_rootfs() { # make_rootfs DIR BINARY DEST
  local rootfs=$1
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$(dirname "$rootfs$3")"
  chmod 1777 "$rootfs/tmp"
  cp "$2" "$rootfs$3"
  ldd "$2" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    cp -L --parents "$lib" "$rootfs"
  done
  # Docker bind-mounts /etc/hosts and /etc/resolv.conf; nsswitch tells glibc to use them.
  printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
  printf 'root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n' > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"; fi
}

import_image() { # import_image TAG SOURCE_ID ROOTFS [--change ...]
  local tag=$1 source=$2 rootfs=$3
  shift 3
  local previous
  previous=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  log "importing $tag ($(du -sh "$rootfs" | cut -f1))"
  tar -C "$rootfs" --numeric-owner -c . | docker import "$@" --change "LABEL wmproxy.source=\"$source\"" - "$tag" >/dev/null
  replaced "$previous"
}

# ------------------------------------------------------------------ base image
BASE_ID="bun $("$BUN_BIN" --version) $(stat -c %s "$BUN_BIN")"
if [ "$(label_of "$BASE_TAG")" = "$BASE_ID" ]; then
  log "$BASE_TAG is up to date ($BASE_ID)"
else
  make_rootfs "$WORK/base" "$BUN_BIN" /usr/local/bin/bun
  import_image "$BASE_TAG" "$BASE_ID" "$WORK/base" \
    --change 'ENV PATH=/usr/local/bin HOME=/tmp' --change 'ENTRYPOINT ["/usr/local/bin/bun"]'
fi

# A Dockerfile build, skipped when the label says its context is unchanged.
REBUILT=0
build() { # build TAG CONTEXT [docker build args...]
  local tag=$1 context=$2
  shift 2
  local hash previous
  hash=$( (echo "$BASE_ID"; cd "$context" && find . -type f -print0 | sort -z | xargs -0 sha256sum; find . -type l -printf '%p -> %l\n' | sort) | sha256sum | cut -c1-16)
  if [ "$(label_of "$tag")" = "$hash" ]; then
    log "$tag is up to date ($hash)"
    return
  fi
  log "building $tag ($hash)"
  REBUILT=1
  previous=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  # The legacy builder: BuildKit would try to reach a registry for its frontend.
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BUILDER=$BASE_TAG" --build-arg "BASE=$BASE_TAG" \
    --label "wmproxy.source=$hash" -t "$tag" "$@" "$context" >/dev/null 2>"$WORK/build.log" || {
    cat "$WORK/build.log" >&2
    return 1
  }
  replaced "$previous"
  # The app stage of a multi-stage build stays behind as a dangling image.
  docker image prune -f --filter label=wmproxy.stage=app >/dev/null 2>&1 || true
}

# ------------------------------------------------------------- wmproxy image
if [ "$BUILD" = 1 ]; then
  log "checking that the sources compile (tsc -b)"
  (cd "$ROOT" && node_modules/.bin/tsc -b)
fi
# The context a `docker build .` at the repository root would see, with the
# production dependencies added (npm's view of the tree, so nested copies and
# the workspace links are kept): stage-app.mjs then installs nothing.
context=$WORK/context
mkdir -p "$context"
cd "$ROOT"
files=(package.json package-lock.json tsconfig.base.json docker/Dockerfile docker/stage-app.mjs docker/wmproxy.toml)
for dir in cli packages/*; do
  for entry in package.json bin src README.md; do
    [ -e "$dir/$entry" ] && files+=("$dir/$entry")
  done
done
while read -r path; do
  files+=("$path")
done < <(npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$ROOT/||" | grep '^node_modules/' | grep -v '^node_modules/@wmproxy/e2e$')
tar -c "${files[@]}" | tar -x -C "$context"
log "context: $(du -sh "$context" | cut -f1)"
build "$TAG" "$context" -f "$context/docker/Dockerfile"

# ------------------------------------------------------------- backend image
mkdir -p "$WORK/backend"
cp "$ROOT/docker/backend/Dockerfile" "$ROOT/docker/backend/flaky-backend.mjs" "$WORK/backend/"
build "$BACKEND_TAG" "$WORK/backend"

# ---------------------------------------------------------------- curl image
CURL_BIN=$(readlink -f "$(command -v curl)")
CURL_ID="curl $(stat -c '%s %Y' "$CURL_BIN") $("$CURL_BIN" --version | head -1 | cut -d' ' -f2)"
if [ "$(label_of "$CURL_TAG")" = "$CURL_ID" ]; then
  log "$CURL_TAG is up to date"
else
  make_rootfs "$WORK/curl" "$CURL_BIN" /usr/bin/curl
  import_image "$CURL_TAG" "$CURL_ID" "$WORK/curl" \
    --change 'ENV PATH=/usr/bin HOME=/tmp' --change 'USER 65534:65534' --change 'ENTRYPOINT ["/usr/bin/curl"]'
  REBUILT=1
fi

if [ "$REBUILT" = 1 ]; then
  docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E "^(${TAG}|${BASE_TAG}|${BACKEND_TAG}|${CURL_TAG})\b" >&2 || true
  docker run --rm --no-healthcheck "$TAG" version >&2
fi
