#!/usr/bin/env bash
# Fetch a pinned Debian (trixie) source or arch-independent package into a
# cache folder, without touching the system's apt configuration.
#
#   tools/debian-source.sh source PACKAGE VERSION DEST   # apt-get source, unpacked
#   tools/debian-source.sh deb    PACKAGE VERSION DEST   # apt-get download + dpkg-deb -x
#
# The archive URI is read from the system's own apt sources at run time
# (never written into the project), so a mirror or snapshot configured on
# the machine is used as is.  DEST is only created on success, so an
# interrupted fetch never leaves a half-filled cache behind.
set -euo pipefail

die() { echo "debian-source: $*" >&2; exit 1; }

[ $# -eq 4 ] || die "usage: $0 source|deb PACKAGE VERSION DEST"
kind=$1 pkg=$2 ver=$3 dest=$(realpath -m "$4")
[ -d "$dest" ] && exit 0
# Two builds fetching the same package at once: the second waits, then finds it.
mkdir -p "$(dirname "$dest")"
exec 8>"$dest.lock"
flock 8
[ -d "$dest" ] && exit 0

for tool in apt-get dpkg-source dpkg-deb; do
    command -v "$tool" >/dev/null || die "'$tool' not found: this needs a Debian system (apt-get install dpkg-dev)"
done

# The Debian archive URI the system already uses (deb822 .sources or one-line .list).
. "$(dirname "$0")"/debian-archive.sh

root=$(mktemp -d "${TMPDIR:-/tmp}/debsrc.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/lists/partial" "$root/archives/partial"
cat > "$root/trixie.sources" <<EOF
Types: deb deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o "Dir::Etc::sourcelist=$root/trixie.sources" -o Dir::Etc::sourceparts=/nonexistent
          -o "Dir::State::Lists=$root/lists" -o "Dir::Cache::archives=$root/archives"
          -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

echo "debian-source: fetching $pkg $ver ($kind) from $uri trixie" >&2
# apt-get update exits 0 even when every fetch failed: check that the index came.
if ! apt-get -q "${apt_opts[@]}" update >"$root/update.log" 2>&1 \
        || ! ls "$root/lists/"*_Sources* >/dev/null 2>&1; then
    grep -E '^(E|W|Err):' "$root/update.log" | head -n 5 >&2
    die "cannot reach the Debian archive at $uri (no network, or a proxy in the way?); check that 'apt-get update' works on this machine, then run this again"
fi
mkdir -p "$root/out"
cd "$root/out"
if [ "$kind" = source ]; then
    # apt-get source verifies the .dsc and tarball checksums; -x unpacks.
    apt-get -qq "${apt_opts[@]}" source --download-only "$pkg=$ver" >"$root/get.log" 2>&1 \
        || { cat "$root/get.log" >&2; die "could not download source package $pkg=$ver"; }
    dpkg-source -q -x --no-check ./*.dsc unpacked >"$root/unpack.log" 2>&1 \
        || { cat "$root/unpack.log" >&2; die "could not unpack $pkg=$ver"; }
    result=unpacked
else
    apt-get -qq "${apt_opts[@]}" download "$pkg=$ver" >"$root/get.log" 2>&1 \
        || { cat "$root/get.log" >&2; die "could not download package $pkg=$ver"; }
    dpkg-deb -x ./*.deb unpacked
    result=unpacked
fi
# Copy beside the destination first (the temp folder may be on another file
# system), then rename: an interrupted fetch never leaves a partial $dest.
rm -rf "$dest.partial"
mv -T "$root/out/$result" "$dest.partial"
mv -T "$dest.partial" "$dest"
echo "debian-source: $pkg $ver -> $dest" >&2
