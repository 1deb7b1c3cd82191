# Sourced by tools/debian-source.sh and firmware/debian-orig.sh: the Debian
# archive URI this machine's apt already uses (deb822 .sources or one-line
# .list files), read at run time so no host name is written into the project.
# Sets $uri (no trailing slash) or calls die().
debian_archive_uri() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; break}}' "$f"
    done
}
uri=$(debian_archive_uri | grep -v -- '-security' | grep -m1 '/debian/\?$' || true)
[ -n "$uri" ] || die "no Debian archive found in /etc/apt/sources.list*; add the Debian archive your machine can reach to apt's sources"
uri=${uri%/}
