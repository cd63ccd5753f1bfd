#!/bin/sh
# Installs flockrun from an unpacked release tarball: the binary, the flock(1) front end,
# the man pages, the shell completions and the documents, under PREFIX (default
# /usr/local). Unprivileged into a directory the user owns: ./install.sh --prefix ~/.local
set -eu

usage() {
    echo "usage: install.sh [--prefix DIR]   (default /usr/local)"
}

prefix=/usr/local
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || { usage >&2; exit 64; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 64 ;;
    esac
done
case "$prefix" in
"") echo "install.sh: --prefix needs a directory" >&2; exit 64 ;;
/*) ;;
*) prefix=$(pwd)/$prefix ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
[ -x "$here/bin/flockrun" ] || {
    echo "install.sh: $here/bin/flockrun is missing: run install.sh from the unpacked tarball" >&2
    exit 66
}

# Every file, as a path under the tarball and under PREFIX alike.
files="bin/flockrun"
for f in "$here"/share/man/man1/*.1.gz; do files="$files share/man/man1/$(basename "$f")"; done
files="$files share/bash-completion/completions/flockrun share/zsh/site-functions/_flockrun"
files="$files share/fish/vendor_completions.d/flockrun.fish"
files="$files share/doc/flockrun/README.md share/doc/flockrun/CHANGELOG.md share/doc/flockrun/LICENSE"

for f in $files; do
    mkdir -p "$prefix/$(dirname "$f")"
    # Through a temporary name and a rename, so a running flockrun is never overwritten
    # in place.
    cp "$here/$f" "$prefix/$f.new.$$"
    case "$f" in bin/*) chmod 755 "$prefix/$f.new.$$" ;; *) chmod 644 "$prefix/$f.new.$$" ;; esac
    mv -f "$prefix/$f.new.$$" "$prefix/$f"
    echo "installed $prefix/$f"
done
# flock(1)'s command line: a link named flock, in a directory of its own so that it takes
# the place of util-linux's flock only for those who put that directory first in PATH.
mkdir -p "$prefix/lib/flockrun/bin"
ln -sfn ../../../bin/flockrun "$prefix/lib/flockrun/bin/flock"
echo "installed $prefix/lib/flockrun/bin/flock -> $prefix/bin/flockrun"

case ":${PATH:-}:" in
*":$prefix/bin:"*) ;;
*) echo "note: $prefix/bin is not in PATH; add it to run flockrun by name" ;;
esac
"$prefix/bin/flockrun" --version
