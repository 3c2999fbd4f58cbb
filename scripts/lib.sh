# Shared helpers of the scripts: logging, and installing Debian packages when
# they are missing. Sourced, not run.

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

APT_UPDATED=
apt_install() {
  command -v apt-get >/dev/null ||
    die "missing: $* — install it; this script installs packages only on Debian or Ubuntu"
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_toolchain() {
  command -v cargo >/dev/null ||
    die "cargo is missing: install Rust 1.94 or newer (https://rustup.rs), then run this again"
  command -v cc >/dev/null || apt_install build-essential
}

ensure_python() {
  command -v python3 >/dev/null || apt_install python3
}

# Makes sure a Docker engine answers: installs docker.io when the engine is
# missing (Debian, Ubuntu) and starts dockerd in the background when nothing
# answers on the default socket. Its log goes to $DOCKERD_LOG.
DOCKERD_LOG=${DOCKERD_LOG:-/tmp/paddock-dockerd.log}
ensure_docker() {
  if docker version >/dev/null 2>&1; then return; fi
  command -v dockerd >/dev/null || apt_install docker.io
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST#unix://}" = "$DOCKER_HOST" ]; then
    die "the Docker engine at DOCKER_HOST=$DOCKER_HOST does not answer"
  fi
  log "starting dockerd (log: $DOCKERD_LOG)"
  as_root sh -c "nohup dockerd >'$DOCKERD_LOG' 2>&1 &"
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && return
    sleep 0.5
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not start; see $DOCKERD_LOG"
}

# Registers gVisor's runsc with the engine as the runtime "runsc" (installing
# Debian's runsc when missing): in /etc/docker/daemon.json, merged with what is
# there, then a SIGHUP makes dockerd read it. runsc runs with --network=host:
# the container's own network namespace, which Docker set up (and Paddock's
# firewall rules cover), through the host kernel; gVisor's own network stack
# refuses to start under this engine ("cannot run with network enabled in root
# network namespace").
ensure_runsc() {
  command -v runsc >/dev/null || apt_install runsc
  if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then return; fi
  log "registering runsc (gVisor) with the Docker engine"
  as_root python3 - "$(command -v runsc)" <<'PY'
import json, os, sys
path = "/etc/docker/daemon.json"
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
config.setdefault("runtimes", {})["runsc"] = {"path": sys.argv[1], "runtimeArgs": ["--network=host"]}
os.makedirs("/etc/docker", exist_ok=True)
json.dump(config, open(path, "w"), indent=2)
PY
  as_root pkill -HUP -x dockerd || true
  for _ in $(seq 1 20); do
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && return
    sleep 0.5
  done
  die "dockerd did not take the runsc runtime; see $DOCKERD_LOG"
}

# buf (lint, breaking-change checks, TypeScript generation), from npm into
# .tools/ of the checkout; sets $BUF. Needs $TOOLS.
BUF_VERSION=1.75.0
ensure_buf() {
  BUF="$TOOLS/node/node_modules/.bin/buf"
  [ -x "$BUF" ] && return
  command -v npm >/dev/null || apt_install npm
  log "installing buf $BUF_VERSION from npm into .tools/"
  npm install --silent --no-fund --no-audit --prefix "$TOOLS/node" "@bufbuild/buf@$BUF_VERSION" >/dev/null
}

# Makes .tools/NAME a Python virtual environment with exactly the packages
# WANT (space-separated pins), unless it has them already.
ensure_venv() {
  local name=$1 want=$2
  local stamp="${TOOLS:?}/$name/.versions"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return
  python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
  log "installing $want from PyPI into .tools/"
  rm -rf "${TOOLS:?}/${name:?}"
  python3 -m venv "${TOOLS:?}/$name"
  # shellcheck disable=SC2086
  "${TOOLS:?}/$name/bin/pip" install --quiet $want
  echo "$want" >"$stamp"
}

# The Python the client tests and the benchmark run: the client package's
# dependencies at the versions its generated code was made for, the official
# MCP SDK (an agent for `paddock mcp`), mypy to check the client's types, the
# `docker` package (the benchmark's floor for a Python caller), and the
# Prometheus client (its parser reads the server's metrics in tests).
ensure_client_python() {
  CLIENT_PYTHON="${TOOLS:?}/client-venv/bin/python"
  ensure_venv client-venv "grpcio==1.85.3 protobuf==7.36.2 mcp==2.3.0 mypy==2.4.1 types-grpcio==1.85.0.20261028 types-protobuf==7.35.1.20260906 docker==7.2.0 prometheus-client==0.26.0"
}

# Python with Helm's library and the Kubernetes schemas, for the chart's
# tests (a venv of its own: the Helm wheel is large).
ensure_chart_python() {
  CHART_PYTHON="${TOOLS:?}/chart-venv/bin/python"
  ensure_venv chart-venv "helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4"
}
