#!/usr/bin/env bash
# CI's check of the release artefacts (run as root on a throw-away machine, by .ci/run):
# builds them with pkg/dist.sh, has lintian look at the .deb, installs it with dpkg and
# checks the man pages, the bash completion and the flock(1) front end, removes it and
# checks nothing is left; then installs the tarball with install.sh as user nobody and
# runs flockrun from there.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "pkg/check.sh: $*" >&2
    exit 1
}

bash pkg/dist.sh
# From here on, the PATH a Debian system gives root, so that a flockrun installed by
# `cargo install` into ~/.cargo/bin (README.md's set-up command) cannot stand in for the
# package's /usr/bin/flockrun.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
deb=$(ls target/dist/flockrun_"$version"-1_amd64.deb)
tarball=target/dist/flockrun-$version-x86_64-unknown-linux-gnu.tar.gz
[[ -f $tarball ]] || fail "$tarball was not built"

work=$(mktemp -d)
holder=
cleanup() {
    [[ -n $holder ]] && kill "$holder" 2>/dev/null
    dpkg -r flockrun >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# lintian: no error (warnings are listed; README.md says which are kept and why).
lintian --fail-on error --info "$deb"

# A lock util-linux flock(1) holds, for the front end to find busy.
lock=$work/busy.lock
ready=$work/ready
mkfifo "$ready"
# -F: flock(1) execs the command itself, so $holder is the process that holds the lock.
flock -F "$lock" sh -c 'echo held >"$1"; exec sleep 600' sh "$ready" >/dev/null 2>&1 &
holder=$!
read -r _ <"$ready"

# The Debian package.
dpkg -i "$deb"
mapfile -t files < <(dpkg -L flockrun)
found=$(command -v flockrun) || fail "no flockrun in PATH ($PATH) after dpkg -i"
[[ $found == /usr/bin/flockrun ]] || fail "flockrun in PATH is $found, not /usr/bin/flockrun"
flockrun --version | grep -q "^flockrun $version" || fail "flockrun --version: $(flockrun --version)"
for page in flockrun flockrun-exec flockrun-try flockrun-read flockrun-write flockrun-status flockrun-flock; do
    path=$(man -w "$page") || fail "man -w $page found nothing"
    [[ $path == /usr/share/man/man1/$page.1.gz ]] || fail "man -w $page: $path"
done
# As a new Debian user's interactive bash has it (/etc/skel/.bashrc loads bash-completion,
# which loads a command's completion the first time Tab is pressed after it).
mkdir "$work/home"
cp /etc/skel/.bashrc "$work/home/"
spec=$(HOME=$work/home bash -ic \
    'complete -p flockrun 2>/dev/null || { __load_completion flockrun && complete -p flockrun; }' 2>/dev/null) ||
    fail "bash found no completion for flockrun"
[[ $spec == *" flockrun" ]] || fail "bash's completion for flockrun: $spec"
[[ -f /usr/share/zsh/vendor-completions/_flockrun ]] || fail "no zsh completion"
[[ -f /usr/share/fish/vendor_completions.d/flockrun.fish ]] || fail "no fish completion"
[[ $(readlink -f /usr/lib/flockrun/bin/flock) == /usr/bin/flockrun ]] || fail "/usr/lib/flockrun/bin/flock is not a link to flockrun"
# flock(1)'s behaviour through the link: a free lock runs the command, a busy one exits 1
# at once with -n, and -E sets that status, as util-linux flock does.
/usr/lib/flockrun/bin/flock -n "$work/free.lock" true || fail "flock -n on a free lock failed"
status=0
/usr/lib/flockrun/bin/flock -n "$lock" true || status=$?
[[ $status == 1 ]] || fail "flock -n on a busy lock exited $status, not 1"
status=0
/usr/lib/flockrun/bin/flock -n -E 42 "$lock" true || status=$?
[[ $status == 42 ]] || fail "flock -n -E 42 on a busy lock exited $status, not 42"
status=0
flock -n -E 42 "$lock" true || status=$?
[[ $status == 42 ]] || fail "util-linux flock itself exited $status"
[[ $(readlink -f "$(command -v flock)") != /usr/bin/flockrun ]] || fail "the package took the name flock in PATH"

dpkg -r flockrun
for f in "${files[@]}"; do
    # Directories such as /usr/share/man/man1 stay for other packages' files; the
    # package's own are checked below.
    [[ -d $f && ! -L $f ]] && continue
    [[ -e $f || -L $f ]] && fail "$f is left after dpkg -r"
done
for dir in /usr/lib/flockrun /usr/share/doc/flockrun; do
    [[ ! -e $dir ]] || fail "$dir is left after dpkg -r"
done
dpkg -s flockrun >/dev/null 2>&1 && fail "dpkg still lists flockrun as installed"
echo "pkg/check.sh: the .deb installed, worked and left nothing behind (${#files[@]} paths)"

# The tarball, unpacked and installed by an unprivileged user into a directory of theirs.
mkdir "$work/user"
chown nobody "$work/user"
chmod 755 "$work"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env "$@"; }
as_nobody tar -xzf "$PWD/$tarball" -C "$work/user"
as_nobody sh "$work/user/flockrun-$version-x86_64-unknown-linux-gnu/install.sh" --prefix "$work/user/prefix" |
    tee "$work/install.log"
grep -q "installed $work/user/prefix/bin/flockrun" "$work/install.log" || fail "install.sh did not say where flockrun went"
for f in bin/flockrun lib/flockrun/bin/flock share/man/man1/flockrun.1.gz \
    share/bash-completion/completions/flockrun share/zsh/site-functions/_flockrun \
    share/fish/vendor_completions.d/flockrun.fish share/doc/flockrun/LICENSE; do
    [[ -e $work/user/prefix/$f ]] || fail "install.sh did not install $f"
    [[ $(stat -c %U "$work/user/prefix/$f") == nobody ]] || fail "$f is not the user's"
done
out=$(as_nobody "$work/user/prefix/bin/flockrun" exec "$work/user/a.lock" -- echo ran) || fail "flockrun from the tarball failed"
[[ $out == ran ]] || fail "flockrun from the tarball printed '$out'"
status=0
as_nobody "$work/user/prefix/bin/flockrun" try "$lock" -- true 2>/dev/null || status=$?
[[ $status == 75 ]] || fail "flockrun try on a busy lock from the tarball exited $status, not 75"
status=0
as_nobody "$work/user/prefix/lib/flockrun/bin/flock" -n "$lock" true || status=$?
[[ $status == 1 ]] || fail "the tarball's flock -n on a busy lock exited $status, not 1"
# man finds the pages through PATH (PREFIX/bin → PREFIX/share/man), as README.md says.
page=$(as_nobody env PATH="$work/user/prefix/bin:/usr/bin:/bin" man -w flockrun-exec) ||
    fail "man found no flockrun-exec page with $work/user/prefix/bin in PATH"
[[ $page == "$work/user/prefix/share/man/man1/flockrun-exec.1.gz" ]] || fail "man -w flockrun-exec: $page"
echo "pkg/check.sh: the tarball installed as nobody into $work/user/prefix and ran from there"
