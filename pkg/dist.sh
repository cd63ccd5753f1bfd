#!/usr/bin/env bash
# Builds flockrun's release artefacts into target/dist/ from a checkout:
#   flockrun_VERSION-1_amd64.deb                       (cargo-deb, [package.metadata.deb])
#   flockrun-VERSION-x86_64-unknown-linux-gnu.tar.gz   (bin/ lib/ share/ and install.sh)
# Both hold the same files: the static binary, the man pages (gzipped), the bash, zsh and
# fish completions, README, CHANGELOG and the licence, and the flock(1) front end as
# lib/flockrun/bin/flock, a link to the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
dist=target/dist
stage=$dist/stage

command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.7.0

# The binary the two packages carry; .cargo/config.toml makes it static.
cargo build --release --locked --target "$target"
binary=target/$target/release/flockrun
if ldd "$binary" >/dev/null 2>&1; then
    echo "dist.sh: $binary is not statically linked; the packages declare no libc dependency" >&2
    exit 1
fi

rm -rf "$dist"
mkdir -p "$stage/man"
for page in man/*.1; do
    # -n: no name or time stamp in the header, so the same page gives the same bytes.
    gzip -9 -n -c "$page" >"$stage/man/$(basename "$page").gz"
done
ln -s ../../../bin/flockrun "$stage/flock"
# Debian's name for the upstream changelog (the tarball keeps CHANGELOG.md).
gzip -9 -n -c CHANGELOG.md >"$stage/changelog.gz"

# The Debian package: assets as Cargo.toml lists them (the stage above among them).
cargo deb --no-build --locked --target "$target" --output "$dist/"
# Two touches cargo-deb 3.7 does not make: it writes an empty Depends field when there is
# no dependency (lintian: empty-field), and no md5sums, which debsums checks an installed
# package against. dpkg-deb unpacks the package and builds it again with both right.
deb=$(ls "$dist"/flockrun_"$version"-*_amd64.deb)
tree=$stage/deb
dpkg-deb -R "$deb" "$tree"
sed -i '/^Depends: *$/d' "$tree/DEBIAN/control"
(cd "$tree" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$tree/DEBIAN/md5sums"
chmod 644 "$tree/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz -b "$tree" "$deb" >/dev/null

# The tarball: the same files under bin/ lib/ share/, and install.sh.
name=flockrun-$version-$target
root=$stage/$name
mkdir -p "$root/bin" "$root/lib/flockrun/bin" "$root/share/man/man1" \
    "$root/share/bash-completion/completions" "$root/share/zsh/site-functions" \
    "$root/share/fish/vendor_completions.d" "$root/share/doc/flockrun"
install -m 755 "$binary" "$root/bin/flockrun"
strip "$root/bin/flockrun"
cp -P "$stage/flock" "$root/lib/flockrun/bin/flock"
install -m 644 "$stage"/man/*.1.gz "$root/share/man/man1/"
install -m 644 completions/flockrun.bash "$root/share/bash-completion/completions/flockrun"
install -m 644 completions/_flockrun "$root/share/zsh/site-functions/_flockrun"
install -m 644 completions/flockrun.fish "$root/share/fish/vendor_completions.d/flockrun.fish"
install -m 644 README.md CHANGELOG.md LICENSE "$root/share/doc/flockrun/"
install -m 755 pkg/install.sh "$root/install.sh"
# Owner, order and times fixed, so the tarball depends only on the files.
mtime=$(git log -1 --format=%cI 2>/dev/null || date -u +%FT%TZ)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" \
    -C "$stage" -czf "$dist/$name.tar.gz" "$name"

rm -rf "$stage"
echo "dist.sh: built into $dist/:"
ls -1 "$dist"
