#!/usr/bin/env bash
# Ensure the Arm cross compiler, newlib and QEMU's Arm machines are installed (Debian packages).
# As root: installs what is missing with apt. Otherwise: prints the exact command and continues
# (tests that need the toolchain then skip, saying why).
set -euo pipefail
pkgs=()
command -v arm-none-eabi-gcc >/dev/null 2>&1 || pkgs+=(gcc-arm-none-eabi)
dpkg-query -W -f='${Status}' libnewlib-arm-none-eabi 2>/dev/null | grep -q "install ok installed" \
  || pkgs+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || pkgs+=(qemu-system-arm)
if [ ${#pkgs[@]} -eq 0 ]; then
  exit 0
fi
cmd="apt-get update && apt-get install -y --no-install-recommends ${pkgs[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "micronas setup: installing ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
else
  echo "micronas setup: missing ${pkgs[*]}; run as root:" >&2
  echo "  sudo sh -c '$cmd'" >&2
fi
