#!/usr/bin/env bash
# Build the certainly-ingest container image for real and run it.
#
#   bash tests/container/build_and_run.sh
#
# Works with no Docker engine and no pullable base image (as root on Debian 12):
#   1. installs podman, buildah and debootstrap if one is missing (apt-get);
#   2. builds a Debian bookworm base image with debootstrap once, cached as
#      localhost/ingest-base:bookworm (set INGEST_BASE_IMAGE=python:3.11-slim-bookworm, say,
#      to build on another base instead; INGEST_REBUILD_BASE=1 rebuilds the cached one);
#   3. `podman build --isolation chroot` of the repository's Dockerfile, from a scratch copy of
#      the files the image needs, with the host's pip index settings passed in;
#   4. logs the image's size and its base's; checks the non-root user, ENTRYPOINT, CMD, env
#      and labels; runs `ingest --help` in the image with `buildah run` (`podman run` cannot
#      set rlimits in some sandboxes), checks that no IMAP server (pymap) is installed and
#      that `ingest demo` refuses in one line (exit 2);
#   5. with INGEST_CONTAINER_DATA=<host folder owned by uid 10001> (tests/container/test_image.py
#      sets it, with a .env there pointing the job at a Dovecot and the simulator it started on
#      loopback), runs the real job in the image with that folder as /data:
#      `ingest backfill $INGEST_CONTAINER_BACKFILL`, `ingest run --until-done`, `ingest verify`;
#   and removes its working container whatever happens.
# Idempotent: a second run reuses the base image and podman's layer cache.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE_IMAGE="${INGEST_BASE_IMAGE:-localhost/ingest-base:bookworm}"
IMAGE="${INGEST_IMAGE:-localhost/certainly-ingest:test}"
SUITE=bookworm
EXPECTED_UID=10001
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { printf '[container] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

TOTAL_START=$(date +%s.%N)
PHASE=""
PHASE_START=""
elapsed() { awk -v start="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - start }'; }
phase() {  # phase NAME: end the running phase (printing its wall time), start NAME
    phase_end
    PHASE="$1"
    PHASE_START=$(date +%s.%N)
    log "== $PHASE"
}
phase_end() {
    if [[ -n "$PHASE" ]]; then
        printf '[container] phase %-12s %6.1f s\n' "$PHASE" "$(elapsed "$PHASE_START")" >&2
        PHASE=""
    fi
}

WORK_CONTAINER=""
SCRATCH=""
cleanup() {
    local rc=$?
    if [[ -n "$WORK_CONTAINER" ]]; then
        buildah rm "$WORK_CONTAINER" >/dev/null 2>&1 || log "could not remove container $WORK_CONTAINER"
    fi
    if [[ -n "$SCRATCH" && -d "$SCRATCH" ]]; then
        rm -rf --one-file-system "$SCRATCH"
    fi
    exit "$rc"
}
trap cleanup EXIT
SCRATCH="$(mktemp -d /var/tmp/ingest-container.XXXXXX)"

# --------------------------------------------------------------------------------- tools
phase tools
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
if [[ "$BASE_IMAGE" == localhost/ingest-base:* ]]; then
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
fi
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
log "$(podman --version); $(buildah --version)"

# ---------------------------------------------------------------------------- base image
debian_mirror() {  # the host's Debian mirror, from its apt sources (empty: debootstrap's default)
    local sources=/etc/apt/sources.list.d/debian.sources
    if [[ -r $sources ]]; then
        awk '/^URIs:/ { print $2; exit }' "$sources"
    elif [[ -r /etc/apt/sources.list ]]; then
        awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ { print $2; exit }
             $1 == "deb" && $2 ~ /^\[/ && $3 !~ /security/ { print $3; exit }' /etc/apt/sources.list
    fi
}

if [[ "$BASE_IMAGE" == localhost/ingest-base:* ]]; then
    phase base-image
    exec 9>/var/lock/ingest-base-image.lock
    flock -w 900 9 || die "another build of $BASE_IMAGE holds /var/lock/ingest-base-image.lock"
    if [[ "${INGEST_REBUILD_BASE:-0}" == 1 ]] && podman image exists "$BASE_IMAGE"; then
        podman rmi "$BASE_IMAGE" >/dev/null
    fi
    if podman image exists "$BASE_IMAGE"; then
        log "$BASE_IMAGE exists; not rebuilding (INGEST_REBUILD_BASE=1 to force)"
    else
        mirror="$(debian_mirror)"
        log "debootstrap $SUITE from ${mirror:-debootstrap\'s default mirror}"
        rootfs="$SCRATCH/rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            "$SUITE" "$rootfs" ${mirror:+"$mirror"} >"$SCRATCH/debootstrap.log" 2>&1 \
            || { tail -n 30 "$SCRATCH/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
               "$rootfs"/var/log/*.log "$rootfs"/debootstrap
        tar -C "$rootfs" --numeric-owner -c . \
            | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
                --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
        rm -rf --one-file-system "$rootfs"
        log "imported $BASE_IMAGE"
    fi
    flock -u 9
    exec 9>&-
fi

# ------------------------------------------------------------------------------ pip index
# Pass the host's pip settings (pip config files and PIP_* variables) into the build stage,
# so that pip there reaches the same index through the same TLS trust; nothing is hard-coded.
phase pip-config
pip_setting() {  # pip_setting KEY: the host's effective value for a pip option, or nothing
    local key="$1" env_name
    env_name="PIP_$(tr 'a-z-' 'A-Z_' <<<"$key")"
    if [[ -n "${!env_name:-}" ]]; then
        printf '%s\n' "${!env_name}"
        return
    fi
    command -v python3 >/dev/null 2>&1 || return 0
    # Later lines of `pip config list` are files of higher priority; install.* beats global.*.
    python3 -m pip config list 2>/dev/null | python3 -c '
import sys
key = sys.argv[1]
found = {}
for line in sys.stdin:
    name, _, value = line.rstrip("\n").partition("=")
    section, _, option = name.rpartition(".")
    if option == key and section in (":env:", "install", "global"):
        found[section] = value.strip().strip("\x27\"")
for section in (":env:", "install", "global"):
    if found.get(section):
        print(found[section])
        break
' "$key" || true
}

build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
volumes=()
declare -A mounted=()
mount_local() {  # bind-mount a host folder read-only at the same path, once
    local dir="$1"
    [[ -d "$dir" && -z "${mounted[$dir]:-}" ]] || return 0
    mounted[$dir]=1
    volumes+=(--volume "$dir:$dir:ro")
}
mount_file_urls() {  # mount the local folders behind file:// URLs or plain paths
    local url path
    for url in $1; do
        case "$url" in
            file://*) path="${url#file://}" ;;
            /*) path="$url" ;;
            *) continue ;;
        esac
        path="${path%/}"
        # A PEP 503 "simple" tree links to files beside it: mount its parent.
        if [[ "$(basename "$path")" == simple ]]; then path="$(dirname "$path")"; fi
        mount_local "$path"
    done
}
for key in index-url extra-index-url find-links; do
    value="$(pip_setting "$key")"
    [[ -n "$value" ]] || continue
    env_name="PIP_$(tr 'a-z-' 'A-Z_' <<<"$key")"
    value="$(tr '\n' ' ' <<<"$value" | xargs)"
    build_args+=(--build-arg "$env_name=$value")
    mount_file_urls "$value"
    log "$env_name=$value"
done
[[ -n "$(pip_setting index-url)" ]] || log "PIP_INDEX_URL unset: pip's default index"
# The CA bundle pip trusts here (an intercepting proxy's CA may be in it) replaces the image's
# bundle during the build only.
host_ca="$(pip_setting cert)"
[[ -n "$host_ca" && -r "$host_ca" ]] || host_ca="$CA_BUNDLE"
if [[ -r "$host_ca" ]]; then
    volumes+=(--volume "$host_ca:$CA_BUNDLE:ro")
    build_args+=(--build-arg "PIP_CERT=$CA_BUNDLE")
    log "CA bundle $host_ca mounted at $CA_BUNDLE"
fi
source_url="$(git -C "$REPO_ROOT" remote get-url origin 2>/dev/null || true)"
[[ -z "$source_url" ]] || build_args+=(--build-arg "SOURCE_URL=$source_url")

# ---------------------------------------------------------------------------------- build
phase build
# A scratch copy holding only what the image needs: no .git, .venv or caches, whatever
# the state of the work tree.
context="$SCRATCH/context"
mkdir -p "$context"
for file in Dockerfile .dockerignore pyproject.toml README.md; do
    # -p: podman's layer cache for COPY looks at modification times too.
    if [[ -e "$REPO_ROOT/$file" ]]; then cp -p "$REPO_ROOT/$file" "$context/"; fi
done
[[ -e "$context/README.md" ]] || printf '# certainly-ingest\n' >"$context/README.md"
tar -C "$REPO_ROOT" --exclude=__pycache__ --exclude='*.py[co]' -c ingest | tar -C "$context" -x

old_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
podman build --isolation chroot --network host \
    "${volumes[@]}" "${build_args[@]}" \
    --iidfile "$SCRATCH/image-id" -t "$IMAGE" "$context"
# Everything below uses the id this build made, not the tag: another run on the machine (a
# second work tree, say) may move the tag meanwhile.
new_id="$(cat "$SCRATCH/image-id")"
new_id="${new_id#sha256:}"  # the bare form {{.Id}} gives, as old_id is
[[ "$new_id" =~ ^[0-9a-f]{64}$ ]] || die "podman build wrote no image id ('$new_id')"
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    podman rmi "$old_id" >/dev/null 2>&1 || true  # the previous build, now untagged
fi
# Each build leaves its build stage as an untagged image (the layer cache of the next build);
# keep the newest only, so that repeated runs on one machine do not fill its disk.
podman images --sort created --filter dangling=true --filter label=certainly-ingest.stage=build \
        --format '{{.ID}}' | tail -n +2 | while read -r stale; do
    podman rmi "$stale" >/dev/null 2>&1 || true
done
image_mb() { podman image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f", $1 / 1e6 }'; }
# The figures docs/operations.md's "The container image" quotes (tests/container/test_image.py
# checks them against these).
log "image size: $(image_mb "$new_id") MB ($IMAGE), base image size: $(image_mb "$BASE_IMAGE") MB ($BASE_IMAGE)"

# ---------------------------------------------------------------------------------- checks
phase inspect
entrypoint="$(podman image inspect --format '{{json .Config.Entrypoint}}' "$new_id")"
cmd="$(podman image inspect --format '{{json .Config.Cmd}}' "$new_id")"
user="$(podman image inspect --format '{{.Config.User}}' "$new_id")"
env="$(podman image inspect --format '{{json .Config.Env}}' "$new_id")"
log "Entrypoint=$entrypoint Cmd=$cmd User=$user"
[[ "$entrypoint" == '["ingest"]' ]] || die "ENTRYPOINT is $entrypoint, expected [\"ingest\"]"
[[ "$cmd" == '["run"]' ]] || die "CMD is $cmd, expected [\"run\"]"
[[ "${user%%:*}" == "$EXPECTED_UID" ]] || die "USER is '$user', expected $EXPECTED_UID"
for want in INGEST_STATE__PATH=/data/state.sqlite INGEST_OUTPUT__ROOT=/data/archive PYTHONUNBUFFERED=1; do
    [[ "$env" == *"\"$want\""* ]] || die "image env lacks $want"
done
if grep -E -i '(token|password|secret)[^"]*=[^"]' <<<"$env" >/dev/null; then
    die "image env carries something that looks like a secret: $env"
fi
podman image inspect --format '{{json .Config.Labels}}' "$new_id" | grep -q 'org.opencontainers.image.title' \
    || die "OCI labels missing"
podman image inspect --format '{{json .Config.Volumes}}' "$new_id" | grep -q '"/data"' \
    || die "the image declares no VOLUME /data"

phase run
WORK_CONTAINER="$(buildah from --pull-never "$new_id")"
in_image() { buildah run --isolation chroot --network host "$WORK_CONTAINER" -- "$@"; }

uid="$(in_image id -u)"
log "id -u in the image: $uid (buildah run takes the image's USER)"
[[ "$uid" == "$EXPECTED_UID" ]] || die "runs as uid $uid, expected $EXPECTED_UID"
# shellcheck disable=SC2016  # expanded by the shell in the image
in_image sh -c 'test "$(pwd)" = /data && touch /data/.probe && rm /data/.probe' \
    || die "/data is not the writable working directory of uid $EXPECTED_UID"

in_image ingest --help >"$SCRATCH/help.txt" 2>&1 || { cat "$SCRATCH/help.txt"; die "ingest --help failed"; }
grep -q demo "$SCRATCH/help.txt" || { cat "$SCRATCH/help.txt"; die "ingest --help does not list demo"; }
log "ingest --help: ok"

# The production image ships no IMAP server: pymap comes with the demo extra only.
if in_image python -c 'import pymap' >"$SCRATCH/pymap.txt" 2>&1; then
    die "pymap is installed in the image"
fi
grep -q "No module named 'pymap'" "$SCRATCH/pymap.txt" || { cat "$SCRATCH/pymap.txt"; die "python -c 'import pymap' failed oddly"; }
log "python -c 'import pymap': No module named 'pymap' (as it should)"

phase demo
# Through a shell in the image, so that the output checked is the command's alone (buildah
# adds lines of its own when a command fails) and its exit status comes last.
# shellcheck disable=SC2016  # expanded by the shell in the image
in_image sh -c 'ingest demo 2>&1; echo "exit status $?"' >"$SCRATCH/demo.txt"
cat "$SCRATCH/demo.txt" >&2
[[ "$(tail -n 1 "$SCRATCH/demo.txt")" == "exit status 2" ]] \
    || die "ingest demo did not exit 2 (no pymap in the image)"
[[ $(wc -l <"$SCRATCH/demo.txt") -eq 2 ]] || die "ingest demo did not refuse in one line"
grep -qF "pip install 'certainly-ingest[demo]'" "$SCRATCH/demo.txt" \
    || die "ingest demo does not say to install the demo extra"
log "ingest demo: exit 2, one line naming the demo extra"

if [[ -n "${INGEST_CONTAINER_DATA:-}" ]]; then
    phase job
    [[ -d "$INGEST_CONTAINER_DATA" ]] || die "INGEST_CONTAINER_DATA=$INGEST_CONTAINER_DATA is not a folder"
    [[ -n "${INGEST_CONTAINER_BACKFILL:-}" ]] || die "INGEST_CONTAINER_BACKFILL (the backfill's arguments) is unset"
    read -r -a backfill_args <<<"$INGEST_CONTAINER_BACKFILL"
    # buildah run mounts the image's own VOLUME /data over a bind mount at the same path (the
    # folder would look empty); docker, podman and Kubernetes mount the user's volume there.
    # So the working container (not the image) forgets that declaration.
    buildah config --volume /data- "$WORK_CONTAINER"
    # The job as a user runs it: the host folder as the volume /data, settings from the .env
    # in it (the working directory), the image's own env placing state and archive.
    in_job() {
        local rc=0
        log "\$ ingest $*"
        buildah run --isolation chroot --network host --volume "$INGEST_CONTAINER_DATA:/data" \
            "$WORK_CONTAINER" -- ingest "$@" || rc=$?
        [[ $rc -eq 0 ]] || die "ingest $1 exited $rc in the image"
    }
    in_job backfill "${backfill_args[@]}"
    in_job run --until-done --timeout 120
    in_job verify
else
    log "INGEST_CONTAINER_DATA unset: the job itself is not run (tests/container/test_image.py runs it)"
fi

phase_end
buildah rm "$WORK_CONTAINER" >/dev/null
WORK_CONTAINER=""
printf '[container] total %s s\n' "$(elapsed "$TOTAL_START")" >&2
echo "container image $IMAGE: build and run OK"
