#!/usr/bin/env bash
# Install what is missing (QEMU, OVMF, the pinned toolchain: .ci/install.sh),
# then build the kernel and boot it under QEMU through the host tool (boot/,
# binary `testbed`). All arguments go to the host tool; see ./run-qemu.sh --help.
#   ./run-qemu.sh --smp 2 --firmware uefi log=debug
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash .ci/install.sh >&2
exec cargo run --quiet -- "$@"
