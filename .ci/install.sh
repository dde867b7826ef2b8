#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and boot the testbed: QEMU and
# OVMF (Debian packages) and the pinned Rust toolchain of rust-toolchain.toml
# (with rust-src, llvm-tools-preview and the x86_64-unknown-none target).
# Idempotent: it installs nothing that is already there. Needs root (or sudo)
# for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'install: %s\n' "$*" >&2; }

apt_install() {
	local sudo=()
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || { say "need root or sudo to apt-get install $*"; exit 1; }
		sudo=(sudo)
	fi
	export DEBIAN_FRONTEND=noninteractive
	# Another apt may hold the lock on a fresh machine: wait for it (bounded).
	for attempt in 1 2 3 4 5 6; do
		if "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$@"; then
			return 0
		fi
		say "apt-get failed (attempt $attempt); retrying in 10 s"
		sleep 10
	done
	say "could not install: $*"
	exit 1
}

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] && [ -f /usr/share/OVMF/OVMF_VARS_4M.fd ] || need+=(ovmf)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	apt_install "${need[@]}"
fi

if ! command -v rustup >/dev/null; then
	say "rustup is missing: install it from your distribution or rustup.rs, then run this again"
	exit 1
fi
# Reads rust-toolchain.toml; --no-self-update because a mirror may offer an
# older rustup than the one installed.
rustup toolchain install --no-self-update >/dev/null
say "ready: $(qemu-system-x86_64 --version | head -1); $(rustc --version)"
