#!/usr/bin/env bash
# Builds the HAProxy release the gateway image runs (scripts/haproxy-release) on Debian 12, the way
# the official image builds it (Lua 5.4, OpenSSL, PCRE2 JIT, Prometheus exporter), and prints the
# path of the binary on its last line.
#   scripts/build-haproxy.sh [PREFIX]     default ~/.cache/portcullis/haproxy-<release>
# Source: Debian's source package of exactly that release when the archive serves one, else the
# upstream tarball haproxy-<release>.tar.gz from $HAPROXY_SOURCE_DIR (default ../shared/tools
# beside the repository). About 90 s on 2 cores; a second run with the binary in place does nothing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
release=$(tr -d '[:space:]' < "$repo/scripts/haproxy-release")
prefix=${1:-${HOME}/.cache/portcullis/haproxy-$release}
binary="$prefix/sbin/haproxy"
if "$binary" -v 2>/dev/null | head -1 | grep -q "version $release[-+ ]"; then echo "$binary"; exit 0; fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  make gcc libc6-dev libssl-dev liblua5.4-dev libpcre2-dev zlib1g-dev dpkg-dev >/dev/null

# Debian lists versions before their files land: take the exact release only if it downloads.
mkdir -p "$work/lists/partial"
printf '%s\n' "deb-src http://deb.debian.org/debian experimental main" \
  "deb-src http://deb.debian.org/debian forky main" "deb-src http://deb.debian.org/debian trixie main" \
  "deb-src http://deb.debian.org/debian trixie-backports main" > "$work/sources.list"
O=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$work/lists")
got=
if apt-get "${O[@]}" update -qq >/dev/null 2>&1; then
  for version in $(apt-cache "${O[@]}" showsrc haproxy 2>/dev/null | awk '/^Version:/{print $2}' | grep "^$release-" | sort -Vr | uniq); do
    if (cd "$work" && apt-get "${O[@]}" source -qq --download-only "haproxy=$version" >/dev/null 2>&1); then got=$version; break; fi
  done
fi
if [ -n "$got" ]; then
  (cd "$work" && dpkg-source -x --no-check ./haproxy_"$got".dsc src >/dev/null)
else
  tarball="${HAPROXY_SOURCE_DIR:-$repo/../shared/tools}/haproxy-$release.tar.gz"
  [ -f "$tarball" ] || { echo "no source of haproxy $release: not in Debian's archive and no $tarball" >&2; exit 1; }
  mkdir "$work/src" && tar xzf "$tarball" -C "$work/src" --strip-components=1
fi
opts=(TARGET=linux-glibc USE_GETADDRINFO=1 USE_LUA=1 LUA_INC=/usr/include/lua5.4 USE_OPENSSL=1 USE_PCRE2=1 USE_PCRE2_JIT=1 USE_PROMEX=1)
make -C "$work/src" -j"$(nproc)" all "${opts[@]}" >/dev/null
make -C "$work/src" install-bin PREFIX="$prefix" "${opts[@]}" >/dev/null
"$binary" -v | head -1 | grep -q "version $release[-+ ]" || { echo "built $("$binary" -v | head -1), not $release" >&2; exit 1; }
echo "$binary"
