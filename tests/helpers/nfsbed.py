#!/usr/bin/env python3
"""Real Linux NFS on this machine, for flockrun's cross-host tests.

Three small virtual machines run Debian's own kernel under qemu: an NFS server S and two NFS
clients A and B. Their root filesystem is this host's own, shared read-only over virtiofs,
so they run this host's binaries (flockrun from target/, python3 and the test venvs,
util-linux flock) unchanged. Each has private tmpfs on /tmp, /run and /var/tmp, and a small
disk of its own for /var/lib/nfs, so statd and nfsd state survive a crash as on a real
machine. S exports one directory; A and B mount it several times under DIR/mnt, each mount
with other options:

    DIR/mnt/v4              vers=4.2
    DIR/mnt/v3              vers=3 (locks through lockd/NLM)
    DIR/mnt/v3-nolock       vers=3,nolock
    DIR/mnt/v3-local-all    vers=3,local_lock=all
    DIR/mnt/v3-local-flock  vers=3,local_lock=flock
    DIR/mnt/v3-local-posix  vers=3,local_lock=posix

On S the same paths show the exported directory itself (the server's disk).

The machines talk NFS over one bridge (10.50.0.1 S, .2 A, .3 B) inside a network namespace
this program creates; each also has a point-to-point control link on which an agent runs
the commands `run` sends it. Cutting a machine off (`partition`) takes its NFS link down
and leaves the control link alone, so commands still reach a cut-off client.

    nfsbed.py setup                      install packages, fetch and unpack the kernel
    nfsbed.py up DIR [--lease S] [--grace S] [--mem MB] [--idle S --idle-lock FILE]
    nfsbed.py run DIR HOST [-n] [-C CWD] -- COMMAND...
    nfsbed.py crash|boot|partition|heal|freeze|thaw DIR HOST
    nfsbed.py restart-nfsd DIR           restart the NFS service on S (its state is lost,
                                         clients reclaim their locks in the grace period)
    nfsbed.py wait-grace DIR             until the server's grace period is over
    nfsbed.py reset DIR                  kill what earlier `run`s left on every machine
    nfsbed.py settle DIR                 undo what a test did: heal, thaw, boot, reset, wait
                                         out the grace period, empty the export
    nfsbed.py info DIR                   JSON: each machine's state
    nfsbed.py down DIR                   stop everything; also after a failed up

HOST is S, A or B. `run` exits with COMMAND's status (128+N when signal N killed it), or
255 when the machine is not running or went down meanwhile; it passes its environment
and, without -n, its stdin on; killing `run` kills COMMAND's process group. With --idle,
`up` leaves a watchdog that takes the bed down once nobody has held FILE's lock (flock)
for that many seconds and FILE has not been touched for as long.

Needs root, /dev/net/tun and ip netns; `setup` installs qemu-system-x86, nfs-kernel-server
and the rest from Debian's packages without starting any service on this host. Software
emulation (TCG) unless /dev/kvm is a real KVM that can run a stock kernel.
"""

import ctypes
import errno
import fcntl
import hashlib
import json
import lzma
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

CACHE = os.environ.get("FLOCKRUN_NFSBED_CACHE", "/var/cache/flockrun-nfsbed")
APT_LOCK = "/tmp/flockrun-apt.lock"
HOSTS = ("S", "A", "B")
HOSTNAME = {"S": "nfs-server", "A": "client-a", "B": "client-b"}
DATA_IP = {"S": "10.50.0.1", "A": "10.50.0.2", "B": "10.50.0.3"}
CTL_NET = {"S": "10.51.1", "A": "10.51.2", "B": "10.51.3"}
AGENT_PORT = 7000
MOUNTS = {
    "v4": "vers=4.2",
    "v3": "vers=3",
    "v3-nolock": "vers=3,nolock",
    "v3-local-all": "vers=3,local_lock=all",
    "v3-local-flock": "vers=3,local_lock=flock",
    "v3-local-posix": "vers=3,local_lock=posix",
}
GUEST_PYTHON = "/usr/bin/python3"
SELF = os.path.realpath(__file__)

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def say(message):
    print(f"nfsbed: {message}", file=sys.stderr, flush=True)


def die(message, status=1):
    say(message)
    sys.exit(status)


def sh(*argv, check=True, **kw):
    return subprocess.run(argv, check=check, **kw)


# ------------------------------------------------------------------------- frames
# Both ends of the control link speak in frames: one type byte, a 4-byte length, the bytes.
# To the agent: R request (JSON), I stdin bytes, E stdin closed, K signal (JSON).
# From it: O stdout bytes, F stderr bytes, X the end (JSON: code, signal or error).
HEADER = struct.Struct("!cI")


def frame(kind, data=b""):
    return HEADER.pack(kind, len(data)) + data


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    head = read_exact(sock, HEADER.size)
    if head is None:
        return None, None
    kind, n = HEADER.unpack(head)
    data = read_exact(sock, n) if n else b""
    if data is None:
        return None, None
    return kind, data


class Frames:
    """Frames from a byte stream read in arbitrary pieces."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= HEADER.size:
            kind, n = HEADER.unpack_from(self.buf)
            if len(self.buf) < HEADER.size + n:
                break
            payload = bytes(self.buf[HEADER.size:HEADER.size + n])
            del self.buf[:HEADER.size + n]
            yield kind, payload


# ------------------------------------------------------------------------- setup
PACKAGES = {
    # tool that must exist -> Debian package that brings it
    "/usr/bin/qemu-system-x86_64": "qemu-system-x86",
    "/usr/lib/qemu/virtiofsd": "qemu-system-x86",
    "/usr/sbin/rpc.nfsd": "nfs-kernel-server",
    "/usr/sbin/rpc.statd": "nfs-common",
    "/usr/sbin/mount.nfs": "nfs-common",
    "/usr/sbin/rpcbind": "rpcbind",
    "/usr/sbin/modprobe": "kmod",
    "/usr/sbin/mkfs.ext4": "e2fsprogs",
    "/usr/sbin/ip": "iproute2",
    "/usr/bin/python3": "python3",
}


def missing_packages():
    return sorted({pkg for path, pkg in PACKAGES.items() if not os.path.exists(path)})


def apt(*args, log):
    """apt-get ARGS under the harness's apt lock, retrying once after updating the lists.
    Services are kept from starting on this host (nfs-kernel-server's would)."""
    guard = "/usr/sbin/policy-rc.d"
    made_guard = False
    with open(APT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(guard):
            with open(guard, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(guard, 0o755)
            made_guard = True
        try:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            for attempt in (1, 2):
                r = subprocess.run(["apt-get", *args], stdout=log, stderr=log, env=env)
                if r.returncode == 0:
                    return
                if attempt == 1:
                    subprocess.run(["apt-get", "update", "-q"], stdout=log, stderr=log, env=env)
            die(f"apt-get {' '.join(args)} failed; see {log.name}")
        finally:
            if made_guard:
                os.unlink(guard)


def extract_vmlinux(bzimage, out):
    """The kernel ELF inside a bzImage (Debian's are xz-compressed). qemu boots an ELF with a
    PVH note directly, skipping the decompressor, which is slow under software emulation."""
    data = open(bzimage, "rb").read()
    at = data.find(b"\xfd7zXZ\x00")
    if at < 0:
        die(f"{bzimage}: no xz payload")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
    if elf[:4] != b"\x7fELF":
        die(f"{bzimage}: the payload is not an ELF file")
    with open(out, "wb") as f:
        f.write(elf)


def kernel_package(log):
    for attempt in (1, 2):
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            word = line.split(":", 1)[-1].strip()
            if line.strip().startswith("Depends:") and word.startswith("linux-image-"):
                return word
        if attempt == 1:
            subprocess.run(["apt-get", "update", "-q"], stdout=log, stderr=log)
    die("cannot tell which kernel linux-image-amd64 stands for (apt-cache depends)")


def fetch_deb(package, into, log):
    with open(APT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for attempt in (1, 2):
            r = subprocess.run(["apt-get", "download", "-q", package], cwd=into,
                               stdout=log, stderr=log)
            if r.returncode == 0:
                break
            if attempt == 1:
                subprocess.run(["apt-get", "update", "-q"], stdout=log, stderr=log)
        else:
            die(f"apt-get download {package} failed; see {log.name}")
    debs = [f for f in os.listdir(into) if f.endswith(".deb")]
    return os.path.join(into, debs[0])


# Driver trees no machine of the bed loads: left out to save disk and unpacking time.
PRUNE = ("drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/infiniband",
         "drivers/staging", "drivers/usb", "drivers/input", "drivers/hid", "drivers/iio",
         "drivers/bluetooth", "sound", "net/wireless", "net/mac80211", "net/bluetooth")


def prepare_kernel(log):
    current = os.path.join(CACHE, "kernel", "current")
    if os.path.exists(os.path.join(current, "vmlinux")):
        return os.path.realpath(current)
    package = kernel_package(log)
    kver = package[len("linux-image-"):]
    work = tempfile.mkdtemp(dir=CACHE, prefix=".kernel-")
    try:
        say(f"fetching {package}")
        deb = fetch_deb(package, work, log)
        root = os.path.join(work, "root")
        sh("dpkg-deb", "-x", deb, root)
        tree = os.path.join(root, "lib", "modules", kver, "kernel")
        for sub in PRUNE:
            shutil.rmtree(os.path.join(tree, sub), ignore_errors=True)
        sh("depmod", "-b", root, kver)
        extract_vmlinux(os.path.join(root, "boot", f"vmlinuz-{kver}"), os.path.join(root, "vmlinux"))
        final = os.path.join(CACHE, "kernel", kver)
        shutil.rmtree(final, ignore_errors=True)
        os.makedirs(os.path.join(final, "lib"))
        os.rename(os.path.join(root, "lib", "modules"), os.path.join(final, "lib", "modules"))
        os.rename(os.path.join(root, "vmlinux"), os.path.join(final, "vmlinux"))
        with open(os.path.join(final, "kver"), "w") as f:
            f.write(kver)
        tmp_link = current + ".new"
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        os.symlink(kver, tmp_link)
        os.rename(tmp_link, current)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return os.path.realpath(current)


def prepare_busybox(log):
    target = os.path.join(CACHE, "busybox")
    if os.path.exists(target):
        return target
    work = tempfile.mkdtemp(dir=CACHE, prefix=".busybox-")
    try:
        deb = fetch_deb("busybox-static", work, log)
        sh("dpkg-deb", "-x", deb, os.path.join(work, "x"))
        shutil.move(os.path.join(work, "x", "bin", "busybox"), target + ".new")
        os.rename(target + ".new", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def cpio_newc(entries):
    """A newc cpio archive of (name, mode, data) entries; data of a symlink is its target."""
    out = bytearray()

    def pad():
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out += b"070701" + b"".join(b"%08X" % v for v in fields) + raw
        pad()
        out += data
        pad()
    return bytes(out)


# The first stage, from the initramfs: load what mounting the root over virtiofs needs,
# mount it, and hand over to the second stage (GUEST_INIT) on the real root.
INITRAMFS_INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko || echo "initramfs: insmod $m failed"; done
if ! mount -t virtiofs -o ro root /newroot; then
  echo "initramfs: cannot mount the host's root over virtiofs"; poweroff -f
fi
next=
for w in $(cat /proc/cmdline); do case $w in nfsbed.init=*) next=${w#nfsbed.init=} ;; esac; done
mount --move /dev /newroot/dev
umount /proc
exec switch_root /newroot /bin/bash "$next"
"""


def build_initramfs(kdir, busybox):
    kver = open(os.path.join(kdir, "kver")).read().strip()
    digest = hashlib.sha256(open(SELF, "rb").read()).hexdigest()[:12]
    path = os.path.join(kdir, f"initramfs-{digest}.cpio")
    if os.path.exists(path):
        return path
    # One module per call: --show-depends takes what follows the first name as its options.
    shown = "".join(
        subprocess.run(["modprobe", "-d", kdir, "-S", kver, "--show-depends", module],
                       capture_output=True, text=True, check=True).stdout
        for module in ("virtio_pci", "virtiofs"))
    order, entries, seen = [], [], set()
    for line in shown.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "insmod":
            name = os.path.basename(words[1])[:-3]
            if name not in seen:
                seen.add(name)
                order.append(name)
                entries.append((f"modules/{name}.ko", 0o100644, open(words[1], "rb").read()))
    for d in ("bin", "dev", "proc", "newroot", "modules"):
        entries.insert(0, (d, 0o040755, b""))
    entries.append(("modules/order", 0o100644, "\n".join(order).encode() + b"\n"))
    entries.append(("bin/busybox", 0o100755, open(busybox, "rb").read()))
    for applet in ("sh", "mount", "umount", "insmod", "switch_root", "cat", "echo", "poweroff"):
        entries.append((f"bin/{applet}", 0o120777, b"busybox"))
    entries.append(("init", 0o100755, INITRAMFS_INIT.encode()))
    with open(path + ".new", "wb") as f:
        f.write(cpio_newc(entries))
    os.rename(path + ".new", path)
    return path


def cmd_setup(_args):
    if os.geteuid() != 0:
        die("setup needs root")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(os.path.join(CACHE, "apt.log"), "a") as log:
            missing = missing_packages()
            if missing:
                say(f"installing {' '.join(missing)}")
                apt("install", "-y", "-q", "--no-install-recommends", *missing, log=log)
                still = missing_packages()
                if still:
                    die(f"still missing after apt-get install: {' '.join(still)}")
            kdir = prepare_kernel(log)
            busybox = prepare_busybox(log)
            initramfs = build_initramfs(kdir, busybox)
    return kdir, initramfs


# ------------------------------------------------------------------------- the bed's files
class Bed:
    def __init__(self, directory):
        self.dir = os.path.realpath(directory)
        self.id = hashlib.sha256(self.dir.encode()).hexdigest()[:10]
        self.netns = f"flockrun-nfsbed-{self.id}"
        self.rundir = f"/run/flockrun-nfsbed/{self.id}"
        self.state_dir = os.path.join(self.dir, ".bed")
        self.config_path = os.path.join(self.state_dir, "config.json")
        # Kept after `down`, for a look at what went wrong; emptied by `up`.
        self.logs = os.path.join(self.dir, "logs")

    @property
    def config(self):
        try:
            return json.load(open(self.config_path))
        except FileNotFoundError:
            die(f"no bed is up at {self.dir} (run: nfsbed.py up {self.dir})", 255)

    def path(self, *parts):
        return os.path.join(self.state_dir, *parts)

    def pid(self, host, what):
        """The pid of HOST's qemu or virtiofsd while it runs, else None."""
        try:
            pid = int(open(os.path.join(self.rundir, f"{host}.{what}.pid")).read())
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except (OSError, ValueError):
            return None
        return pid if self.id.encode() in cmdline else None

    def frozen(self, pid):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("State:"):
                    return line.split()[1] in ("T", "t")
        except OSError:
            pass
        return False

    def link_up(self, host):
        out = subprocess.run(["ip", "-n", self.netns, "-o", "link", "show", f"d{host}"],
                             capture_output=True, text=True).stdout
        flags = out.split("<", 1)[-1].split(">", 1)[0].split(",")
        return "UP" in flags


def enter_netns(bed):
    """Moves this (single-threaded) process into the bed's network namespace."""
    fd = os.open(f"/run/netns/{bed.netns}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        die(f"cannot enter network namespace {bed.netns}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)


def pick_accel():
    usable = os.access("/dev/kvm", os.W_OK)
    real = os.path.isdir("/sys/module/kvm_intel") or os.path.isdir("/sys/module/kvm_amd")
    if usable and real:
        return "kvm"
    if usable:
        say("/dev/kvm here is not kvm_intel or kvm_amd (a nested flavour such as PVM runs a "
            "stock kernel far too slowly): using software emulation (TCG)")
    return "tcg"


# ------------------------------------------------------------------------- the guest's init
# The second stage, run by bash as pid 1 on the host's root (read-only). It gives the machine
# its private directories, name, network and disk, starts the NFS daemons of its role, mounts
# the export (clients) and runs the agent until the machine goes down.
GUEST_INIT = r"""
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
exec </dev/console >/dev/console 2>&1
role= dir=
for w in $(cat /proc/cmdline); do
  case $w in nfsbed.role=*) role=${w#*=} ;; nfsbed.dir=*) dir=${w#*=} ;; esac
done
. "$dir/.bed/guest.env"
status=/run/nfsbed-status
fail() { echo "nfsbed[$role]: $*"; echo "$*" >>"$status"; }
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755,size=64m run /run
: >"$status"
mkdir -p /run/lock /run/rpcbind /run/rpc_pipefs /dev/pts /dev/shm
mount -t devpts -o mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=1777 vartmp /var/tmp
echo "$MODPROBE" >/proc/sys/kernel/modprobe
if [ "$role" = S ]; then mods="virtio_net virtio_blk ext4 nfsd"; else mods="virtio_net virtio_blk ext4 nfsv3 nfsv4"; fi
modprobe -d "$KDIR" -a $mods || fail "modprobe $mods"
eval "name=\$NAME_$role data=\$DATA_$role ctl=\$CTL_$role"
hostname "$name"
mount --bind "$dir/.bed/hosts" /etc/hosts || fail "/etc/hosts"
ip link set lo up
for nic in /sys/class/net/*; do
  case $(cat "$nic/address") in
    "$MAC_DATA") ip addr add "$data/24" dev "${nic##*/}" && ip link set "${nic##*/}" up || fail "data link" ;;
    "$MAC_CTL") ip addr add "$ctl.2/30" dev "${nic##*/}" && ip link set "${nic##*/}" up || fail "control link" ;;
  esac
done
ip -o addr show | grep -q " $ctl.2/" || fail "no control link (no NIC with address $MAC_CTL)"
n=0; until [ -b /dev/vda ] || [ $n -gt 100 ]; do sleep 0.1; n=$((n + 1)); done
if [ "$role" = S ]; then
  mount -t ext4 /dev/vda /srv || fail "server disk"
  mkdir -p /srv/export /srv/nfs/sm /srv/nfs/sm.bak /srv/nfs/v4recovery
  chmod 1777 /srv/export
  mount --bind /srv/nfs /var/lib/nfs || fail "/var/lib/nfs"
  touch /var/lib/nfs/etab /var/lib/nfs/rmtab
else
  mount -t ext4 /dev/vda /var/lib/nfs || fail "state disk"
  mkdir -p /var/lib/nfs/sm /var/lib/nfs/sm.bak
fi
mount -t rpc_pipefs sunrpc /run/rpc_pipefs || fail "rpc_pipefs"
rpcbind || fail rpcbind
rpc.statd || fail rpc.statd
if [ "$role" = S ]; then
  mount -t nfsd nfsd /proc/fs/nfsd || fail "nfsd filesystem"
  echo "$LEASE" >/proc/fs/nfsd/nfsv4leasetime || fail "lease time"
  echo "$GRACE" >/proc/fs/nfsd/nfsv4gracetime || fail "grace time"
  echo "$GRACE" >/proc/sys/fs/nfs/nlm_grace_period || fail "NLM grace"
  exportfs -o rw,sync,no_subtree_check,no_root_squash,insecure "*:/srv/export" || fail exportfs
  rpc.mountd || fail rpc.mountd
  rpc.nfsd 8 || fail rpc.nfsd
  date +%s.%N >/run/nfsd-started
  for m in $MOUNT_NAMES; do mount --bind /srv/export "$dir/mnt/$m" || fail "bind $m"; done
else
  n=0
  until (exec 3<>"/dev/tcp/$DATA_S/2049") 2>/dev/null; do
    n=$((n + 1)); [ $n -gt 1200 ] && { fail "the server's port 2049 never answered"; break; }
    sleep 0.1
  done
  for m in $MOUNT_NAMES; do
    eval "opts=\$MOUNT_OPTS_${m//-/_}"
    mount -t nfs -o "$opts" "$DATA_S:/srv/export" "$dir/mnt/$m" || fail "mount -o $opts ($m)" &
  done
  wait
fi
[ -s "$status" ] || echo ok >"$status"
( while :; do "$PYTHON" -I -S "$NFSBED" agent "$ctl.2"; echo "nfsbed[$role]: agent exited ($?)"; sleep 1; done ) &
trap '' TERM INT HUP
while :; do wait -n 2>/dev/null || sleep 1; done
"""


def mac(host, nic):
    return "52:54:00:%02x:%02x:%02x" % (0xF1, HOSTS.index(host) + 1, nic)


def write_guest_files(bed, kdir, lease, grace):
    os.makedirs(bed.state_dir, exist_ok=True)
    with open(bed.path("hosts"), "w") as f:
        f.write("127.0.0.1\tlocalhost\n")
        for h in HOSTS:
            f.write(f"{DATA_IP[h]}\t{HOSTNAME[h]}\n")
    with open(bed.path("modprobe"), "w") as f:
        f.write(f'#!/bin/sh\nexec /usr/sbin/modprobe -d {kdir} "$@"\n')
    os.chmod(bed.path("modprobe"), 0o755)
    with open(bed.path("init.sh"), "w") as f:
        f.write(GUEST_INIT)
    env = {
        "KDIR": kdir, "MODPROBE": bed.path("modprobe"), "LEASE": lease, "GRACE": grace,
        "PYTHON": GUEST_PYTHON, "NFSBED": SELF, "MOUNT_NAMES": " ".join(MOUNTS),
        "MAC_DATA": "", "MAC_CTL": "",
    }
    for h in HOSTS:
        env[f"NAME_{h}"] = HOSTNAME[h]
        env[f"DATA_{h}"] = DATA_IP[h]
        env[f"CTL_{h}"] = CTL_NET[h]
    for m, opts in MOUNTS.items():
        env["MOUNT_OPTS_" + m.replace("-", "_")] = opts
    with open(bed.path("guest.env"), "w") as f:
        for k, v in env.items():
            if k.startswith("MAC_"):
                continue
            f.write(f"{k}='{v}'\n")
        # Each machine finds its own MAC addresses from its role.
        for h in HOSTS:
            f.write(f"MAC_DATA_{h}='{mac(h, 1)}'\nMAC_CTL_{h}='{mac(h, 2)}'\n")
        f.write('eval "MAC_DATA=\\$MAC_DATA_$role MAC_CTL=\\$MAC_CTL_$role"\n')


def start_machine(bed, host):
    cfg = bed.config
    os.makedirs(bed.rundir, exist_ok=True)
    logs = bed.logs
    os.makedirs(logs, exist_ok=True)
    sock = os.path.join(bed.rundir, f"{host}.vfs")
    if os.path.exists(sock):
        os.unlink(sock)
    vfsd_log = open(os.path.join(logs, f"{host}.virtiofsd.log"), "ab")
    vfsd = subprocess.Popen(
        ["/usr/lib/qemu/virtiofsd", f"--socket-path={sock}", "-o", "source=/",
         "-o", "cache=always", "-o", "timeout=1", "-o", "sandbox=chroot",
         "-o", "log_level=err"],
        stdin=subprocess.DEVNULL, stdout=vfsd_log, stderr=vfsd_log, start_new_session=True)
    with open(os.path.join(bed.rundir, f"{host}.virtiofsd.pid"), "w") as f:
        f.write(str(vfsd.pid))
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        if vfsd.poll() is not None or time.monotonic() > deadline:
            die(f"virtiofsd for {host} did not start; see {logs}/{host}.virtiofsd.log")
        time.sleep(0.02)
    accel = ["-accel", "kvm", "-cpu", "host"] if cfg["accel"] == "kvm" else \
        ["-accel", "tcg,thread=multi", "-cpu", "max"]
    mem = cfg["mem"]
    disk = bed.path("disks", f"{host}.img")
    argv = [
        "qemu-system-x86_64", "-name", f"flockrun-nfsbed-{bed.id}-{host}", *accel,
        "-smp", "1", "-m", str(mem),
        "-object", f"memory-backend-memfd,id=mem,size={mem}M,share=on", "-numa", "node,memdev=mem",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{logs}/{host}.console",
        "-chardev", f"socket,id=vfs,path={sock}", "-device", "vhost-user-fs-pci,chardev=vfs,tag=root",
        "-drive", f"file={disk},format=raw,if=virtio",
        "-netdev", f"tap,id=data,ifname=d{host},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=data,mac={mac(host, 1)}",
        "-netdev", f"tap,id=ctl,ifname=c{host},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=ctl,mac={mac(host, 2)}",
        "-kernel", os.path.join(cfg["kdir"], "vmlinux"), "-initrd", cfg["initramfs"],
        "-append", f"console=ttyS0 quiet loglevel=5 panic=-1 mitigations=off "
                   f"nfsbed.init={bed.path('init.sh')} nfsbed.role={host} nfsbed.dir={bed.dir}",
    ]
    qemu_log = open(os.path.join(logs, f"{host}.qemu.log"), "ab")
    fd = os.open(f"/run/netns/{bed.netns}", os.O_RDONLY)

    def in_netns():
        libc.setns(fd, CLONE_NEWNET)

    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=qemu_log,
                            start_new_session=True, preexec_fn=in_netns, pass_fds=(fd,))
    os.close(fd)
    with open(os.path.join(bed.rundir, f"{host}.qemu.pid"), "w") as f:
        f.write(str(qemu.pid))


def agent_call(bed, host, request, timeout=5.0):
    """One request to HOST's agent that is answered with one X frame; None if it cannot be
    reached. The caller is in the bed's network namespace."""
    try:
        with socket.create_connection((f"{CTL_NET[host]}.2", AGENT_PORT), timeout=timeout) as s:
            s.sendall(frame(b"R", json.dumps(request).encode()))
            while True:
                kind, data = read_frame(s)
                if kind is None:
                    return None
                if kind == b"X":
                    return json.loads(data)
    except OSError:
        return None


def wait_ready(bed, hosts, timeout=300):
    """Waits until every machine's agent answers, sets its wall clock from this host's (a
    guest starts with the RTC's whole seconds), and says how long each took."""
    start = time.monotonic()
    left = list(hosts)
    while left:
        for host in list(left):
            if bed.pid(host, "qemu") is None:
                tail = console_tail(bed, host)
                die(f"machine {host} stopped while booting; its console ends:\n{tail}")
            hello = agent_call(bed, host, {"op": "hello"}, timeout=1.0)
            if hello is None:
                # The init reports what failed on the console too, in case the agent cannot
                # be reached at all.
                if f"nfsbed[{host}]: " in console_tail(bed, host, 200):
                    die(f"machine {host} failed to boot; its console ends:\n{console_tail(bed, host)}")
                continue
            if hello.get("status", "").strip() != "ok":
                die(f"machine {host} booted with errors: {hello.get('status')}\n{console_tail(bed, host)}")
            agent_call(bed, host, {"op": "settime", "time": time.time()})
            left.remove(host)
            say(f"{host} ({HOSTNAME[host]}) up after {time.monotonic() - start:.1f} s")
        if left and time.monotonic() - start > timeout:
            die(f"machines {' '.join(left)} not up after {timeout} s; consoles:\n" +
                "\n".join(console_tail(bed, h) for h in left))
        if left:
            time.sleep(0.2)


def console_tail(bed, host, lines=15):
    try:
        text = open(os.path.join(bed.logs, f"{host}.console"), errors="replace").read()
    except OSError:
        return "(no console log)"
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_grace(bed):
    """Until the server's grace periods are over: new locks block until then. lockd rounds
    its grace up to a multiple of 10 s."""
    cfg = bed.config
    grace = max(cfg["grace"], (cfg["grace"] + 9) // 10 * 10)
    started = agent_call(bed, "S", {"op": "nfsd-started"})
    if not started or "time" not in started:
        return
    left = started["time"] + grace + 1 - time.time()
    if left > 0:
        say(f"waiting {left:.0f} s for the server's grace period to end")
        time.sleep(left)


def cmd_up(args):
    if os.geteuid() != 0:
        die("up needs root")
    opts = parse_options(args[1:], {"--lease": 15, "--grace": 15, "--mem": 512, "--idle": 0,
                                    "--idle-lock": ""})
    bed = Bed(args[0])
    for prefix in ("/tmp/", "/var/tmp/", "/run/", "/dev/shm/"):
        if (bed.dir + "/").startswith(prefix):
            die(f"DIR must not lie under {prefix}: the machines have their own there")
    if not os.path.exists("/dev/net/tun"):
        die("needs /dev/net/tun")
    kdir, initramfs = cmd_setup([])
    do_down(bed)
    t0 = time.monotonic()
    shutil.rmtree(bed.logs, ignore_errors=True)
    os.makedirs(bed.logs)
    os.makedirs(bed.path("disks"), exist_ok=True)
    for m in MOUNTS:
        os.makedirs(os.path.join(bed.dir, "mnt", m), exist_ok=True)
    for host, size in (("S", "1G"), ("A", "32M"), ("B", "32M")):
        img = bed.path("disks", f"{host}.img")
        sh("truncate", "-s", size, img)
        sh("mkfs.ext4", "-q", "-F", "-L", f"nfsbed-{host}", img)
    write_guest_files(bed, kdir, int(opts["--lease"]), int(opts["--grace"]))
    with open(bed.config_path, "w") as f:
        json.dump({"kdir": kdir, "initramfs": initramfs, "lease": int(opts["--lease"]),
                   "grace": int(opts["--grace"]), "mem": int(opts["--mem"]),
                   "accel": pick_accel(), "dir": bed.dir}, f)
    sh("ip", "netns", "add", bed.netns)
    ip = ["ip", "-n", bed.netns]
    sh(*ip, "link", "set", "lo", "up")
    sh(*ip, "link", "add", "br0", "type", "bridge")
    sh(*ip, "link", "set", "br0", "up")
    for host in HOSTS:
        sh(*ip, "tuntap", "add", f"d{host}", "mode", "tap")
        sh(*ip, "link", "set", f"d{host}", "master", "br0", "up")
        sh(*ip, "tuntap", "add", f"c{host}", "mode", "tap")
        sh(*ip, "addr", "add", f"{CTL_NET[host]}.1/30", "dev", f"c{host}")
        sh(*ip, "link", "set", f"c{host}", "up")
    os.makedirs(bed.rundir, exist_ok=True)
    with open(os.path.join(bed.rundir, "dir"), "w") as f:
        f.write(bed.dir)
    for host in HOSTS:
        start_machine(bed, host)
    enter_netns(bed)
    try:
        wait_ready(bed, HOSTS)
    except SystemExit:
        do_down(bed)
        raise
    say(f"up in {time.monotonic() - t0:.1f} s ({bed.config['accel']})")
    wait_grace(bed)
    if int(opts["--idle"]) > 0 and opts["--idle-lock"]:
        subprocess.Popen([sys.executable, SELF, "watchdog", bed.dir, str(opts["--idle"]),
                          opts["--idle-lock"]], stdin=subprocess.DEVNULL,
                         stdout=open(os.path.join(bed.logs, "watchdog.log"), "ab"),
                         stderr=subprocess.STDOUT, start_new_session=True)


def parse_options(args, defaults):
    opts = dict(defaults)
    i = 0
    while i < len(args):
        if args[i] not in opts or i + 1 >= len(args):
            die(f"unknown option or missing value: {args[i]}")
        opts[args[i]] = args[i + 1]
        i += 2
    return opts


def kill_machine(bed, host):
    for what in ("qemu", "virtiofsd"):
        pid = bed.pid(host, what)
        if pid is None:
            continue
        os.kill(pid, signal.SIGCONT)  # a stopped process dies only once continued
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while bed.pid(host, what) is not None and time.monotonic() < deadline:
            time.sleep(0.02)


def do_down(bed):
    for host in HOSTS:
        kill_machine(bed, host)
    # Whatever an earlier, interrupted bed at this DIR left running.
    for proc in os.listdir("/proc"):
        if not proc.isdigit() or int(proc) == os.getpid():
            continue
        try:
            cmdline = open(f"/proc/{proc}/cmdline", "rb").read()
        except OSError:
            continue
        if (f"flockrun-nfsbed-{bed.id}".encode() in cmdline or
                f"{bed.rundir}/".encode() in cmdline):
            try:
                os.kill(int(proc), signal.SIGCONT)
                os.kill(int(proc), signal.SIGKILL)
            except OSError:
                pass
    subprocess.run(["ip", "netns", "del", bed.netns], stderr=subprocess.DEVNULL)
    shutil.rmtree(bed.rundir, ignore_errors=True)
    shutil.rmtree(bed.state_dir, ignore_errors=True)


def cmd_down(args):
    do_down(Bed(args[0]))


def host_arg(word):
    host = word.upper()
    if host not in HOSTS:
        die(f"expected S, A or B, not {word!r}")
    return host


def cmd_verb(verb, args):
    bed = Bed(args[0])
    host = host_arg(args[1])
    _ = bed.config
    if verb == "crash":
        kill_machine(bed, host)
    elif verb == "boot":
        if bed.pid(host, "qemu") is not None:
            die(f"{host} is running")
        t0 = time.monotonic()
        start_machine(bed, host)
        enter_netns(bed)
        wait_ready(bed, [host])
        say(f"{host} booted in {time.monotonic() - t0:.1f} s")
        if host == "S" and "--no-wait-grace" not in args[2:]:
            wait_grace(bed)
    elif verb in ("partition", "heal"):
        sh("ip", "-n", bed.netns, "link", "set", f"d{host}", "down" if verb == "partition" else "up")
    elif verb in ("freeze", "thaw"):
        pid = bed.pid(host, "qemu")
        if pid is None:
            die(f"{host} is not running")
        os.kill(pid, signal.SIGSTOP if verb == "freeze" else signal.SIGCONT)


def cmd_info(args):
    bed = Bed(args[0])
    if not os.path.exists(bed.config_path):
        print(json.dumps({"up": False}))
        return
    cfg = bed.config
    hosts = {}
    for host in HOSTS:
        pid = bed.pid(host, "qemu")
        hosts[host] = {
            "name": HOSTNAME[host], "running": pid is not None,
            "frozen": pid is not None and bed.frozen(pid), "partitioned": not bed.link_up(host),
        }
    print(json.dumps({"up": True, "lease": cfg["lease"], "grace": cfg["grace"],
                      "accel": cfg["accel"], "hosts": hosts}))


def cmd_reset(args):
    bed = Bed(args[0])
    _ = bed.config
    enter_netns(bed)
    for host in HOSTS:
        if bed.pid(host, "qemu") is not None:
            agent_call(bed, host, {"op": "reset"}, timeout=30)


def cmd_settle(args):
    """Brings the bed back to its first state after whatever a test did to it: every link up,
    every machine running (booted again if it crashed) and thawed, the server out of its grace
    period, clocks set again, nothing left running from earlier commands, the export empty."""
    bed = Bed(args[0])
    _ = bed.config
    for host in HOSTS:
        pid = bed.pid(host, "qemu")
        if pid is not None and bed.frozen(pid):
            os.kill(pid, signal.SIGCONT)
        if not bed.link_up(host):
            sh("ip", "-n", bed.netns, "link", "set", f"d{host}", "up")
    down = [h for h in HOSTS if bed.pid(h, "qemu") is None]
    for host in down:
        kill_machine(bed, host)
        start_machine(bed, host)
    enter_netns(bed)
    if down:
        wait_ready(bed, down)
    for host in HOSTS:
        if host not in down:
            agent_call(bed, host, {"op": "settime", "time": time.time()})
        agent_call(bed, host, {"op": "reset"}, timeout=60)
    r = agent_call(bed, "S", {"op": "run", "argv": ["sh", "-c", "rm -rf /srv/export/* /srv/export/.[!.]*"],
                              "cwd": "/"}, timeout=60)
    if not r or r.get("code") != 0:
        die(f"cannot empty the export on S: {r}")
    wait_grace(bed)


def cmd_restart_nfsd(args):
    """The NFS service on S restarts (as `systemctl restart nfs-server` would): nfsd and
    lockd drop every client's state, start a grace period, and statd tells the NFSv3
    clients to reclaim their locks."""
    bed = Bed(args[0])
    cfg = bed.config
    enter_netns(bed)
    script = (f"rpc.nfsd 0 && echo {cfg['lease']} >/proc/fs/nfsd/nfsv4leasetime && "
              f"echo {cfg['grace']} >/proc/fs/nfsd/nfsv4gracetime && rpc.nfsd 8 && "
              "date +%s.%N >/run/nfsd-started && sm-notify -f")
    r = agent_call(bed, "S", {"op": "run", "argv": ["sh", "-c", script], "cwd": "/"}, timeout=60)
    if not r or r.get("code") != 0:
        die(f"restarting nfsd on S failed: {r}")


def cmd_watchdog(args):
    """Takes the bed down once nobody has used it for IDLE seconds: nobody holds LOCKFILE's
    flock, and it was last touched (a user's way of saying 'used') that long ago."""
    bed = Bed(args[0])
    idle, lockfile = float(args[1]), args[2]
    mine = os.stat(bed.config_path).st_ino
    while True:
        time.sleep(5)
        try:
            if os.stat(bed.config_path).st_ino != mine:
                return  # taken down and up again: the new bed has its own watchdog
        except FileNotFoundError:
            return
        try:
            with open(lockfile, "a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if time.time() - os.fstat(f.fileno()).st_mtime > idle:
                    say(f"idle for {idle:.0f} s: taking the bed at {bed.dir} down")
                    do_down(bed)
                    return
        except OSError:
            continue


# ------------------------------------------------------------------------- run (client)
def cmd_run(args):
    bed = Bed(args[0])
    host = host_arg(args[1])
    rest = args[2:]
    cwd, forward_stdin = None, True
    while rest and rest[0] != "--":
        if rest[0] == "-n":
            forward_stdin, rest = False, rest[1:]
        elif rest[0] == "-C" and len(rest) > 1:
            cwd, rest = rest[1], rest[2:]
        else:
            die(f"unknown option {rest[0]}")
    argv = rest[1:]
    if not argv:
        die("usage: run DIR HOST [-n] [-C CWD] -- COMMAND...")
    if not os.path.exists(bed.config_path):
        die(f"no bed is up at {bed.dir}", 255)
    qemu = bed.pid(host, "qemu")
    if qemu is None:
        die(f"{host} is not running", 255)
    watch = os.pidfd_open(qemu)
    enter_netns(bed)
    try:
        sock = socket.create_connection((f"{CTL_NET[host]}.2", AGENT_PORT), timeout=10)
    except OSError as e:
        die(f"{host}'s agent does not answer: {e}", 255)
    sock.settimeout(None)
    forward_stdin = forward_stdin and not os.isatty(0)
    request = {"op": "run", "argv": argv, "cwd": cwd or os.getcwd(), "env": dict(os.environ),
               "stdin": forward_stdin}
    sock.sendall(frame(b"R", json.dumps(request).encode()))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    caught = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda n, _f: caught.append(n))
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    sel.register(watch, selectors.EVENT_READ, "qemu")
    sel.register(wake_r, selectors.EVENT_READ, "signal")
    if forward_stdin:
        try:
            sel.register(0, selectors.EVENT_READ, "stdin")
        except PermissionError:  # a regular file or /dev/null: no waiting needed
            while data := os.read(0, 65536):
                sock.sendall(frame(b"I", data))
            sock.sendall(frame(b"E"))
    frames = Frames()
    give_up = None
    while True:
        timeout = None if give_up is None else max(0.0, give_up - time.monotonic())
        events = sel.select(timeout)
        if give_up is not None and time.monotonic() >= give_up:
            say(f"{host}: COMMAND did not end 5 s after the signal")
            return 128 + caught[0]
        for key, _ in events:
            if key.data == "qemu":
                say(f"{host} went down while running the command")
                return 255
            if key.data == "signal":
                os.read(wake_r, 64)
                for sig in caught[len(caught) - 1:]:
                    if give_up is not None:
                        return 128 + sig
                    give_up = time.monotonic() + 5
                    sock.sendall(frame(b"K", json.dumps({"signal": sig}).encode()))
            elif key.data == "stdin":
                data = os.read(0, 65536)
                if data:
                    sock.sendall(frame(b"I", data))
                else:
                    sel.unregister(0)
                    sock.sendall(frame(b"E"))
            else:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    say(f"lost the connection to {host}'s agent")
                    return 255
                for kind, payload in frames.feed(data):
                    if kind in (b"O", b"F"):
                        out = 1 if kind == b"O" else 2
                        try:
                            os.write(out, payload)
                        except BrokenPipeError:
                            pass
                    elif kind == b"X":
                        end = json.loads(payload)
                        if "error" in end:
                            say(f"{host}: {end['error']}")
                        if end.get("signal"):
                            return 128 + end["signal"]
                        return end.get("code", 255)


# ------------------------------------------------------------------------- agent (guest)
class Agent:
    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = {}  # pid -> Session

    def reap(self):
        """Collects every child: a session's COMMAND, and anything orphaned below us (the
        agent is a subreaper, so a zombie never lingers to look alive)."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.05)
                continue
            with self.lock:
                session = self.sessions.pop(pid, None)
            if session:
                session.ended(status)

    def serve(self, address):
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        threading.Thread(target=self.reap, daemon=True).start()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, AGENT_PORT))
        listener.listen(64)
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            kind, data = read_frame(conn)
            if kind != b"R":
                return
            request = json.loads(data)
            op = request.get("op")
            if op == "run":
                Session(self, conn, request).run()
                return
            if op == "hello":
                try:
                    status = open("/run/nfsbed-status").read()
                except OSError:
                    status = "no status"
                answer = {"status": status}
            elif op == "settime":
                time.clock_settime(time.CLOCK_REALTIME, request["time"])
                answer = {"time": time.time()}
            elif op == "nfsd-started":
                try:
                    answer = {"time": float(open("/run/nfsd-started").read())}
                except (OSError, ValueError):
                    answer = {}
            elif op == "reset":
                answer = {"killed": self.reset()}
            else:
                answer = {"error": f"unknown op {op!r}"}
            conn.sendall(frame(b"X", json.dumps(answer).encode()))
        except OSError:
            pass
        finally:
            conn.close()

    def reset(self):
        """Kills everything below the agent (what earlier commands started or left behind)."""
        me = os.getpid()
        killed = 0
        for _ in range(50):
            children = {}
            for proc in os.listdir("/proc"):
                if not proc.isdigit():
                    continue
                try:
                    stat = open(f"/proc/{proc}/stat").read()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(proc))
            below, todo = [], list(children.get(me, []))
            while todo:
                pid = todo.pop()
                below.append(pid)
                todo.extend(children.get(pid, []))
            if not below:
                break
            for pid in below:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
            time.sleep(0.1)
        return killed


class Session:
    """One `run`: COMMAND in a session of its own, its output sent back as frames."""

    def __init__(self, agent, conn, request):
        self.agent, self.conn, self.request = agent, conn, request
        self.send_lock = threading.Lock()
        self.done = threading.Event()
        self.status = None

    def send(self, kind, data=b""):
        with self.send_lock:
            try:
                self.conn.sendall(frame(kind, data))
            except OSError:
                pass

    def ended(self, status):
        self.status = status
        self.done.set()

    def pump(self, source, kind):
        while True:
            try:
                data = os.read(source, 65536)
            except OSError:
                data = b""
            if not data:
                break
            self.send(kind, data)
        os.close(source)

    def run(self):
        r = self.request
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdin = subprocess.PIPE if r.get("stdin") else subprocess.DEVNULL
        try:
            with self.agent.lock:
                proc = subprocess.Popen(r["argv"], cwd=r.get("cwd") or "/", env=r.get("env"),
                                        stdin=stdin, stdout=out_w, stderr=err_w,
                                        start_new_session=True)
                self.agent.sessions[proc.pid] = self
        except OSError as e:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            self.send(b"X", json.dumps({"code": code, "error": f"{r['argv'][0]}: {e.strerror}"}).encode())
            self.conn.close()
            return
        os.close(out_w)
        os.close(err_w)
        pumps = [threading.Thread(target=self.pump, args=(fd, k), daemon=True)
                 for fd, k in ((out_r, b"O"), (err_r, b"F"))]
        for p in pumps:
            p.start()
        threading.Thread(target=self.finish, args=(proc, pumps), daemon=True).start()
        # This thread reads the client: stdin, signals, and its going away.
        while True:
            try:
                kind, data = read_frame(self.conn)
            except OSError:
                kind = None
            if kind is None:
                if not self.done.is_set():
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                return
            if kind == b"I" and proc.stdin:
                try:
                    proc.stdin.write(data)
                    proc.stdin.flush()
                except OSError:
                    pass
            elif kind == b"E" and proc.stdin:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            elif kind == b"K":
                try:
                    os.killpg(proc.pid, json.loads(data)["signal"])
                except OSError:
                    pass

    def finish(self, proc, pumps):
        self.done.wait()
        # Output still buffered in the pipes comes first; something COMMAND left running
        # in the background may keep them open, so only briefly.
        for p in pumps:
            p.join(0.5)
        status = self.status
        if os.WIFSIGNALED(status):
            end = {"signal": os.WTERMSIG(status)}
        else:
            end = {"code": os.WEXITSTATUS(status)}
        self.send(b"X", json.dumps(end).encode())
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def cmd_agent(args):
    Agent().serve(args[0])


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    verb, args = sys.argv[1], sys.argv[2:]
    if verb == "setup":
        cmd_setup(args)
    elif verb == "up" and args:
        cmd_up(args)
    elif verb == "down" and args:
        cmd_down(args)
    elif verb == "run" and len(args) >= 2:
        return cmd_run(args)
    elif verb in ("crash", "boot", "partition", "heal", "freeze", "thaw") and len(args) >= 2:
        cmd_verb(verb, args)
    elif verb == "restart-nfsd" and args:
        cmd_restart_nfsd(args)
    elif verb == "wait-grace" and args:
        bed = Bed(args[0])
        enter_netns(bed)
        wait_grace(bed)
    elif verb == "settle" and args:
        cmd_settle(args)
    elif verb == "reset" and args:
        cmd_reset(args)
    elif verb == "info" and args:
        cmd_info(args)
    elif verb == "watchdog" and len(args) == 3:
        cmd_watchdog(args)
    elif verb == "agent" and args:
        cmd_agent(args)
    else:
        die(f"unknown command or missing arguments: {' '.join(sys.argv[1:])} (see --help)", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
