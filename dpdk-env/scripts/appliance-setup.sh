#!/usr/bin/env bash
# appliance-setup.sh: prepare a real webswitch appliance for DPDK (run as root).
# Not used by the tests or the netns testbed (those run with --no-huge on virtual devices).
#
# Usage: dpdk-env/scripts/appliance-setup.sh COMMAND [ARGS]
#   status                       NICs and their drivers (dpdk-devbind.py --status-dev net),
#                                hugepages, hugetlbfs mounts, IOMMU and vfio state
#   hugepages N                  reserve N 2 MiB hugepages (all NUMA nodes together) and
#                                mount hugetlbfs at /dev/hugepages if nothing is mounted there
#   bind [--force] PCI_ADDR...   load vfio-pci and bind the NICs to it (they disappear from the
#                                kernel!). Refuses a NIC that carries the default route or has
#                                addresses unless --force is given.
#   unbind PCI_ADDR DRIVER       give a NIC back to a kernel driver (e.g. ixgbe, i40e, ice,
#                                igb, e1000e, virtio-pci); DRIVER "none" just unbinds it
#
# PCI_ADDR is as lspci -D prints it (0000:03:00.0) or short (03:00.0).
# Nothing here persists across a reboot: see docs/testbed.md ("Real appliances").
set -euo pipefail

DEVBIND=${DPDK_DEVBIND:-dpdk-devbind.py}
HP_DIR=/sys/kernel/mm/hugepages/hugepages-2048kB
HP_MOUNT=/dev/hugepages

die() { echo "appliance-setup: $*" >&2; exit 1; }
warn() { echo "appliance-setup: WARNING: $*" >&2; }
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }
need_devbind() {
    command -v "$DEVBIND" >/dev/null 2>&1 ||
        die "$DEVBIND not found (Debian: apt-get install dpdk; or set DPDK_DEVBIND=/path/to/dpdk-devbind.py)"
}

norm_pci() { # 03:00.0 -> 0000:03:00.0; validates the form
    local a=$1
    [[ $a =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] && a=0000:$a
    [[ $a =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] ||
        die "'$1' is not a PCI address (expected DDDD:BB:DD.F or BB:DD.F, see lspci -D)"
    a=${a,,}
    [[ -d /sys/bus/pci/devices/$a ]] || die "no PCI device $a"
    echo "$a"
}

pci_ifaces() { # kernel network interfaces of a PCI device (none once bound to vfio-pci)
    local d
    for d in /sys/bus/pci/devices/"$1"/net/*; do
        [[ -e $d ]] && basename "$d"
    done
    return 0
}

pci_driver() {
    local l=/sys/bus/pci/devices/$1/driver
    if [[ -L $l ]]; then basename "$(readlink -f "$l")"; else echo none; fi
}

# ---- status ------------------------------------------------------------------------------
cmd_status() {
    echo "== NICs"
    if command -v "$DEVBIND" >/dev/null 2>&1; then
        "$DEVBIND" --status-dev net || true
    else
        echo "   ($DEVBIND not installed)"
    fi
    echo
    echo "== hugepages"
    grep -E '^(HugePages_(Total|Free|Rsvd|Surp)|Hugepagesize)' /proc/meminfo | sed 's/^/   /'
    local d node
    for d in /sys/kernel/mm/hugepages/hugepages-*; do
        [[ -d $d ]] || continue
        printf '   %-22s nr=%s free=%s\n' "$(basename "$d")" "$(cat "$d/nr_hugepages")" "$(cat "$d/free_hugepages")"
    done
    for node in /sys/devices/system/node/node*; do
        [[ -r $node/hugepages/hugepages-2048kB/nr_hugepages ]] || continue
        printf '   %-22s nr=%s (2 MiB)\n' "$(basename "$node")" "$(cat "$node/hugepages/hugepages-2048kB/nr_hugepages")"
    done
    echo "   hugetlbfs mounts:"
    awk '$3 == "hugetlbfs" {print "     " $2 " (" $4 ")"; n++} END {if (!n) print "     (none)"}' /proc/mounts
    echo
    echo "== IOMMU / vfio"
    local groups
    groups=$(find /sys/kernel/iommu_groups -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "   IOMMU groups: $groups$( ((groups == 0)) && echo ' (no IOMMU: enable VT-d/AMD-Vi and intel_iommu=on / iommu=pt)')"
    if [[ -d /sys/module/vfio_pci ]]; then echo "   vfio-pci: loaded"; else echo "   vfio-pci: not loaded"; fi
    if [[ -r /sys/module/vfio/parameters/enable_unsafe_noiommu_mode ]]; then
        echo "   vfio noiommu mode: $(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)"
    fi
    local dev
    dev=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u | tr '\n' ' ')
    echo "   default route via: ${dev:-(none)} (never bind that NIC)"
}

# ---- hugepages ---------------------------------------------------------------------------
cmd_hugepages() {
    need_root
    local n=${1:-}
    [[ $n =~ ^[0-9]+$ ]] || die "usage: hugepages N (number of 2 MiB pages, e.g. 1024 for 2 GiB)"
    [[ -w $HP_DIR/nr_hugepages ]] || die "$HP_DIR/nr_hugepages is not writable (no 2 MiB hugepage support?)"
    echo "$n" >"$HP_DIR/nr_hugepages"
    local got
    got=$(cat "$HP_DIR/nr_hugepages")
    if ((got < n)); then
        warn "asked for $n hugepages, the kernel reserved $got (memory fragmented: reserve at boot with hugepages=$n on the kernel command line)"
    fi
    echo "2 MiB hugepages: $got reserved ($((got * 2)) MiB), $(cat "$HP_DIR/free_hugepages") free"
    if awk -v m="$HP_MOUNT" '$2 == m && $3 == "hugetlbfs" {f = 1} END {exit !f}' /proc/mounts; then
        echo "hugetlbfs already mounted at $HP_MOUNT"
    elif awk '$3 == "hugetlbfs" {f = 1} END {exit !f}' /proc/mounts; then
        echo "hugetlbfs is mounted elsewhere: $(awk '$3 == "hugetlbfs" {print $2}' /proc/mounts | tr '\n' ' ')(EAL finds it)"
    else
        mkdir -p "$HP_MOUNT"
        mount -t hugetlbfs -o pagesize=2M nodev "$HP_MOUNT"
        echo "mounted hugetlbfs at $HP_MOUNT"
    fi
}

# ---- bind / unbind -------------------------------------------------------------------------
cmd_bind() {
    need_root
    need_devbind
    local force=0 addrs=() a ifc dflt refuse=0
    for a in "$@"; do
        if [[ $a == --force ]]; then force=1; else addrs+=("$(norm_pci "$a")"); fi
    done
    ((${#addrs[@]})) || die "usage: bind [--force] PCI_ADDR..."

    dflt=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u)
    for a in "${addrs[@]}"; do
        echo "$a: driver $(pci_driver "$a")"
        while read -r ifc; do
            [[ -n $ifc ]] || continue
            if grep -Fxq -- "$ifc" <<<"$dflt"; then
                warn "$a is $ifc, which carries the DEFAULT ROUTE: binding it cuts this machine off the network (and your SSH session)"
                refuse=1
            fi
            if ip -o -4 addr show dev "$ifc" 2>/dev/null | grep -q inet || ip -o -6 addr show dev "$ifc" scope global 2>/dev/null | grep -q inet6; then
                warn "$a is $ifc, which has IP addresses: anything using it stops working"
                refuse=1
            elif ip -o link show dev "$ifc" 2>/dev/null | grep -q '[<,]UP[,>]'; then
                warn "$a is $ifc, which is up (no addresses): the kernel loses it once it is bound"
            fi
        done < <(pci_ifaces "$a")
    done
    if ((refuse && !force)); then
        die "refusing to bind (re-run with --force if you are sure, e.g. from the console)"
    fi

    if [[ ! -d /sys/module/vfio_pci ]]; then
        modprobe vfio-pci || die "modprobe vfio-pci failed"
    fi
    if [[ -z $(find /sys/kernel/iommu_groups -mindepth 1 -maxdepth 1 2>/dev/null) ]]; then
        warn "no IOMMU groups: vfio-pci will refuse the device. Enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on iommu=pt (or, unsafely, modprobe vfio enable_unsafe_noiommu_mode=1)"
    fi
    local fflag=()
    ((force)) && fflag=(--force)
    "$DEVBIND" "${fflag[@]}" --bind=vfio-pci "${addrs[@]}"
    for a in "${addrs[@]}"; do
        echo "$a: now $(pci_driver "$a")"
    done
}

cmd_unbind() {
    need_root
    need_devbind
    (($# == 2)) || die "usage: unbind PCI_ADDR DRIVER (DRIVER: the kernel driver, e.g. ixgbe; or none)"
    local a drv=$2
    a=$(norm_pci "$1")
    if [[ $drv == none ]]; then
        "$DEVBIND" -u "$a"
    else
        [[ $drv =~ ^[A-Za-z0-9_-]+$ ]] || die "'$drv' is not a driver name"
        modprobe "$drv" 2>/dev/null || true
        "$DEVBIND" --bind="$drv" "$a"
    fi
    echo "$a: now $(pci_driver "$a")$(pci_ifaces "$a" | sed 's/^/, interface /' | tr -d '\n')"
}

cmd=${1:-}
shift || true
case $cmd in
    status) cmd_status ;;
    hugepages) cmd_hugepages "$@" ;;
    bind) cmd_bind "$@" ;;
    unbind) cmd_unbind "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
esac
