#!/usr/bin/env bash
# sipstack/build.sh - build pjproject and its SWIG Python binding (pjsua2) into a
# cached Python wheel sized for Centralino (see sipstack/config_site.h).
#
# Usage:
#   sipstack/build.sh                     # Debian source package "ring" (pjproject 2.12.1, Jami fork)
#   sipstack/build.sh --tarball PATH/pjproject-2.x.tar.gz   # an upstream release tarball
#   sipstack/build.sh --print-path        # print the wheel path (cached or not), build nothing
#   sipstack/build.sh --print-plan        # machine, platform tag, key, wheel, configure args
#   sipstack/build.sh --force             # rebuild even if the wheel is cached
#
# stdout: one line, the absolute path of the wheel, so that a Makefile can run
#   pip install "$(sipstack/build.sh)"
# stderr: progress. The full build log is kept next to the wheel (build.log).
#
# Environment:
#   PYTHON            interpreter to build for (default python3); must be the one the
#                     project venv uses (CPython with its headers)
#   CENTRALINO_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/centralino);
#                     wheels go to $CENTRALINO_CACHE/pjsua2/<key>/
#   JOBS              parallel make jobs (default: nproc)
#   CC                C compiler whose target is the machine built for (default gcc)
#   RING_VERSION      Debian version of the source package "ring" to fetch
#   RING_SUITES       Debian suites to fetch it from (default "bookworm bookworm-security")
#
# Our own patches, sipstack/patches/*.patch (-p1 against the pjproject tree),
# are applied in name order after Debian's, to either source; each is listed
# by name in the build info (`ivr version`).
#
# The cache key hashes config_site.h, this script, our patches, the source
# identity and the Python version/ABI; any change gives a new wheel with a new
# local version (2.12.1+centralino.<key>), so pip reinstalls it.
#
# Debian packages needed to build (CI's .ci/run installs them; this script only
# checks and names what is missing):
#   apt-get install --no-install-recommends \
#     gcc g++ make binutils patch tar gzip xz-utils swig libssl-dev uuid-dev \
#     python3-dev python3-venv apt ca-certificates
# (python3-dev/python3-venv only when $PYTHON is Debian's python3; the wheel is
# packaged with setuptools, taken from a temporary venv + PyPI if $PYTHON lacks
# setuptools or wheel.)

set -euo pipefail

readonly RING_VERSION="${RING_VERSION:-20230206.0~ds2-1.1+deb12u1}"
readonly RING_PJ_VERSION_EXPECTED="2.12.1"   # pjproject version inside that ring source
readonly RING_SUITES="${RING_SUITES:-bookworm bookworm-security}"
readonly PJ_CFLAGS="-fPIC -O2 -DNDEBUG"
readonly CONFIGURE_FLAGS=(
    --disable-video --disable-sound --enable-epoll --disable-speex-aec
    --disable-speex-codec --disable-gsm-codec --disable-ilbc-codec
    --disable-g7221-codec --disable-bcg729 --disable-upnp --disable-libwebrtc
    --disable-v4l2 --disable-ffmpeg --disable-opencore-amr --disable-silk
    --disable-sdl --disable-openh264 --disable-libyuv
)
readonly STEPS=6

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
readonly SCRIPT_DIR SCRIPT_PATH
readonly CONFIG_SITE="$SCRIPT_DIR/config_site.h"
readonly OWN_PATCH_DIR="$SCRIPT_DIR/patches"

say() { printf 'pjsua2: %s\n' "$*" >&2; }
LOG_ACTIVE=0
die() {
    say "error: $*"
    [ "$LOG_ACTIVE" -eq 0 ] || printf 'error: %s\n' "$*" >>"$LOG"
    exit 1
}

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$SCRIPT_PATH" >&2
}

# ---------------------------------------------------------------- arguments
tarball=""
print_path=0
print_plan=0
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tarball) [ $# -ge 2 ] || die "--tarball needs a PATH"; tarball="$2"; shift 2 ;;
        --tarball=*) tarball="${1#--tarball=}"; shift ;;
        --print-path) print_path=1; shift ;;
        --print-plan) print_plan=1; shift ;;
        --force) force=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
done

[ -r "$CONFIG_SITE" ] || die "missing $CONFIG_SITE"

# ---------------------------------------------------------------- identity
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON not found (Debian package: python3)"
# exe, implementation, wheel python tag (cp311), EXT_SUFFIX, wheel platform tag,
# include dir, full version, major.minor (the ABI: the key ignores patch releases)
py_info="$("$PYTHON" - <<'PYEOF'
import sys, sysconfig
print(sys.executable)
print(sys.implementation.name)
print("cp%d%d" % sys.version_info[:2])
print(sysconfig.get_config_var("EXT_SUFFIX") or "")
print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))
print(sysconfig.get_paths()["include"])
print(sys.version.split()[0])
print("%d.%d" % sys.version_info[:2])
PYEOF
)" || die "cannot run $PYTHON"
{ read -r PY_EXE; read -r PY_IMPL; read -r PY_TAG; read -r PY_EXT_SUFFIX; read -r PY_PLAT; read -r PY_INCLUDE; read -r PY_VERSION; read -r PY_MM; } <<<"$py_info"
[ "$PY_IMPL" = cpython ] || die "$PYTHON is $PY_IMPL; only CPython is supported"

if [ -n "$tarball" ]; then
    [ -f "$tarball" ] || die "no such tarball: $tarball"
    tarball="$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")"
    tarball_sha="$(sha256sum "$tarball" | cut -d' ' -f1)"
    SOURCE_DESC="tarball $(basename "$tarball")"
    source_id="$SOURCE_DESC sha256=$tarball_sha"
else
    SOURCE_DESC="debian ring $RING_VERSION"
    source_id="$SOURCE_DESC"
fi

CONFIG_SITE_SHA256="$(sha256sum "$CONFIG_SITE" | cut -d' ' -f1)"
OWN_PATCHES=()
if [ -d "$OWN_PATCH_DIR" ]; then
    mapfile -t OWN_PATCHES < <(find "$OWN_PATCH_DIR" -maxdepth 1 -type f -name '*.patch' | LC_ALL=C sort)
fi
KEY="$(
    {
        printf 'config_site.h %s\n' "$CONFIG_SITE_SHA256"
        printf 'build.sh %s\n' "$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)"
        for p in "${OWN_PATCHES[@]+"${OWN_PATCHES[@]}"}"; do
            printf 'patch %s %s\n' "$(basename "$p")" "$(sha256sum "$p" | cut -d' ' -f1)"
        done
        printf 'source %s\n' "$source_id"
        printf 'python %s %s %s %s\n' "$PY_IMPL" "$PY_MM" "$PY_EXT_SUFFIX" "$PY_PLAT"
    } | sha256sum | cut -c1-16
)"
CACHE_ROOT="${CENTRALINO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/centralino}/pjsua2"
OUT_DIR="$CACHE_ROOT/$KEY"
LOG="$OUT_DIR/build.log"

cached_wheel() {
    local w
    for w in "$OUT_DIR"/pjsua2-*.whl; do
        [ -f "$w" ] && { printf '%s\n' "$w"; return 0; }
    done
    return 1
}

# PEP 440: public part of the pjproject version + local label with the cache key.
wheel_version() {  # $1 = pjproject version string, e.g. 2.12.1 or 2.14-dev
    local pub extra
    pub="$(printf '%s' "$1" | sed -E 's/^([0-9]+(\.[0-9]+)*).*/\1/')"
    extra="$(printf '%s' "${1#"$pub"}" | tr -c 'A-Za-z0-9\n' '.' | sed -E 's/\.+/./g; s/^\.//; s/\.$//')"
    printf '%s+centralino.%s%s\n' "$pub" "$KEY" "${extra:+.$extra}"
}
wheel_name() {  # $1 = pjproject version
    printf 'pjsua2-%s-%s-%s-%s.whl\n' "$(wheel_version "$1")" "$PY_TAG" "$PY_TAG" "$PY_PLAT"
}

# The machine is the compiler's (the userland's), never the kernel's: Raspberry Pi OS 32-bit
# runs a 64-bit kernel (uname -m: aarch64) under an armhf gcc. Given to configure as --build,
# so pjproject's config.guess (2012, reads uname) is not asked. x86_64, aarch64 (Raspberry Pi
# OS 64-bit, Debian 12 arm64) and armhf alike: nothing else here depends on the machine; the
# wheel's platform tag and the cache key come from $PYTHON (sysconfig: linux_aarch64...).
CC="${CC:-gcc}"
BUILD_TRIPLET="$("$CC" -dumpmachine 2>/dev/null)" || BUILD_TRIPLET=""

if [ "$print_plan" -eq 1 ]; then
    printf 'machine %s\nkernel %s\nplatform %s\nkey %s\nwheel %s\nconfigure --build=%s %s\n' \
        "${BUILD_TRIPLET:-unknown (no $CC)}" "$(uname -m)" "$PY_PLAT" "$KEY" \
        "$(wheel_name "$RING_PJ_VERSION_EXPECTED")" "${BUILD_TRIPLET:-?}" "${CONFIGURE_FLAGS[*]}"
    exit 0
fi

if [ "$force" -eq 0 ] && w="$(cached_wheel)"; then
    [ "$print_path" -eq 1 ] || say "using cached wheel $w"
    printf '%s\n' "$w"
    exit 0
fi

if [ "$print_path" -eq 1 ]; then
    if [ -n "$tarball" ]; then
        vmak="$(tar -xOf "$tarball" --wildcards --occurrence=1 '*/version.mak' 2>/dev/null || true)"
        pjv="$(printf '%s\n' "$vmak" | sed -nE 's/^export PJ_VERSION_(MAJOR|MINOR|REV|SUFFIX) *:= *//p' |
               { read -r a; read -r b; read -r c; read -r d; printf '%s.%s%s%s' "$a" "$b" "${c:+.$c}" "$d"; })"
        [ "$pjv" != "." ] || die "cannot read version.mak from $tarball"
    else
        pjv="$RING_PJ_VERSION_EXPECTED"
    fi
    say "not built yet"
    printf '%s/%s\n' "$OUT_DIR" "$(wheel_name "$pjv")"
    exit 0
fi

# ---------------------------------------------------------------- tools
check_tools() {
    local missing=() tool pkg
    local -A tool_pkg=(
        [gcc]=gcc [g++]=g++ [make]=make [strip]=binutils [patch]=patch [tar]=tar
        [gzip]=gzip [swig]=swig [sha256sum]=coreutils
    )
    [ -n "$tarball" ] || tool_pkg+=([apt-get]=apt [xz]=xz-utils)
    for tool in "${!tool_pkg[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("${tool_pkg[$tool]}")
    done
    if command -v gcc >/dev/null 2>&1; then
        printf '#include <openssl/ssl.h>\n' | gcc -E -x c - >/dev/null 2>&1 || missing+=(libssl-dev)
        printf '#include <uuid/uuid.h>\n' | gcc -E -x c - >/dev/null 2>&1 || missing+=(uuid-dev)
    fi
    [ -f "$PY_INCLUDE/Python.h" ] || missing+=("python3-dev (or the headers of $PY_EXE)")
    if [ ${#missing[@]} -gt 0 ]; then
        pkg="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
        die "missing build tools; install the Debian packages: $pkg"
    fi
}
check_tools

# ---------------------------------------------------------------- build setup
mkdir -p "$OUT_DIR"
# One build per key at a time; a second caller waits, then finds the wheel.
exec 9>"$OUT_DIR/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
    if [ "$force" -eq 0 ] && w="$(cached_wheel)"; then
        say "using cached wheel $w (built by a concurrent run)"
        printf '%s\n' "$w"
        exit 0
    fi
fi

WORK="$(mktemp -d "$CACHE_ROOT/tmp.XXXXXX")"
: >"$LOG"
LOG_ACTIVE=1
SECONDS=0
step_name=""
declare -A step_secs=()
step_started=0

step() {  # step N "description"
    local now=$SECONDS
    [ -z "$step_name" ] || step_secs[$step_name]=$((now - step_started))
    step_name="$1"; step_started=$now
    printf 'pjsua2: %s [%3ds] [%s/%s] %s\n' "$(date -u +%H:%M:%S)" "$now" "$1" "$STEPS" "$2" >&2
    printf '\n===== [%s/%s] %s (t=%ss)\n' "$1" "$STEPS" "$2" "$now" >>"$LOG"
}
info() {  # a progress detail line, also in the log
    printf 'pjsua2:            %s\n' "$*" >&2
    printf '%s\n' "$*" >>"$LOG"
}
run() {  # run a command with its output to the log
    printf '+ %s\n' "$*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        {
            say "build FAILED (exit $rc) in step ${step_name:-?}/$STEPS after ${SECONDS}s; last lines of the log:"
            tail -n 40 "$LOG" | sed 's/^/    /'
            say "full log: $LOG"
            say "build dir kept for inspection: $WORK (remove it when done)"
        } >&2
    fi
}
trap on_exit EXIT

printf 'pjsua2 build key=%s source=%s python=%s (%s) started %s\n' \
    "$KEY" "$source_id" "$PY_EXE" "$PY_VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$LOG"

# ---------------------------------------------------------------- 1. fetch
# Print "deb-src [signed-by=K] URI SUITE main" for each wanted suite, on the
# mirror the system's own apt sources name (deb822 .sources or one-line .list).
make_sources_list() {
    local mirrors suite uri sb default_key=""
    [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] &&
        default_key=/usr/share/keyrings/debian-archive-keyring.gpg
    mirrors="$(
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            awk '
                function flush(  n, m, i, j, U, S) {
                    if (types ~ /deb/ && enabled != "no") {
                        n = split(uris, U, " "); m = split(suites, S, " ")
                        for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
                            print U[i], S[j], (sb ~ /^\// ? sb : "-")
                    }
                    types = uris = suites = sb = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                /^[ \t]/ { next }
                {
                    k = tolower($0); sub(/:.*/, "", k)
                    v = $0; sub(/^[^:]*:[ \t]*/, "", v); sub(/[ \t]+$/, "", v)
                    if (k == "types") types = v
                    else if (k == "uris") uris = v
                    else if (k == "suites") suites = v
                    else if (k == "signed-by") sb = v
                    else if (k == "enabled") enabled = tolower(v)
                }
                END { flush() }' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            awk '
                $1 != "deb" && $1 != "deb-src" { next }
                {
                    i = 2; sb = "-"
                    if ($2 ~ /^\[/) {
                        for (; i <= NF; i++) {
                            if ($i ~ /signed-by=/) { sb = $i; sub(/.*signed-by=/, "", sb); sub(/\].*/, "", sb) }
                            if ($i ~ /\]$/) { i++; break }
                        }
                    }
                    print $i, $(i + 1), sb
                }' "$f"
        done
    )"
    for suite in $RING_SUITES; do
        uri=""; sb="-"
        read -r uri _ sb < <(printf '%s\n' "$mirrors" | awk -v s="$suite" '$2 == s { print; exit }') || true
        if [ -z "$uri" ]; then
            case "$suite" in
                *-security) uri=http://deb.debian.org/debian-security ;;
                *) uri=http://deb.debian.org/debian ;;
            esac
            info "no system apt source for suite $suite; using $uri"
        fi
        [ "$sb" != "-" ] || sb="$default_key"
        printf 'deb-src %s%s %s main\n' "${sb:+[signed-by=$sb] }" "$uri" "$suite"
    done
}

fetch_ring() {  # sets ORIG_TAR DEB_TAR
    local src_dir="$CACHE_ROOT/sources/ring_$RING_VERSION" upstream apt_dir dl
    upstream="${RING_VERSION%-*}"; upstream="${upstream#*:}"
    ORIG_TAR="$src_dir/ring_$upstream.orig.tar.gz"
    DEB_TAR="$src_dir/ring_${RING_VERSION#*:}.debian.tar.xz"
    if [ -f "$ORIG_TAR" ] && [ -f "$DEB_TAR" ]; then
        info "source already downloaded: $src_dir"
        return 0
    fi
    apt_dir="$WORK/apt"; dl="$WORK/download"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/sources.list.d" "$apt_dir/cache/archives/partial" "$dl"
    make_sources_list >"$apt_dir/sources.list"
    sed 's/^/  /' "$apt_dir/sources.list" >>"$LOG"
    local apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
    )
    info "apt-get update (temporary source list, system apt state untouched)"
    run apt-get "${apt_opts[@]}" update
    info "apt-get source --download-only ring=$RING_VERSION"
    if ! (cd "$dl" && run apt-get "${apt_opts[@]}" source --download-only "ring=$RING_VERSION"); then
        info "available versions of ring:"
        apt-cache "${apt_opts[@]}" showsrc ring 2>/dev/null | sed -n 's/^Version: /  /p' | tee -a "$LOG" >&2 || true
        die "cannot download ring=$RING_VERSION (set RING_VERSION, or use --tarball)"
    fi
    [ -f "$dl/$(basename "$ORIG_TAR")" ] && [ -f "$dl/$(basename "$DEB_TAR")" ] ||
        die "apt-get source did not produce $(basename "$ORIG_TAR") and $(basename "$DEB_TAR")"
    mkdir -p "$(dirname "$src_dir")"
    rm -rf "$src_dir.tmp"; mv "$dl" "$src_dir.tmp"
    rm -rf "$src_dir"; mv "$src_dir.tmp" "$src_dir"
}

step 1 "fetching source ($SOURCE_DESC)"
if [ -z "$tarball" ]; then
    fetch_ring
else
    info "using $tarball"
fi

# ---------------------------------------------------------------- 2. unpack + patch
step 2 "unpacking and patching"
mkdir -p "$WORK/src"
PJ="$WORK/pjproject"
if [ -z "$tarball" ]; then
    run tar -xzf "$ORIG_TAR" -C "$WORK/src" --wildcards '*/daemon/contrib/tarballs-unpacked/pjproject-*'
    mapfile -t found < <(find "$WORK/src" -type d -path '*/tarballs-unpacked/pjproject-*.tar.gz/pjproject-*' -prune)
else
    run tar -xf "$tarball" -C "$WORK/src"
    mapfile -t found < <(find "$WORK/src" -maxdepth 2 -name aconfigure -printf '%h\n')
fi
[ "${#found[@]}" -eq 1 ] || die "expected one pjproject tree in the source, found ${#found[@]}"
PJ_DIRNAME="$(basename "${found[0]}")"
mv "${found[0]}" "$PJ"
rm -rf "$WORK/src"
info "pjproject tree: $PJ_DIRNAME"

PATCHES=()
if [ -z "$tarball" ]; then
    mkdir -p "$WORK/debian"
    run tar -xJf "$DEB_TAR" -C "$WORK/debian"
    pdir="$WORK/debian/debian/patches"
    [ -f "$pdir/series" ] || die "no debian/patches/series in $DEB_TAR"
    while read -r pname _; do
        case "$pname" in ''|'#'*) continue ;; esac
        pfile="$pdir/$pname"
        [ -f "$pfile" ] || die "patch in series not found: $pname"
        # Paths the patch touches (a "--- A" line followed by "+++ B"), without /dev/null.
        mapfile -t paths < <(awk '
            prev ~ /^--- / && /^\+\+\+ / { split(prev, a, /[ \t]+/); split($0, b, /[ \t]+/); print a[2]; print b[2] }
            { prev = $0 }' "$pfile" | grep -v '^/dev/null$' | sort -u)
        in_tree=0; out_tree=0; strip=""
        for p in "${paths[@]}"; do
            if [[ "$p" == */tarballs-unpacked/"$PJ_DIRNAME".tar.gz/"$PJ_DIRNAME"/* ]]; then
                in_tree=$((in_tree + 1))
                prefix="${p%%/tarballs-unpacked/*}/tarballs-unpacked/$PJ_DIRNAME.tar.gz/$PJ_DIRNAME/"
                n="$(printf '%s' "$prefix" | tr -cd '/' | wc -c)"
                [ -z "$strip" ] || [ "$strip" = "$n" ] || die "$pname: inconsistent path depth"
                strip="$n"
            else
                out_tree=$((out_tree + 1))
            fi
        done
        if [ "$in_tree" -eq 0 ]; then
            info "debian patch $pname: not for the pjproject tree, skipped"
            continue
        fi
        [ "$out_tree" -eq 0 ] || die "$pname touches the pjproject tree and other files; split it by hand"
        run patch -d "$PJ" -p"$strip" --batch --forward --dry-run -i "$pfile" ||
            die "debian patch $pname does not apply to $PJ_DIRNAME"
        run patch -d "$PJ" -p"$strip" --batch --forward --no-backup-if-mismatch -i "$pfile"
        info "debian patch $pname: APPLIED (-p$strip)"
        PATCHES+=("$pname")
    done <"$pdir/series"
    rm -rf "$WORK/debian"
fi
for pfile in "${OWN_PATCHES[@]+"${OWN_PATCHES[@]}"}"; do
    pname="$(basename "$pfile")"
    run patch -d "$PJ" -p1 --batch --forward --dry-run -i "$pfile" ||
        die "our patch $pname does not apply to $PJ_DIRNAME (see $LOG)"
    run patch -d "$PJ" -p1 --batch --forward --no-backup-if-mismatch -i "$pfile"
    info "our patch $pname: APPLIED (-p1)"
    PATCHES+=("$pname")
done

# pjlib's own version numbers (what Endpoint.libVersion() reports)
pj_cfg="$PJ/pjlib/include/pj/config.h"
pjdef() { sed -nE "s/^#define[ \t]+$1[ \t]+\"?([^\" \t]*)\"?.*/\1/p" "$pj_cfg" | head -n1; }
PJ_VERSION="$(pjdef PJ_VERSION_NUM_MAJOR).$(pjdef PJ_VERSION_NUM_MINOR)"
rev="$(pjdef PJ_VERSION_NUM_REV)"; [ -z "$rev" ] || [ "$rev" = 0 ] || PJ_VERSION="$PJ_VERSION.$rev"
PJ_VERSION="$PJ_VERSION$(pjdef PJ_VERSION_NUM_EXTRA)"
[[ "$PJ_VERSION" =~ ^[0-9]+\.[0-9]+ ]] || die "cannot read the pjproject version from $pj_cfg"
info "pjproject version $PJ_VERSION"
if [ -z "$tarball" ] && [ "$PJ_VERSION" != "$RING_PJ_VERSION_EXPECTED" ]; then
    die "ring $RING_VERSION holds pjproject $PJ_VERSION; update RING_PJ_VERSION_EXPECTED in build.sh"
fi

# ---------------------------------------------------------------- 3. configure
step 3 "configuring pjproject"
cp "$CONFIG_SITE" "$PJ/pjlib/include/pj/config_site.h"
conf_help="$(cd "$PJ" && ./aconfigure --help)"
flags=()
for f in "${CONFIGURE_FLAGS[@]}"; do
    feature="${f#--enable-}"; feature="${feature#--disable-}"
    if printf '%s\n' "$conf_help" | grep -Eq -- "--(enable|disable)-$feature([^A-Za-z0-9_-]|$)"; then
        flags+=("$f")
    else
        info "configure does not know $f: dropped"
    fi
done
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
[ -n "$BUILD_TRIPLET" ] || die "$CC -dumpmachine names no machine"
info "machine $BUILD_TRIPLET (kernel: $(uname -m)), wheel platform $PY_PLAT"
(cd "$PJ" && run ./configure --build="$BUILD_TRIPLET" "${flags[@]}" CFLAGS="$PJ_CFLAGS")

# ---------------------------------------------------------------- 4. make
step 4 "compiling pjproject (make dep; make -j$JOBS)"
run make -C "$PJ" dep
run make -C "$PJ" -j"$JOBS"

# ---------------------------------------------------------------- 5. swig
step 5 "building the SWIG Python binding for Python $PY_VERSION"
SWIG_PY="$PJ/pjsip-apps/src/swig/python"
run make -C "$SWIG_PY" PYTHON_EXE="$PY_EXE" USE_PYTHON3=1
so_built="$(find "$SWIG_PY/build" -name "_pjsua2*.so" -print -quit)"
[ -n "$so_built" ] && [ -f "$SWIG_PY/pjsua2.py" ] || die "swig build produced no _pjsua2*.so / pjsua2.py"

# ---------------------------------------------------------------- 6. wheel
step 6 "packaging the wheel"
STAGE="$WORK/stage"
mkdir -p "$STAGE"
cp "$SWIG_PY/pjsua2.py" "$STAGE/"
cp "$so_built" "$STAGE/_pjsua2$PY_EXT_SUFFIX"
run strip --strip-unneeded "$STAGE/_pjsua2$PY_EXT_SUFFIX"
info "_pjsua2$PY_EXT_SUFFIX: $(du -k "$STAGE/_pjsua2$PY_EXT_SUFFIX" | cut -f1) kB stripped"

# Smoke test in place, and the version the library reports.
lib_version="$(cd "$STAGE" && "$PY_EXE" -c '
import pjsua2
ep = pjsua2.Endpoint()
ep.libCreate()
print("LIBVERSION=" + ep.libVersion().full, flush=True)
ep.libDestroy()
' 2>>"$LOG" | sed -n 's/^LIBVERSION=//p')" || die "import pjsua2 failed in $STAGE"
[ "$lib_version" = "$PJ_VERSION" ] || die "libVersion() says '$lib_version', config.h says '$PJ_VERSION'"
info "import pjsua2 OK, libVersion $lib_version"

MAX_CALLS="$(sed -nE 's/^#define[ \t]+PJSUA_MAX_CALLS[ \t]+([0-9]+).*/\1/p' "$CONFIG_SITE")"
WHEEL_VERSION="$(wheel_version "$PJ_VERSION")"
patches_str="$(printf '%s\n' "${PATCHES[@]+"${PATCHES[@]}"}")"
SOURCE_DESC="$SOURCE_DESC" PJ_VERSION="$PJ_VERSION" PATCHES_STR="$patches_str" \
MAX_CALLS="$MAX_CALLS" CONFIG_SITE_SHA256="$CONFIG_SITE_SHA256" KEY="$KEY" \
CONFIGURE_ARGS="${flags[*]} CFLAGS=$PJ_CFLAGS" WHEEL_VERSION="$WHEEL_VERSION" \
STAGE="$STAGE" "$PY_EXE" - <<'PYEOF'
import datetime, os
e = os.environ
info = {
    "SOURCE": e["SOURCE_DESC"],
    "PJ_VERSION": e["PJ_VERSION"],
    "PATCHES": [p for p in e["PATCHES_STR"].split("\n") if p],
    "MAX_CALLS": int(e["MAX_CALLS"]),
    "CONFIG_SITE_SHA256": e["CONFIG_SITE_SHA256"],
    "BUILT_AT": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "CACHE_KEY": e["KEY"],
    "CONFIGURE_ARGS": e["CONFIGURE_ARGS"],
    "WHEEL_VERSION": e["WHEEL_VERSION"],
}
with open(os.path.join(e["STAGE"], "pjsua2_build_info.py"), "w") as f:
    f.write('"""How this pjsua2 was built (written by sipstack/build.sh)."""\n\n')
    for k, v in info.items():
        f.write("%s = %r\n" % (k, v))
PYEOF

cat >"$STAGE/pyproject.toml" <<'EOF'
[build-system]
requires = ["setuptools>=61", "wheel"]
build-backend = "setuptools.build_meta"
EOF
cat >"$STAGE/setup.py" <<EOF
# Packages a prebuilt _pjsua2 extension (built by sipstack/build.sh).
import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # platform wheel: cpXY-cpXY-<platform>
        return True


class BuildPyWithExtension(build_py):
    def run(self):
        super().run()
        for so in glob.glob("_pjsua2*.so"):
            self.copy_file(so, os.path.join(self.build_lib, so))


setup(
    name="pjsua2",
    version="$WHEEL_VERSION",
    description="PJSIP pjsua2 SWIG binding built for Centralino ($SOURCE_DESC)",
    url="https://www.pjsip.org",
    license="GPL-2.0-or-later",
    py_modules=["pjsua2", "pjsua2_build_info"],
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithExtension},
    python_requires="==$PY_MM.*",
    zip_safe=False,
)
EOF

if "$PY_EXE" -c 'import setuptools, wheel' >/dev/null 2>&1; then
    wheel_py="$PY_EXE"
else
    info "setuptools/wheel missing in $PY_EXE: temporary venv with them from PyPI"
    run "$PY_EXE" -m venv "$WORK/wheelenv" ||
        die "$PY_EXE -m venv failed (Debian package: python3-venv)"
    wheel_py="$WORK/wheelenv/bin/python"
    run "$wheel_py" -m pip install --disable-pip-version-check "setuptools>=61" wheel
fi
mkdir -p "$WORK/dist"
run "$wheel_py" -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation \
    --no-index -w "$WORK/dist" "$STAGE"
built="$(find "$WORK/dist" -name 'pjsua2-*.whl' -print -quit)"
[ -n "$built" ] || die "pip wheel produced no wheel"
expected="$(wheel_name "$PJ_VERSION")"
[ "$(basename "$built")" = "$expected" ] ||
    info "note: wheel is named $(basename "$built"), expected $expected"
"$PY_EXE" - "$built" <<'PYEOF' >>"$LOG" || die "wheel content check failed"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print("\n".join(names))
for want in ("pjsua2.py", "pjsua2_build_info.py"):
    assert want in names, want
assert any(n.startswith("_pjsua2") and n.endswith(".so") and "/" not in n for n in names), "_pjsua2*.so"
PYEOF

step_secs[$step_name]=$((SECONDS - step_started))
rm -f "$OUT_DIR"/pjsua2-*.whl
mv "$built" "$OUT_DIR/"
WHEEL="$OUT_DIR/$(basename "$built")"
rm -rf "$WORK"
summary="fetch ${step_secs[1]}s, unpack+patch ${step_secs[2]}s, configure ${step_secs[3]}s, make ${step_secs[4]}s, swig ${step_secs[5]}s, wheel ${step_secs[6]}s"
printf '\n===== done in %ss: %s\npatches applied: %s\nwheel: %s\n' \
    "$SECONDS" "$summary" "${PATCHES[*]:-none}" "$WHEEL" >>"$LOG"
say "built in ${SECONDS}s ($summary)"
say "patches applied: ${PATCHES[*]:-none}"
say "wheel: $WHEEL (log: $LOG)"
printf '%s\n' "$WHEEL"
