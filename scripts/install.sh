#!/usr/bin/env bash
# Installs Centralino as a service (`make install`), or removes it (`make uninstall`).
#
#   scripts/install.sh [options]                 install or upgrade
#   scripts/install.sh --uninstall [--purge]     remove the program and units; --purge also
#                                                removes /etc/centralino, /var/lib/centralino
#                                                and the user
# Options:
#   --prefix DIR    the program (default /opt/centralino): DIR/venv with the switchboard and our
#                   pjsua2 build (from the wheel cache, built once if missing), DIR/share
#   --destdir DIR   install under DIR as if it were / (also DESTDIR=DIR): no user, no
#                   ownership, no systemctl; for packaging and tests
#   --no-venv       lay out files only, without making the venv (tests)
#   --no-start      with systemd running: enable the units, do not (re)start them
#   --dry-run       say what would be done, do nothing
#
# Layout: configuration in /etc/centralino (ivr.yaml and flows/ are copied from this checkout
# only where absent: an upgrade keeps them), data in /var/lib/centralino (store, recordings,
# prompt cache, the edge's generated files), run as user centralino (group dialout for the
# serial devices) by systemd/centralino.service, and systemd/centralino-edge.service when
# ivr.yaml has an 'edge:' section. With systemd as PID 1 the units are enabled and (re)started:
# the running switchboard drains its calls first (drain_seconds). Without it (containers, CI)
# the files are installed and the script says so.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/centralino
DESTDIR=${DESTDIR:-}
ETC=/etc/centralino
DATA=/var/lib/centralino
UNITS=/etc/systemd/system
USER_NAME=centralino
PYTHON=${PYTHON:-python3}
DRY=0
VENV=1
START=1
ACTION=install
PURGE=0

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --destdir) DESTDIR=$2; shift 2 ;;
        --no-venv) VENV=0; shift ;;
        --no-start) START=0; shift ;;
        --dry-run) DRY=1; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 >&2 ;;
    esac
done
DESTDIR=${DESTDIR%/}
if [[ -n "$DESTDIR" && "$DESTDIR" != /* ]]; then
    DESTDIR="$(pwd)/$DESTDIR"
fi

say() { echo "install: $*"; }
run() {
    if [[ $DRY -eq 1 ]]; then echo "would run: $*"; else "$@"; fi
}
# systemd as PID 1, and this is the real root: units are enabled and started
systemd_running() { [[ -z "$DESTDIR" && -d /run/systemd/system ]]; }
real_root() { [[ -z "$DESTDIR" ]]; }

if real_root && [[ $DRY -eq 0 && $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root (sudo make $ACTION), or with --destdir DIR or --dry-run" >&2
    exit 1
fi

# -- uninstall ----------------------------------------------------------------------------------
uninstall() {
    if systemd_running; then
        run systemctl disable --now centralino.service centralino-edge.service 2>/dev/null || true
    fi
    run rm -f "$DESTDIR$UNITS/centralino.service" "$DESTDIR$UNITS/centralino-edge.service"
    if systemd_running; then run systemctl daemon-reload; fi
    run rm -rf "$DESTDIR$PREFIX"
    if [[ $PURGE -eq 1 ]]; then
        run rm -rf "$DESTDIR$ETC" "$DESTDIR$DATA"
        if real_root && id "$USER_NAME" >/dev/null 2>&1; then run userdel "$USER_NAME"; fi
        say "removed the program, the units, $ETC, $DATA and the user $USER_NAME"
    else
        say "removed the program ($PREFIX) and the units; kept the configuration ($ETC), the" \
            "data ($DATA) and the user $USER_NAME: 'make uninstall PURGE=1' removes them too"
    fi
}

# -- install ------------------------------------------------------------------------------------
make_user() {
    if ! real_root; then
        say "--destdir: no user $USER_NAME made, files left owned by $(id -un)"
        return
    fi
    if ! id "$USER_NAME" >/dev/null 2>&1; then
        run useradd --system --user-group --home-dir "$DATA" --no-create-home \
            --shell /usr/sbin/nologin --comment "Centralino switchboard" "$USER_NAME"
    fi
    run usermod -a -G dialout "$USER_NAME"
}

# owner and mode of PATH; ownership only in the real root
own() {
    local owner=$1 mode=$2 path=$3
    run chmod "$mode" "$path"
    if real_root; then run chown "$owner" "$path"; fi
}

install_program() {
    run install -d -m 0755 "$DESTDIR$PREFIX" "$DESTDIR$PREFIX/share" "$DESTDIR$PREFIX/share/flows"
    run install -m 0644 "$SRC/README.md" "$DESTDIR$PREFIX/README.md"
    run install -m 0644 "$SRC/ivr.yaml" "$DESTDIR$PREFIX/share/ivr.yaml.example"
    run cp -R "$SRC/flows/." "$DESTDIR$PREFIX/share/flows/"
    if [[ $VENV -eq 0 ]]; then
        say "--no-venv: $PREFIX/venv not made"
        return
    fi
    local venv="$DESTDIR$PREFIX/venv"
    # an upgrade installs into the venv in service (a venv cannot be moved into place): the
    # running switchboard keeps working until the restart at the end
    if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        run rm -rf "$venv"
        run "$PYTHON" -m venv "$venv"
        run "$venv/bin/pip" install -q --upgrade pip
    fi
    # a local folder is always reinstalled; its dependencies only when missing or too old.
    # setuptools builds in the checkout's build/ (as `make clean` knows): a module removed
    # from the source would stay there and be installed again
    run rm -rf "$SRC/build"
    run "$venv/bin/pip" install -q "$SRC"
    local wheel
    if [[ $DRY -eq 1 ]]; then
        wheel="(the pjsua2 wheel of sipstack/build.sh)"
    else
        # cached under ~/.cache/centralino/pjsua2 (keyed by our patches), built once if missing
        wheel=$(PYTHON="$venv/bin/python" "$SRC/sipstack/build.sh")
    fi
    run "$venv/bin/pip" install -q --no-deps "$wheel"
    if [[ $DRY -eq 0 ]]; then
        say "program: $("$venv/bin/ivr" --version | tail -n 1)"
    fi
}

# ivr.yaml from this checkout with its data paths moved to $DATA (relative paths in ivr.yaml
# are read from the file's folder, which the unit keeps read-only)
write_config() {
    local target=$1
    sed -e "s|^store: var/|store: $DATA/|" \
        -e "s|^recordings: var/|recordings: $DATA/|" \
        -e "s|^\(  cache: \)var/|\1$DATA/|" "$SRC/ivr.yaml" > "$target"
    if grep -Eq '^(store|recordings):[[:space:]]+var/|^  cache:[[:space:]]+var/' "$target"; then
        echo "install.sh: a data path of $target is still under var/" >&2
        exit 1
    fi
}

install_config() {
    run install -d -m 0750 "$DESTDIR$ETC" "$DESTDIR$ETC/flows"
    own "root:$USER_NAME" 0750 "$DESTDIR$ETC"
    own "root:$USER_NAME" 0750 "$DESTDIR$ETC/flows"
    local yaml="$DESTDIR$ETC/ivr.yaml"
    if [[ -e "$yaml" ]]; then
        say "kept $ETC/ivr.yaml (the example is $PREFIX/share/ivr.yaml.example)"
    else
        if [[ $DRY -eq 1 ]]; then echo "would write $yaml"; else write_config "$yaml"; fi
        own "root:$USER_NAME" 0640 "$yaml"
        say "wrote $ETC/ivr.yaml from the demo configuration: edit it for this site"
    fi
    local file rel kept=0
    while IFS= read -r -d '' file; do
        rel=${file#"$SRC/flows"}
        run install -d -m 0750 "$DESTDIR$ETC/flows$rel"
        own "root:$USER_NAME" 0750 "$DESTDIR$ETC/flows$rel"
    done < <(find "$SRC/flows" -mindepth 1 -type d -print0)
    while IFS= read -r -d '' file; do
        rel=${file#"$SRC/flows/"}
        if [[ -e "$DESTDIR$ETC/flows/$rel" ]]; then
            kept=$((kept + 1))
            continue
        fi
        run install -m 0640 "$file" "$DESTDIR$ETC/flows/$rel"
        own "root:$USER_NAME" 0640 "$DESTDIR$ETC/flows/$rel"
    done < <(find "$SRC/flows" -type f -print0)
    if [[ $kept -gt 0 ]]; then say "kept $kept flow file(s) already in $ETC/flows"; fi
}

install_data() {
    local dir
    for dir in "$DATA" "$DATA/recordings" "$DATA/prompts"; do
        run install -d -m 0750 "$DESTDIR$dir"
        own "$USER_NAME:$USER_NAME" 0750 "$DESTDIR$dir"
    done
}

edge_configured() { grep -q '^edge:' "$DESTDIR$ETC/ivr.yaml" 2>/dev/null; }

install_units() {
    run install -d -m 0755 "$DESTDIR$UNITS"
    local units=(centralino.service)
    if edge_configured; then
        units=(centralino-edge.service centralino.service)
    else
        run rm -f "$DESTDIR$UNITS/centralino-edge.service"
    fi
    local unit tmp
    tmp=$(mktemp)
    for unit in "${units[@]}"; do
        sed -e "s|/opt/centralino|$PREFIX|g" "$SRC/systemd/$unit" > "$tmp"
        run install -m 0644 "$tmp" "$DESTDIR$UNITS/$unit"
    done
    rm -f "$tmp"
    if systemd_running; then
        run systemctl daemon-reload
        run systemctl enable "${units[@]}"
        if [[ $START -eq 0 ]]; then
            say "enabled, not started (--no-start): ${units[*]}"
            return
        fi
        # a restart of a running switchboard drains its calls first (drain_seconds)
        run systemctl restart "${units[@]}"
        say "enabled and started: ${units[*]} ('systemctl status centralino')"
    else
        say "systemd is not running here (not PID 1, or --destdir): installed ${units[*]}," \
            "not enabled; on the target run: systemctl daemon-reload &&" \
            "systemctl enable --now ${units[*]}"
    fi
}

if [[ $ACTION == uninstall ]]; then
    uninstall
    exit 0
fi
make_user
install_program
install_config
install_data
install_units
say "done: program $PREFIX, configuration $ETC, data $DATA${DESTDIR:+ (under $DESTDIR)}"
