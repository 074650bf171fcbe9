#!/usr/bin/env bash
# Installs what the guardian needs on a fresh Debian machine, once; cheap when all is present.
# System packages come from apt (redis-server, prometheus for dashboard/alert query checks),
# Python packages from PyPI, Kafka's jars from Maven Central (cached under ~/.cache/guardian).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "missing: ${need_apt[*]}; install them with your package manager" >&2; exit 1
  fi
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  say "installing ${need_apt[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's prometheus package starts a system service; we only want the binary.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi

PY=${PYTHON:-python3}
stamp=.guardian-install.stamp
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ guardian_dev/pyproject.toml -nt "$stamp" ] \
   || ! $PY -c "import guardian, guardian_dev, bench, confluent_kafka, faust" 2>/dev/null; then
  say "installing the guardian, its developer tools (guardian-dev) and their Python dependencies"
  $PY -m pip install -q --disable-pip-version-check -e ".[dev]" -e ./guardian_dev
  touch "$stamp"
fi

say "resolving Kafka jars (cached after the first run)"
$PY -c "from guardian_dev.kafka import ensure_jars; from guardian.settings import DevSettings as S; s=S(); ensure_jars(s.home, s.kafka_version, print)"
say "setup complete"
