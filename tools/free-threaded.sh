#!/usr/bin/env bash
# Gets a free-threaded CPython 3.13 ("3.13t", built with --disable-gil) into racelab's cache, once.
#
#   tools/free-threaded.sh        (or ./run free-threaded)
#
# The interpreter is ${RACELAB_CACHE:-$HOME/.cache/racelab}/python3.13t/bin/python3.13t; its path is the
# last line on stdout (everything else goes to stderr). A second call finds it and does nothing.
# Otherwise the first of these routes that works is taken, the newest 3.13 patch release first:
#   debian   CPython's source tarball as Debian's archive carries it (`apt-get source python3.13`, read
#            through the mirror that the machine's apt sources already name, with a private apt state;
#            the machine's own apt setup is left alone); built from source
#   python   python.org's Python-3.13.N.tgz; built from source
#   pyenv    pyenv's python-build with its 3.13.Nt definition (it downloads from python.org); built from source
#   uv       `uv python install 3.13t` (a prebuilt python-build-standalone; uv comes from PyPI if missing)
# Builds run under nice -n 19 with make -j2, in a directory under /tmp that is removed afterwards, and
# one at a time: a second call waits for the first (a lock in the cache directory).
#
# Settings: RACELAB_CACHE (the cache directory), RACELAB_FT_VERSION=3.13.N (take exactly that release),
#           RACELAB_FT_ROUTES="debian python pyenv uv" (which routes to try, in that order).
set -euo pipefail
exec 3>&1 1>&2  # stdout is only for the interpreter's path

cache=${RACELAB_CACHE:-$HOME/.cache/racelab}
prefix=$cache/python3.13t
python=$prefix/bin/python3.13t
stamp=$prefix/.racelab-complete
log=$cache/python3.13t-build.log
pin=${RACELAB_FT_VERSION:-}
routes=${RACELAB_FT_ROUTES:-debian python pyenv uv}

if [ -n "$pin" ] && ! [[ $pin =~ ^3\.13\.[0-9]+$ ]]; then
  echo "RACELAB_FT_VERSION must look like 3.13.N, not '$pin'" >&2
  exit 2
fi

free_threaded() {  # free_threaded PYTHON: true when PYTHON is a 3.13 built without the GIL and runs without it
  [ -x "$1" ] && env -u PYTHON_GIL "$1" -c '
import sys, sysconfig
sys.exit(not (sys.version_info[:2] == (3, 13) and sysconfig.get_config_var("Py_GIL_DISABLED")
              and not sys._is_gil_enabled()))' 2>/dev/null
}

done_already() { [ -f "$stamp" ] && free_threaded "$python"; }

if done_already; then
  echo "$python" >&3
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/python3.13t.lock"
if ! flock -n 9; then
  echo "another build of python3.13t is running; waiting for it" >&2
  flock 9
fi
if done_already; then  # the build we waited for made it
  echo "$python" >&3
  exit 0
fi

work=$(mktemp -d /tmp/racelab-ft.XXXXXX)
trap 'rm -rf "$work"' EXIT
: >"$log"

newest_first() { sort -u -V -r; }

build_deps() {  # the compiler and the headers that a CPython with ssl, zlib, ctypes, sqlite3 and readline needs
  local missing=() pkg
  command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || return 0
  for pkg in gcc make pkg-config xz-utils libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev \
    libsqlite3-dev libreadline-dev libncurses-dev uuid-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing build dependencies: ${missing[*]}" >&2
    apt-get update -q >>"$log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$log" 2>&1
  else
    echo "missing build dependencies (the build may lack modules): ${missing[*]}" >&2
  fi
}

build_source() {  # build_source TARBALL VERSION: configure --disable-gil, make -j2, install into $prefix
  local tarball=$1 version=$2 src start
  build_deps
  rm -rf "$prefix" "$work/src"
  mkdir -p "$work/src"
  tar -xf "$tarball" -C "$work/src"
  src=$work/src/Python-$version
  [ -x "$src/configure" ] || { echo "  $tarball holds no Python-$version/configure" >&2; return 1; }
  echo "  building CPython $version with --disable-gil (nice -n 19, make -j2; log: $log)" >&2
  start=$SECONDS
  (
    cd "$src"
    nice -n 19 ./configure --prefix="$prefix" --disable-gil --with-ensurepip=install
    nice -n 19 make -j2
    nice -n 19 make install
  ) >>"$log" 2>&1 || { echo "  the build failed; the end of $log:" >&2; tail -n 20 "$log" >&2; return 1; }
  echo "  built and installed in $((SECONDS - start)) s" >&2
}

debian_mirror() {  # the Debian archive that the machine's apt sources name (not the security one)
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' |
    tr -d '[:space:]' | sed 's:/*$::' | head -n 1 || true
}

route_debian() {
  local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg dir=$work/apt v upstream
  command -v apt-get >/dev/null && [ -f "$keyring" ] || { echo "  no apt-get or Debian keyring here" >&2; return 1; }
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || { echo "  the apt sources name no Debian archive" >&2; return 1; }
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/parts" "$dir/prefs" "$dir/get"
  local s
  for s in unstable testing stable; do
    echo "deb-src [signed-by=$keyring] $mirror $s main"
  done >"$dir/sources.list"
  local opts=(-q -o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=$dir/parts"
    -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=$dir/prefs"
    -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o "Dir::State::status=/dev/null"
    -o "Debug::NoLocking=1")
  [ "$(id -u)" -ne 0 ] || opts+=(-o "APT::Sandbox::User=root")  # root's apt would fetch as _apt, which cannot write here
  apt-get "${opts[@]}" update >>"$log" 2>&1 || { echo "  apt-get update of the source lists failed" >&2; return 1; }
  # Newest first; a version that the index lists but the mirror does not carry yet is skipped.
  for v in $(apt-cache "${opts[@]}" showsrc python3.13 2>/dev/null | awk '/^Version:/ {print $2}' |
    grep -E '^3\.13\.[0-9]+-' | newest_first); do
    upstream=${v%%-*}
    [ -z "$pin" ] || [ "$upstream" = "$pin" ] || continue
    rm -f "$dir/get"/*
    if (cd "$dir/get" && apt-get "${opts[@]}" source --download-only "python3.13=$v") >>"$log" 2>&1; then
      echo "  Debian's python3.13 $v: CPython $upstream" >&2
      build_source "$dir/get/python3.13_$upstream.orig.tar.xz" "$upstream"
      return
    fi
    echo "  Debian's python3.13 $v is listed but could not be downloaded" >&2
  done
  echo "  no python3.13${pin:+ $pin} source could be downloaded" >&2
  return 1
}

route_python() {
  local v=$pin base=https://www.python.org/ftp/python
  if [ -z "$v" ]; then
    v=$(curl -fsS --max-time 20 "$base/" 2>>"$log" | grep -oE '"3\.13\.[0-9]+/"' | tr -d '"/' | newest_first |
      head -n 1 || true)
    v=${v:-3.13.5}
  fi
  curl -fsSL --max-time 900 -o "$work/Python-$v.tgz" "$base/$v/Python-$v.tgz" 2>>"$log" ||
    { echo "  could not download $base/$v/Python-$v.tgz" >&2; return 1; }
  echo "  python.org's Python-$v.tgz" >&2
  build_source "$work/Python-$v.tgz" "$v"
}

route_pyenv() {
  local python_build definition start
  python_build=$(command -v python-build ||
    echo "${PYENV_ROOT:-$HOME/.pyenv}/plugins/python-build/bin/python-build")
  [ -x "$python_build" ] || { echo "  no pyenv python-build here" >&2; return 1; }
  if [ -n "$pin" ]; then
    definition=${pin}t
  else
    definition=$("$python_build" --definitions | grep -E '^3\.13\.[0-9]+t$' | newest_first | head -n 1 || true)
  fi
  [ -n "$definition" ] || { echo "  python-build has no 3.13.Nt definition" >&2; return 1; }
  build_deps
  rm -rf "$prefix"
  echo "  python-build $definition (nice -n 19, make -j2; log: $log)" >&2
  start=$SECONDS
  TMPDIR=$work PYTHON_BUILD_BUILD_PATH=$work/python-build MAKE_OPTS=-j2 \
    nice -n 19 "$python_build" "$definition" "$prefix" >>"$log" 2>&1 ||
    { echo "  python-build failed; the end of $log:" >&2; tail -n 5 "$log" >&2; return 1; }
  echo "  built and installed in $((SECONDS - start)) s" >&2
}

route_uv() {
  local uv host installed
  if ! uv=$(command -v uv); then
    host=$(command -v python3) || { echo "  no uv and no python3 to install it with" >&2; return 1; }
    "$host" -m venv "$work/uv-venv" >>"$log" 2>&1 && "$work/uv-venv/bin/python" -m pip install -q uv >>"$log" 2>&1 ||
      { echo "  could not pip install uv" >&2; return 1; }
    uv=$work/uv-venv/bin/uv
  fi
  UV_PYTHON_INSTALL_DIR=$work/uv-python UV_CACHE_DIR=$work/uv-cache \
    "$uv" python install --no-bin "${pin:-3.13}t" >>"$log" 2>&1 ||
    { echo "  uv python install ${pin:-3.13}t failed; the end of $log:" >&2; tail -n 3 "$log" >&2; return 1; }
  installed=$(find "$work/uv-python" -mindepth 1 -maxdepth 1 -type d -name 'cpython-3.13*freethreaded*' | head -n 1)
  [ -n "$installed" ] || { echo "  uv installed no free-threaded 3.13" >&2; return 1; }
  rm -rf "$prefix"
  mkdir -p "$prefix"
  cp -a "$installed/." "$prefix/"  # a python-build-standalone install is relocatable
  [ -e "$python" ] || ln -s python3 "$python"
  echo "  uv's $(basename "$installed")" >&2
}

for route in $routes; do
  case "$route" in
    debian | python | pyenv | uv) ;;
    *) echo "unknown route '$route' in RACELAB_FT_ROUTES (debian, python, pyenv, uv)" >&2; exit 2 ;;
  esac
  echo "python3.13t: trying the $route route" >&2
  if "route_$route" && free_threaded "$python"; then
    printf 'route=%s\nversion=%s\n' "$route" "$("$python" -c 'import platform; print(platform.python_version())')" >"$stamp"
    echo "python3.13t ready: $("$python" -VV | head -n 1)" >&2
    echo "$python" >&3
    exit 0
  fi
  rm -rf "$prefix"
done
echo "no route gave a free-threaded CPython 3.13 (tried: $routes); see $log" >&2
exit 1
