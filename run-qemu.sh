#!/usr/bin/env bash
# Build the kernel and boot it under QEMU: a thin wrapper around the host tool
# (boot/, binary `testbed`). All arguments go to it; see ./run-qemu.sh --help.
#   ./run-qemu.sh --smp 2 --firmware uefi log=debug
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec cargo run --quiet -- "$@"
