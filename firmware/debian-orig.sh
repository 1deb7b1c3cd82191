#!/usr/bin/env bash
# Fetch the upstream tarball (.orig.tar.*) of a pinned Debian (trixie) source
# package and unpack it, without touching the system's apt configuration.
#
#   firmware/debian-orig.sh PACKAGE VERSION DEST
#
# Used for picotool: the archive serves its upstream tarball while its .dsc
# can be missing, so tools/debian-source.sh's `apt-get source` cannot fetch
# it.  The tarball's SHA256 comes from the archive's signed Sources index
# (apt verifies the index; apt-helper verifies the tarball against it).  The
# archive URI is read from the system's apt sources at run time, as
# tools/debian-source.sh does.  DEST is only created on success.
set -euo pipefail

die() { echo "debian-orig: $*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: $0 PACKAGE VERSION DEST"
pkg=$1 ver=$2 dest=$(realpath -m "$3")
[ -d "$dest" ] && exit 0
helper=/usr/lib/apt/apt-helper
for tool in apt-get apt-cache tar; do
    command -v "$tool" >/dev/null || die "'$tool' not found: this needs a Debian system"
done
[ -x "$helper" ] || die "$helper not found: this needs a Debian system with apt"

. "$(dirname "$0")/../tools"/debian-archive.sh

root=$(mktemp -d "${TMPDIR:-/tmp}/debsrc.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/lists/partial"
cat > "$root/trixie.sources" <<EOF
Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o "Dir::Etc::sourcelist=$root/trixie.sources" -o Dir::Etc::sourceparts=/nonexistent
          -o "Dir::State::Lists=$root/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)

echo "debian-orig: fetching $pkg $ver (upstream tarball) from $uri trixie" >&2
apt-get -qq "${apt_opts[@]}" update >"$root/update.log" 2>&1 \
    || { cat "$root/update.log" >&2; die "cannot reach the Debian archive at $uri (no network?)"; }
# The stanza of exactly this version: its Directory and the orig tarball's SHA256.
apt-cache "${apt_opts[@]}" showsrc "$pkg" > "$root/showsrc" 2>/dev/null || true
read -r dir sha name < <(awk -v ver="$ver" '
    /^$/ {ok = 0}
    /^Version: / {ok = ($2 == ver)}
    ok && /^Directory: / {dir = $2}
    ok && /^Checksums-Sha256:/ {sums = 1; next}
    ok && sums && /^ / {if ($3 ~ /\.orig\.tar\./) {sha = $1; name = $3}; next}
    {sums = 0}
    END {if (sha != "") print dir, sha, name}' "$root/showsrc") || true
[ -n "${name:-}" ] || die "source package $pkg=$ver (with an upstream tarball) is not in trixie; see: apt-cache showsrc $pkg"
"$helper" download-file "$uri/$dir/$name" "$root/$name" "SHA256:$sha" >"$root/get.log" 2>&1 \
    || { cat "$root/get.log" >&2; die "could not download $name"; }
mkdir -p "$root/out"
tar -xf "$root/$name" -C "$root/out"
set -- "$root"/out/*
[ $# -eq 1 ] && [ -d "$1" ] || die "$name does not unpack to one folder"
mkdir -p "$(dirname "$dest")"
mv "$1" "$dest.tmp.$$"
mv -T "$dest.tmp.$$" "$dest"
echo "debian-orig: $pkg $ver -> $dest" >&2
