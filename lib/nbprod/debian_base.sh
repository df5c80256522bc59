#!/usr/bin/env bash
# A Python base image made from Debian's packages, for a machine that reaches no image registry (only Debian's archive):
#   debian_base.sh [SUITE] [TAG]    SUITE bookworm (Python 3.11, the default) or trixie (Python 3.13)
# (shipped with nbprod, run by `<project> image debian-base`) prints the tag, localhost/debian-python:<python> by default;
# then `make image BASE=<tag>`. Needs root, debootstrap and
# podman (or docker). debootstrap fetches from its default Debian mirror (DEBIAN_MIRROR to choose another).
set -euo pipefail
suite=${1:-bookworm}
engine=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "no container engine (podman or docker)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >&2
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*
version=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tag=${2:-localhost/debian-python:$version}
tar -C "$root" -c . | "$engine" import --change 'CMD ["python3"]' - "$tag" >&2
echo "$tag"
