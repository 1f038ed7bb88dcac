#!/usr/bin/env bash
# prepare.sh: get a Debian 12 kernel ready to boot under QEMU with scripts/kernels/run.sh.
#
#   scripts/kernels/prepare.sh                  the newest linux-image-6.1.0-*-amd64 apt offers
#   KERNEL_PACKAGE=linux-image-6.1.0-57-amd64 scripts/kernels/prepare.sh   that package
#
# Installs what is missing with apt (QEMU, a static busybox, cpio, depmod, xz), downloads the kernel
# package with `apt-get download`, and builds in build/kernels/<release>/:
#   vmlinuz              the kernel
#   initramfs.cpio.gz    busybox, scripts/kernels/init as /init, and the modules that mount the
#                        host's root over 9p under an overlay (listed in modules.order)
# A second run reuses all of it: nothing is downloaded or rebuilt unless the package, this script
# or scripts/kernels/init changed. Progress goes to stderr; stdout is one line, the kernel release
# (e.g. 6.1.0-57-amd64), for `release=$(scripts/kernels/prepare.sh)`. Run as root.
set -euo pipefail

APT_PACKAGES=(qemu-system-x86 busybox-static cpio kmod xz-utils zstd)
# What /init needs to mount the host's root (virtio 9p) under an overlay, in load order. Each is
# either a module of the package (its dependencies from modules.dep come first) or built in.
WANTED_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
  9pnet 9pnet_virtio netfs fscache 9p overlay)
PACKAGE_PATTERN='^linux-image-6\.1\.0-[0-9]+-amd64$'

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
KERNELS_DIR=$ROOT/build/kernels
INIT=$HERE/init

WORK= # a scratch directory, removed on exit
DEB=  # set by download_deb
trap '[[ -z $WORK ]] || rm -rf "$WORK"' EXIT

say() { echo "prepare: $*" >&2; }
die() {
  echo "prepare: error: $*" >&2
  exit 1
}

install_missing() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  [[ $(id -u) -eq 0 ]] || die "missing packages: ${missing[*]}: run as root to install them"
  say "installing: ${missing[*]}"
  apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install failed: ${missing[*]}"
}

newest_package() {
  apt-cache search --names-only "$PACKAGE_PATTERN" | awk '{ print $1 }' | sort -V | tail -n 1
}

# The package: KERNEL_PACKAGE, or the newest 6.1 image in apt's lists (updated when they have none).
choose_package() {
  if [[ -n ${KERNEL_PACKAGE:-} ]]; then
    [[ $KERNEL_PACKAGE =~ ^linux-image-[0-9][^/[:space:]]*$ ]] ||
      die "KERNEL_PACKAGE must name a linux-image package: \"$KERNEL_PACKAGE\""
    echo "$KERNEL_PACKAGE"
    return
  fi
  local pkg
  pkg=$(newest_package)
  if [[ -z $pkg ]]; then
    say "no linux-image-6.1.0-*-amd64 in apt's lists: running apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    pkg=$(newest_package)
  fi
  [[ -n $pkg ]] || die "apt offers no package matching \"$PACKAGE_PATTERN\": is this Debian 12?"
  echo "$pkg"
}

# Sets DEB to the .deb of $1 in $2, downloaded once.
download_deb() {
  local pkg=$1 dir=$2
  DEB=
  [[ -d $dir ]] && DEB=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | sort -V | tail -n 1)
  [[ -n $DEB ]] && return
  say "downloading $pkg"
  mkdir -p "$KERNELS_DIR"
  WORK=$(mktemp -d "$KERNELS_DIR/download.XXXXXX")
  if ! (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); then
    say "apt-get download failed: running apt-get update and trying again"
    apt-get update -qq >&2 || die "apt-get update failed"
    (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
      die "download failed: apt-get download $pkg"
  fi
  DEB=$(find "$WORK" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
  [[ -n $DEB ]] || die "download failed: apt-get download $pkg left no .deb"
  mkdir -p "$dir"
  mv "$DEB" "$dir/"
  DEB=$dir/$(basename "$DEB")
  rm -rf "$WORK"
  WORK=
}

# Prints the modules to load, dependencies first, as paths relative to lib/modules/<release>/;
# a wanted module built into the kernel is skipped. $1 is the extracted lib/modules/<release>.
module_order() {
  local moddir=$1 name
  declare -A seen=()
  local -a order=()
  visit() { # $1: a path as modules.dep spells it (kernel/fs/9p/9p.ko)
    local path=$1 line dep
    [[ -n ${seen[$path]:-} ]] && return
    seen[$path]=1
    line=$(grep -m 1 "^${path}:" "$moddir/modules.dep") || die "not in modules.dep: \"$path\""
    for dep in ${line#*:}; do
      visit "$dep"
    done
    order+=("$path")
  }
  for name in "${WANTED_MODULES[@]}"; do
    local path
    # modules.dep names files; a module's name may use - or _ where its file uses the other.
    path=$(grep -m 1 -E "^([^:]*/)?${name//_/[-_]}\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" |
      cut -d : -f 1) || true
    if [[ -n $path ]]; then
      visit "$path"
    elif grep -q -E "/${name//_/[-_]}\.ko$" "$moddir/modules.builtin"; then
      say "$name is built in"
    else
      die "module \"$name\" is neither a module nor built into this kernel"
    fi
  done
  printf '%s\n' "${order[@]}"
}

# The stamp names every input of the initramfs: a change to any of them rebuilds it.
stamp_of() {
  local deb=$1 busybox
  busybox=$(command -v busybox) || die "busybox not found after installing busybox-static"
  sha256sum "$INIT" "${BASH_SOURCE[0]}" "$busybox" | awk '{ print $1 }'
  basename "$deb"
}

build_initramfs() {
  local release=$1 deb=$2 out=$3
  WORK=$(mktemp -d "$out/build.XXXXXX")
  local work=$WORK

  # The package ships no modules.dep (its postinst runs depmod): make one from its modules.
  say "extracting vmlinuz and the modules from $(basename "$deb")"
  dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C "$work" "./boot/vmlinuz-$release" "./lib/modules/$release" ||
    die "$(basename "$deb") holds no boot/vmlinuz-$release or lib/modules/$release"
  depmod -b "$work" "$release" || die "depmod failed on the modules of $(basename "$deb")"
  local moddir=$work/lib/modules/$release
  local order_text
  order_text=$(module_order "$moddir")
  local -a order
  mapfile -t order <<<"$order_text"
  [[ -n ${order[0]} ]] || die "no modules to load: check WANTED_MODULES"
  local m

  local initrd=$work/initrd
  mkdir -p "$initrd"/{bin,sbin,dev,proc,sys,lower,upper,newroot,modules}
  cp "$(command -v busybox)" "$initrd/bin/busybox"
  if ldd "$initrd/bin/busybox" >/dev/null 2>&1; then
    die "$(command -v busybox) is dynamically linked: install busybox-static"
  fi
  install -m 0755 "$INIT" "$initrd/init"
  mknod -m 600 "$initrd/dev/console" c 5 1
  mknod -m 666 "$initrd/dev/null" c 1 3
  : >"$initrd/modules/order"
  for m in "${order[@]}"; do
    local base=${m##*/} name
    name=${base%%.ko*}
    case $base in
    *.ko.xz) xz -dc "$moddir/$m" >"$initrd/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$moddir/$m" >"$initrd/modules/$name.ko" ;;
    *.ko.gz) gzip -dc "$moddir/$m" >"$initrd/modules/$name.ko" ;;
    *.ko) cp "$moddir/$m" "$initrd/modules/$name.ko" ;;
    *) die "unexpected module file: \"$m\"" ;;
    esac
    echo "$name" >>"$initrd/modules/order"
  done
  say "modules: $(tr '\n' ' ' <"$initrd/modules/order")"

  (cd "$initrd" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -9n >"$work/initramfs.cpio.gz"
  cp "$work/boot/vmlinuz-$release" "$out/vmlinuz.new"
  cp "$initrd/modules/order" "$out/modules.order"
  mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
  mv "$out/vmlinuz.new" "$out/vmlinuz"
  rm -rf "$WORK"
  WORK=
}

main() {
  [[ $# -eq 0 ]] || die "usage: [KERNEL_PACKAGE=linux-image-...] scripts/kernels/prepare.sh"
  install_missing
  local pkg release out deb stamp
  pkg=$(choose_package)
  release=${pkg#linux-image-}
  out=$KERNELS_DIR/$release
  download_deb "$pkg" "$out"
  deb=$DEB
  stamp=$(stamp_of "$deb")
  if [[ -f $out/vmlinuz && -f $out/initramfs.cpio.gz && -f $out/stamp &&
    $(<"$out/stamp") == "$stamp" ]]; then
    say "$release is ready in ${out#"$ROOT"/}"
  else
    rm -f "$out/stamp"
    build_initramfs "$release" "$deb" "$out"
    echo "$stamp" >"$out/stamp"
    say "$release prepared in ${out#"$ROOT"/}"
  fi
  echo "$release"
}

main "$@"
