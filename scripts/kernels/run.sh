#!/usr/bin/env bash
# run.sh: run one command under a kernel that scripts/kernels/prepare.sh prepared, in QEMU (TCG).
#
#   scripts/kernels/run.sh RELEASE RESULTS_DIR -- CMD [ARGS...]
#   e.g. scripts/kernels/run.sh 6.1.0-57-amd64 build/kernels/results/6.1.0-57-amd64 -- uname -r
#
# The guest sees this machine's whole root read-only over 9p, under a tmpfs overlay that takes its
# writes (see scripts/kernels/init), and runs CMD as root with cwd the checkout (this script's
# ../..; KERNELS_CWD overrides it), HOME=/root and a clean environment: PATH, LANG=C.UTF-8, and
# DENO_DIR when it is set here (pass others with `env NAME=VALUE CMD`). RESULTS_DIR is shared
# writable at /results in the guest: CMD may leave files there. run.sh writes there, replacing
# earlier ones:
#   command.sh    the script the guest runs (cd to the checkout, exec CMD)
#   stdout        CMD's stdout, byte for byte; also copied live to run.sh's stdout
#   stderr        CMD's stderr, byte for byte; also copied live to run.sh's stderr
#   exit-status   CMD's exit status, written by the guest
#   console.log   the guest's serial console: the kernel's messages and /init's
#   qemu.log      what QEMU itself printed (empty when all went well)
# Exit status: CMD's; 124 when TIMEOUT (seconds, default 1800) ran out and QEMU was killed; 125
# when the guest reported none (the kernel did not boot, /init failed: see console.log) or QEMU
# could not start (no kernel prepared, no qemu-system-x86_64); 2 on bad usage.
# Environment: TIMEOUT; QEMU_MEMORY (default 6G); QEMU_SMP (default 2); KERNELS_CONSOLE=1 also
# copies the console to stderr as it comes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
USAGE="usage: scripts/kernels/run.sh RELEASE RESULTS_DIR -- CMD [ARGS...]"

say() { echo "kernels: $*" >&2; }
die() { # $1: the message; $2: the exit status (125 unless given)
  echo "kernels: error: $1" >&2
  exit "${2:-125}"
}

[[ $# -ge 4 && $3 == -- ]] || die "$USAGE" 2
RELEASE=$1
RESULTS_ARG=$2
shift 3

TIMEOUT=${TIMEOUT:-1800}
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a whole number of seconds: \"$TIMEOUT\"" 2
CWD=${KERNELS_CWD:-$ROOT}
[[ $CWD == /* ]] || die "KERNELS_CWD must be an absolute path: \"$CWD\"" 2
KERNEL_DIR=$ROOT/build/kernels/$RELEASE
for f in vmlinuz initramfs.cpio.gz; do
  [[ -f $KERNEL_DIR/$f ]] ||
    die "no $f in ${KERNEL_DIR#"$ROOT"/}: run KERNEL_PACKAGE=linux-image-$RELEASE $HERE/prepare.sh"
done
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
  die "qemu-system-x86_64 not found: run scripts/kernels/prepare.sh (it installs qemu-system-x86)"

mkdir -p "$RESULTS_ARG" || die "cannot create the results directory \"$RESULTS_ARG\""
RESULTS=$(cd "$RESULTS_ARG" && pwd -P)
rm -f "$RESULTS"/{command.sh,stdout,stderr,exit-status,console.log,qemu.log}
: >"$RESULTS/stdout"
: >"$RESULTS/stderr"
: >"$RESULTS/console.log"
{
  echo "# written by scripts/kernels/run.sh; the guest's /init runs /bin/bash /results/command.sh"
  printf 'cd -- %q || exit\n' "$CWD"
  if [[ -n ${DENO_DIR:-} ]]; then # the guest's env is clean: keep a host's own deno cache
    printf 'export DENO_DIR=%q\n' "$(realpath -m -- "$DENO_DIR")"
  fi
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$RESULTS/command.sh"

# QEMU option values escape a comma by doubling it.
qarg() { printf '%s' "${1//,/,,}"; }

QEMU_PID=
TAIL_PIDS=()
cleanup() {
  if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill -TERM "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
  fi
  local p
  for p in "${TAIL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${TAIL_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

say "booting $RELEASE (TCG, timeout ${TIMEOUT}s): $*"
START=$SECONDS
# `timeout` runs QEMU in its own process group and passes on the TERM cleanup sends it.
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
  -machine q35 -accel tcg,thread=multi -cpu max \
  -smp "${QEMU_SMP:-2}" -m "${QEMU_MEMORY:-6G}" \
  -kernel "$(qarg "$KERNEL_DIR/vmlinuz")" -initrd "$(qarg "$KERNEL_DIR/initramfs.cpio.gz")" \
  -append "console=ttyS0 rdinit=/init panic=-1" \
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -fsdev "local,id=results,path=$(qarg "$RESULTS"),security_model=none,multidevs=remap" \
  -device virtio-9p-pci,fsdev=results,mount_tag=results \
  -nic none -nographic -monitor none -parallel none \
  -serial "file:$(qarg "$RESULTS/console.log")" -no-reboot \
  </dev/null >"$RESULTS/qemu.log" 2>&1 &
QEMU_PID=$!

# Live copies of the guest's output: the guest writes the files through 9p as CMD runs.
tail --pid="$QEMU_PID" -s 0.2 -c +1 -f "$RESULTS/stdout" &
TAIL_PIDS+=($!)
tail --pid="$QEMU_PID" -s 0.2 -c +1 -f "$RESULTS/stderr" >&2 &
TAIL_PIDS+=($!)
if [[ ${KERNELS_CONSOLE:-0} == 1 ]]; then
  tail --pid="$QEMU_PID" -s 0.2 -c +1 -f "$RESULTS/console.log" >&2 &
  TAIL_PIDS+=($!)
fi

rc=0
wait "$QEMU_PID" || rc=$?
QEMU_PID=
for p in "${TAIL_PIDS[@]}"; do wait "$p" || true; done
TAIL_PIDS=()
ELAPSED=$((SECONDS - START))

if [[ $rc -eq 124 || $rc -eq 137 ]]; then
  say "timed out after ${TIMEOUT}s: QEMU killed (console: $RESULTS/console.log)"
  exit 124
fi
if [[ $rc -ne 0 ]]; then
  cat "$RESULTS/qemu.log" >&2
  die "qemu-system-x86_64 failed with status $rc (its output: $RESULTS/qemu.log)"
fi
if [[ ! -s $RESULTS/exit-status ]]; then
  tail -n 15 "$RESULTS/console.log" >&2 || true
  if ! grep -q "Linux version" "$RESULTS/console.log"; then
    die "the kernel did not boot: see $RESULTS/console.log"
  elif ! grep -q "kernels-init: starting" "$RESULTS/console.log"; then
    die "the kernel booted but /init did not start: see $RESULTS/console.log"
  else
    die "the guest reported no exit status: see $RESULTS/console.log"
  fi
fi
status=$(<"$RESULTS/exit-status")
[[ $status =~ ^[0-9]+$ ]] || die "unreadable exit status \"$status\" in $RESULTS/exit-status"
say "exit status $status after ${ELAPSED}s"
exit "$status"
