#!/usr/bin/env bash
# Checks (and, as root, installs) the Debian packages Centralino needs to build, run and test.
#   scripts/system-deps.sh          install what is missing (root) or say what to install
#   scripts/system-deps.sh --list   print the package names
set -euo pipefail

# build of the SIP stack | prompts | test peers | source fetch | 'ivr graph' (SVG, PNG) |
# the edge, registrar of agents' phones (its jsonrpcs, xhttp, htable modules are in the base
# package) | promtool, to check monitoring/ | SIPVicious, the scanner the edge's security
# tests run against it (svmap, svwar, svcrack) | systemd-analyze, to verify and rate the unit |
# the console's browser tests (Playwright drives this Chromium; it downloads none of its own)
PACKAGES=(build-essential swig libssl-dev uuid-dev pkg-config dpkg-dev patch xz-utils
          espeak-ng sox baresip-core graphviz kamailio prometheus sipvicious systemd
          chromium)

if [[ "${1:-}" == "--list" ]]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "Installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"
# Debian enables a kamailio service with its sample configuration on all addresses, port 5060:
# it would take the edge's port. The edge runs under supervisord (make run-edge) instead.
if [[ " ${missing[*]} " == *" kamailio "* ]] && [[ -d /run/systemd/system ]]; then
    echo "Disabling Debian's kamailio.service (the edge runs its own Kamailio)" >&2
    systemctl disable --now kamailio.service || true
fi
# Debian enables a prometheus service (port 9090) and, through Recommends, node-exporter (port
# 9100): only promtool is wanted here. monitoring/README.md says how to run Prometheus.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
    echo "Disabling Debian's prometheus.service (only promtool is needed)" >&2
    systemctl disable --now prometheus.service prometheus-node-exporter.service || true
fi
