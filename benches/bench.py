#!/usr/bin/env python3
"""flockrun beside util-linux flock(1) and py-filelock, measured in one run on one machine.

    python3 benches/bench.py            # full run (release build), prints the tables
    python3 benches/bench.py --write    # ... and rewrites BENCHMARKS.md
    python3 benches/bench.py --smoke    # a few iterations, checks only invariants (CI)

Every figure is wall-clock time of real processes. Handoff = from the moment the holder's
command ends to the moment the waiter's command starts; both stamps come from the same
`date +%s%N` (or Python's time.time_ns()) so process start-up is counted alike for all
tools. The benchmark sleeps briefly to let a waiter queue before a release: that is the
scenario being measured, not a test.

Semaphores: a slot handoff is measured with every slot held and one holder letting go, the
release coming at a random moment of a polling script's cycle (beside flockrun --slots, a
semaphore scripted with flock(1) as people write it: N lock files tried in turn with
`flock -n`, then a 0.1 s nap); the job figure is the wall time of 16 jobs of `sleep 0.1`
started at once through 4 slots, whose floor is 0.4 s.

The etcd figures run flockrun and etcdctl lock against one etcd member started by the
benchmark on loopback, its data directory in the system's temporary directory; every lock
costs a few committed writes, so they depend on that disk's fsync time.
"""

import argparse
import random
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY_FILELOCK = "4.2.11"
# The last py-filelock with SoftReadWriteLock's layout v1 that flockrun takes as its reference.
PY_FILELOCK_V1 = "3.28.0"
NFSBED = ROOT / "tests" / "helpers" / "nfsbed.py"

PY_HOLDER = r"""
import sys, time, filelock
kind, path = sys.argv[1], sys.argv[2]
lock = {"native": lambda: filelock.FileLock(path),
        "soft": lambda: filelock.SoftFileLock(path),
        "lease": lambda: filelock.SoftFileLease(path, lease_duration=float(sys.argv[3])),
        "write": lambda: filelock.ReadWriteLock(path, is_singleton=False).write_lock(),
        "read": lambda: filelock.ReadWriteLock(path, is_singleton=False).read_lock(),
        "srw-write": lambda: filelock.SoftReadWriteLock(path, is_singleton=False).write_lock()}[kind]()
with lock:
    print("ready", flush=True)
    sys.stdin.readline()
    print(time.time_ns(), flush=True)
"""

PY_WAITER = r"""
import subprocess, sys, filelock
kind, path = sys.argv[1], sys.argv[2]
lock = {"native": lambda: filelock.FileLock(path),
        "soft": lambda: filelock.SoftFileLock(path),
        "lease": lambda: filelock.SoftFileLease(path, lease_duration=float(sys.argv[3])),
        "write": lambda: filelock.ReadWriteLock(path, is_singleton=False).write_lock(),
        "srw-write": lambda: filelock.SoftReadWriteLock(path, is_singleton=False).write_lock()}[kind]()
with lock:
    subprocess.run(["date", "+%s%N"])
"""

PY_MANY_LOCKS = r"""
import fcntl, os, sys, tempfile
d = tempfile.mkdtemp()
fds = []
for i in range(int(sys.argv[1])):
    fd = os.open(os.path.join(d, f"l{i}"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    fds.append(fd)
print("ready", flush=True)
sys.stdin.read()
"""


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout.strip()


def theirs_name(client):
    """How a target names the engine's own client: psql, or a redis-cli SET NX loop."""
    return {"psql": "psql", "redis-cli": "a redis-cli SET NX loop"}[client]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ms(ns_or_s, unit="s"):
    return f"{ns_or_s * 1000:.2f} ms" if unit == "s" else f"{ns_or_s / 1e6:.2f} ms"


class Bench:
    def __init__(self, flockrun, python, smoke, tmp):
        self.flockrun = flockrun
        self.python = python
        self.smoke = smoke
        self.tmp = Path(tmp)
        self.rows = []  # (section, what, value, target, verdict)
        self.failures = []

    def n(self, full, smoke):
        return smoke if self.smoke else full

    def lock(self, name):
        return str(self.tmp / name)

    def record(self, section, what, value, target="", ok=None):
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        self.rows.append((section, what, value, target, verdict))
        print(f"  {what}: {value}  {target} {verdict}", flush=True)

    # 1. uncontended exec in a loop
    def uncontended(self):
        runs = self.n(500, 20)
        floor, repeat = build_c("floor.c", "bench-floor"), build_c("repeat.c", "bench-repeat")
        def loop(cmd):
            # Mean seconds per run over `runs`, started one after another by benches/repeat.c.
            return float(sh([repeat, str(runs), *cmd])) / 1e6
        best_flock, best_fr, best_floor = [], [], []
        for _ in range(self.n(7, 1)):  # interleaved rounds; best of each resists noise
            best_flock.append(loop(["flock", self.lock("u1"), "true"]))
            best_fr.append(loop([self.flockrun, "exec", self.lock("u2"), "--", "true"]))
            best_floor.append(loop([floor, self.lock("u4"), "true"]))
        f, r, c = min(best_flock), min(best_fr), min(best_floor)
        py_runs = self.n(30, 3)
        start = time.perf_counter()
        for _ in range(py_runs):
            subprocess.run([self.python, "-c",
                            "import filelock, subprocess, sys\n"
                            "with filelock.FileLock(sys.argv[1]): subprocess.run(['true'])",
                            self.lock("u3")], check=True)
        p = (time.perf_counter() - start) / py_runs
        ratio = r / f
        self.record("uncontended", f"flock(1) LOCK true ({runs} runs)", ms(f))
        self.record("uncontended", "flockrun exec LOCK -- true", ms(r))
        self.record("uncontended", "static C floor: open, flock, fork, exec, wait", ms(c))
        self.record("uncontended", "py-filelock FileLock + subprocess true", ms(p))
        self.record("uncontended", "ratio flockrun / flock(1)", f"{ratio:.3f}", "≤ 0.85", ratio <= 0.85)
        self.record("uncontended", "ratio static C floor / flock(1)", f"{c / f:.3f}")
        self.record("uncontended", "ratio flockrun / static C floor", f"{r / c:.3f}")

    # 2. handoff latency
    def _handoff(self, holder_cmd, waiter_cmd, lock, queue=0.1):
        h = subprocess.Popen(holder_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert h.stdout.readline().strip() == "ready", holder_cmd
        w = subprocess.Popen(waiter_cmd, stdout=subprocess.PIPE, text=True)
        time.sleep(queue)  # let the waiter queue
        h.stdin.write("go\n")
        h.stdin.flush()
        end = int(h.stdout.readline())
        h.wait()
        start = int(w.stdout.readline())
        w.wait()
        return start - end

    def handoff(self):
        samples = self.n(100, 3)
        fr, py = self.flockrun, self.python
        hold_sh = ["sh", "-c", "echo ready; read x; date +%s%N"]
        date = ["date", "+%s%N"]
        cases = [
            ("kernel", "flock(1)", lambda l: (["flock", l, *hold_sh], ["flock", l, *date]), None),
            ("kernel", "flockrun exec", lambda l: ([fr, "exec", l, "--", *hold_sh], [fr, "exec", l, "--", *date]), "flock(1)"),
            ("kernel", "py-filelock FileLock", lambda l: ([py, "-c", PY_HOLDER, "native", l], [py, "-c", PY_WAITER, "native", l]), None),
            ("ofd", "flockrun exec --fcntl", lambda l: ([fr, "exec", "--fcntl", l, "--", *hold_sh], [fr, "exec", "--fcntl", l, "--", *date]), None),
            ("sqlite w→w", "flockrun write", lambda l: ([fr, "write", l, "--", *hold_sh], [fr, "write", l, "--", *date]), 5.0),
            ("sqlite r→w", "flockrun read → write", lambda l: ([fr, "read", l, "--", *hold_sh], [fr, "write", l, "--", *date]), 5.0),
            ("sqlite w→w", "py-filelock ReadWriteLock", lambda l: ([py, "-c", PY_HOLDER, "write", l], [py, "-c", PY_WAITER, "write", l]), None),
            ("soft", "flockrun exec --soft", lambda l: ([fr, "exec", "--soft", l, "--", *hold_sh], [fr, "exec", "--soft", l, "--", *date]), 10.0),
            ("soft", "py-filelock SoftFileLock", lambda l: ([py, "-c", PY_HOLDER, "soft", l], [py, "-c", PY_WAITER, "soft", l]), None),
            ("lease", "flockrun exec --soft --ttl 30", lambda l: ([fr, "exec", "--soft", "--ttl", "30", l, "--", *hold_sh], [fr, "exec", "--soft", "--ttl", "30", l, "--", *date]), 10.0),
            ("lease", "py-filelock SoftFileLease(lease_duration=30)", lambda l: ([py, "-c", PY_HOLDER, "lease", l, "30"], [py, "-c", PY_WAITER, "lease", l, "30"]), None),
        ]
        # Interleaved: every case's k-th sample is taken in the same round, so a slow minute
        # of the VM falls on all of them alike rather than on whichever case ran then.
        locks = [self.lock(f"h{i}") for i in range(len(cases))]
        samples_of = [[] for _ in cases]
        for _ in range(samples):
            for (kind, who, make, target), lock, values in zip(cases, locks, samples_of):
                values.append(self._handoff(*make(lock), lock) / 1e6)
        p50s = {}
        for (kind, who, make, target), values in zip(cases, samples_of):
            p50, p90 = statistics.median(values), pct(values, 90)
            p50s[who] = p50
            value = f"p50 {p50:.2f} ms, p90 {p90:.2f} ms"
            if target == "flock(1)":
                ok = p50 <= p50s["flock(1)"]
                self.record("handoff", f"{kind}: {who}", value, "p50 no slower than flock(1)", ok)
            elif isinstance(target, float):
                self.record("handoff", f"{kind}: {who}", value, f"p50 ≤ {target:g} ms", p50 <= target)
            else:
                self.record("handoff", f"{kind}: {who}", value)

    # 2c. semaphores: slot handoff, and 16 jobs of 0.1 s through 4 slots
    def _slot_handoff(self, holder_cmds, waiter_cmd):
        # Every slot held; the waiter queues; the first holder lets go.
        holders = []
        for cmd in holder_cmds:
            h = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert h.stdout.readline().strip() == "ready", cmd
            holders.append(h)
        w = subprocess.Popen(waiter_cmd, stdout=subprocess.PIPE, text=True)
        # Let the waiter queue; the release comes at a random moment of a polling loop's
        # cycle, as it would in life.
        time.sleep(random.uniform(0.1, 0.2))
        first = holders[0]
        first.stdin.write("go\n")
        first.stdin.flush()
        end = int(first.stdout.readline())
        first.wait()
        start = int(w.stdout.readline())
        w.wait()
        for h in holders[1:]:
            h.stdin.write("go\n")
            h.stdin.flush()
            h.stdout.readline()
            h.wait()
        return start - end

    def slots(self):
        samples = self.n(40, 3)
        fr = self.flockrun
        hold_sh = ["sh", "-c", "echo ready; read x; date +%s%N"]
        date = ["date", "+%s%N"]
        # How people script a semaphore with flock(1): N lock files, try each, nap, again.
        script = ('while :; do for i in 0 1; do exec 9>"$1.$i"; '
                  'if flock -n 9; then shift; exec "$@"; fi; exec 9>&-; done; sleep 0.1; done')
        flock_sem = lambda l, cmd: ["bash", "-c", script, "sem", l, *cmd]
        cases = [
            ("flock(1), 2 lock files and a loop",
             lambda l: ([["flock", f"{l}.0", *hold_sh], ["flock", f"{l}.1", *hold_sh]],
                        flock_sem(l, date))),
            ("flockrun exec --slots 2",
             lambda l: ([[fr, "exec", "--slots", "2", l, "--", *hold_sh]] * 2,
                        [fr, "exec", "--slots", "2", l, "--", *date])),
            ("flockrun exec --soft --slots 2",
             lambda l: ([[fr, "exec", "--soft", "--slots", "2", l, "--", *hold_sh]] * 2,
                        [fr, "exec", "--soft", "--slots", "2", l, "--", *date])),
        ]
        locks = [self.lock(f"slots{i}") for i in range(len(cases))]
        samples_of = [[] for _ in cases]
        for _ in range(samples):
            for (who, make), lock, values in zip(cases, locks, samples_of):
                values.append(self._slot_handoff(*make(lock)) / 1e6)
        for (who, _), values in zip(cases, samples_of):
            p50, p90 = statistics.median(values), pct(values, 90)
            self.record("semaphore", f"slot handoff: {who}", f"p50 {p50:.2f} ms, p90 {p90:.2f} ms")
        # 16 jobs of 0.1 s, at most 4 at once: the floor is 4 rounds, 0.4 s.
        jobs = [
            ("flock(1), 4 lock files and a loop",
             lambda l: ["bash", "-c", script.replace("0 1", "0 1 2 3"), "sem", l, "sleep", "0.1"]),
            ("flockrun exec --slots 4", lambda l: [fr, "exec", "--slots", "4", l, "--", "sleep", "0.1"]),
            ("flockrun exec --soft --slots 4",
             lambda l: [fr, "exec", "--soft", "--slots", "4", l, "--", "sleep", "0.1"]),
        ]
        for i, (who, make) in enumerate(jobs):
            best = []
            for round_ in range(self.n(5, 1)):
                lock = self.lock(f"jobs{i}-{round_}")
                start = time.perf_counter()
                running = [subprocess.Popen(make(lock)) for _ in range(16)]
                for p in running:
                    assert p.wait() == 0, who
                best.append(time.perf_counter() - start)
            self.record("semaphore", f"16 jobs of 0.1 s through 4 slots: {who}",
                        f"{min(best):.3f} s (median {statistics.median(best):.3f} s)", "floor 0.4 s")

    # 2b. the soft reader/writer lock: write→write handoff per layout, beside py-filelock
    def soft_rw(self):
        samples = self.n(30, 3)
        fr, py4, py3 = self.flockrun, self.python, venv_python(PY_FILELOCK_V1)
        hold_sh = ["sh", "-c", "echo ready; read x; date +%s%N"]
        date = ["date", "+%s%N"]
        cases = [("flockrun write --soft (both layouts)", []),
                 ("flockrun write --soft --layout v1", ["--layout", "v1"]),
                 ("flockrun write --soft --layout v2", ["--layout", "v2"])]
        for i, (who, extra) in enumerate(cases):
            lock = self.lock(f"srw{i}")
            values = [self._handoff([fr, "write", "--soft", *extra, lock, "--", *hold_sh],
                                    [fr, "write", "--soft", *extra, lock, "--", *date], lock) / 1e6
                      for _ in range(samples)]
            p50, p90 = statistics.median(values), pct(values, 90)
            self.record("soft-rw", f"handoff w→w: {who}", f"p50 {p50:.2f} ms, p90 {p90:.2f} ms",
                        "p50 ≤ 10 ms", p50 <= 10.0)
        for i, (who, python) in enumerate([(f"py-filelock {PY_FILELOCK_V1} SoftReadWriteLock (v1)", py3),
                                           (f"py-filelock {PY_FILELOCK} SoftReadWriteLock (v2)", py4)]):
            lock = self.lock(f"srwpy{i}")
            values = [self._handoff([python, "-c", PY_HOLDER, "srw-write", lock],
                                    [python, "-c", PY_WAITER, "srw-write", lock], lock) / 1e6
                      for _ in range(samples)]
            p50, p90 = statistics.median(values), pct(values, 90)
            self.record("soft-rw", f"handoff w→w: {who}", f"p50 {p50:.2f} ms, p90 {p90:.2f} ms")
        for layout in ("both", "v1", "v2"):
            waited, bound = self._writer_behind_readers(["--soft", "--layout", layout])
            self.record("soft-rw", f"writer behind readers (layout {layout})",
                        f"got in after {waited * 1000:.0f} ms", f"≤ {bound * 1000:.0f} ms", waited <= bound)

    # 2a. taking over a lease whose holder died or stopped renewing
    def lease_takeover(self):
        ttl = 2.0
        fr, py = self.flockrun, self.python
        tools = [
            ("flockrun", lambda l: [fr, "exec", "--soft", "--ttl", f"{ttl:g}", l, "--", "sh", "-c", "echo ready; read x"],
                         lambda l: [fr, "exec", "--soft", "--ttl", f"{ttl:g}", l, "--", "date", "+%s%N"]),
            ("py-filelock", lambda l: [py, "-c", PY_HOLDER, "lease", l, f"{ttl:g}"],
                            lambda l: [py, "-c", PY_WAITER, "lease", l, f"{ttl:g}"]),
        ]
        samples = self.n(5, 1)
        # A killed holder on this host can be proven dead at once; a stopped one (as a frozen
        # host looks) only ages out after the TTL, counted on the contender's clock.
        for how, sig, target in [("holder SIGKILLed", signal.SIGKILL, 0.5), ("holder SIGSTOPped", signal.SIGSTOP, ttl + 0.5)]:
            for who, holder, contender in tools:
                values = []
                for i in range(samples):
                    lock = self.lock(f"lt-{who}-{sig}-{i}")
                    h = subprocess.Popen(holder(lock), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, start_new_session=True)
                    assert h.stdout.readline().strip() == "ready", who
                    os.killpg(h.pid, sig)
                    stopped = time.time_ns()
                    c = subprocess.Popen(contender(lock), stdout=subprocess.PIPE, text=True)
                    try:
                        start = int(c.stdout.readline())
                        c.wait(timeout=60)
                    finally:
                        os.killpg(h.pid, signal.SIGKILL)
                        h.wait()
                    values.append((start - stopped) / 1e9)
                value = f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"
                if who == "flockrun":
                    self.record("lease takeover", f"TTL {ttl:g} s, {how}: {who}", value,
                                f"≤ {target:g} s", max(values) <= target)
                else:
                    self.record("lease takeover", f"TTL {ttl:g} s, {how}: {who}", value)

    # 3. across two NFS clients, on the real-NFS bed of the tests (tests/helpers/nfsbed.py):
    # an NFS server and two NFS clients, each a virtual machine under qemu
    def nfs(self):
        if os.geteuid() != 0 or not Path("/dev/net/tun").exists():
            print("  skipped: the NFS bed needs root and /dev/net/tun", flush=True)
            return
        bed = str(ROOT / "target" / "bench-nfsbed")
        subprocess.run([sys.executable, str(NFSBED), "up", bed], check=True, stdin=subprocess.DEVNULL)
        try:
            self._nfs_handoff(bed)
            self._nfs_load(bed)
        finally:
            subprocess.run([sys.executable, str(NFSBED), "down", bed], stdin=subprocess.DEVNULL)

    def _nfs_cases(self, lock_dir):
        """(section, who, holder argv, waiter argv, its py-filelock counterpart) per case; the
        holder prints `ready`, holds until a line on stdin, prints the time it let go."""
        fr, py4, py3 = self.flockrun, self.python, venv_python(PY_FILELOCK_V1)
        hold_sh = ["sh", "-c", "echo ready; read x; date +%s%N"]
        date = ["date", "+%s%N"]
        def fr_case(section, who, verb, opts, counterpart):
            return (section, who, lambda l: [fr, verb, *opts, l, "--", *hold_sh],
                    lambda l: [fr, verb, *opts, l, "--", *date], counterpart)
        def py_case(section, who, python, kind, *extra):
            return (section, who, lambda l: [python, "-c", PY_HOLDER, kind, l, *extra],
                    lambda l: [python, "-c", PY_WAITER, kind, l, *extra], None)
        return [
            ("kernel", "flock(1)", lambda l: ["flock", l, *hold_sh], lambda l: ["flock", l, *date], None),
            fr_case("kernel", "flockrun exec", "exec", [], "py-filelock FileLock"),
            py_case("kernel", "py-filelock FileLock", py4, "native"),
            fr_case("soft", "flockrun exec --soft", "exec", ["--soft"], "py-filelock SoftFileLock"),
            py_case("soft", "py-filelock SoftFileLock", py4, "soft"),
            fr_case("lease", "flockrun exec --soft --ttl 30", "exec", ["--soft", "--ttl", "30"],
                    "py-filelock SoftFileLease(lease_duration=30)"),
            py_case("lease", "py-filelock SoftFileLease(lease_duration=30)", py4, "lease", "30"),
            fr_case("soft-rw", "flockrun write --soft (both layouts)", "write", ["--soft"],
                    f"py-filelock {PY_FILELOCK} SoftReadWriteLock (v2)"),
            py_case("soft-rw", f"py-filelock {PY_FILELOCK} SoftReadWriteLock (v2)", py4, "srw-write"),
            py_case("soft-rw", f"py-filelock {PY_FILELOCK_V1} SoftReadWriteLock (v1)", py3, "srw-write"),
        ]

    def _nfs_run(self, bed, host, argv, stdin=False):
        cmd = [sys.executable, str(NFSBED), "run", bed, host] + ([] if stdin else ["-n"]) + ["--", *argv]
        return subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, text=True)

    def _nfs_handoff(self, bed):
        """Holder on client A, waiter on client B: from the holder's command's end to the
        waiter's command's start, by the two machines' clocks (set from this host's when
        they boot; they agree within about 10 ms)."""
        samples = self.n(15, 1)
        share = f"{bed}/mnt/v4"
        cases = self._nfs_cases(share)
        values = [[] for _ in cases]
        on = lambda host, argv, *flags: [sys.executable, str(NFSBED), "run", bed, host, *flags, "--", *argv]
        for i in range(samples):
            for k, (section, who, holder, waiter, _) in enumerate(cases):
                lock = f"{share}/h{k}-{i}.lock"
                # A guest takes tenths of a second to start the waiter: 1.5 s to queue.
                values[k].append(self._handoff(on("A", holder(lock)), on("B", waiter(lock), "-n"),
                                               lock, queue=1.5) / 1e6)
        p50s = {who: statistics.median(v) for (_, who, *_), v in zip(cases, values)}
        for (section, who, _, _, counterpart), v in zip(cases, values):
            value = f"p50 {statistics.median(v):.0f} ms, p90 {pct(v, 90):.0f} ms"
            if counterpart:
                ok = p50s[who] <= p50s[counterpart]
                self.record("NFS handoff", f"{section}: {who}", value, f"p50 no slower than {counterpart}", ok)
            else:
                self.record("NFS handoff", f"{section}: {who}", value)

    def _nfs_rpcs(self, bed):
        p = self._nfs_run(bed, "S", ["awk", "/^rpc / { print $2 }", "/proc/net/rpc/nfsd"])
        out = p.stdout.read()
        p.wait()
        return int(out)

    def _nfs_load(self, bed):
        """RPCs a waiting process on client B makes the server answer per second, while the
        holder on client A holds: counted at the server over a window with the waiter, less
        the same window with the holder alone (its own renewals)."""
        window = self.n(10, 2)
        share = f"{bed}/mnt/v4"
        rates = {}
        for k, (section, who, holder, waiter, counterpart) in enumerate(self._nfs_cases(share)):
            if who == "flock(1)":
                continue
            lock = f"{share}/load{k}.lock"
            h = self._nfs_run(bed, "A", holder(lock), stdin=True)
            assert h.stdout.readline().strip() == "ready", who
            time.sleep(2)
            a = self._nfs_rpcs(bed)
            time.sleep(window)
            alone = self._nfs_rpcs(bed) - a
            w = self._nfs_run(bed, "B", waiter(lock))
            time.sleep(3)  # started and waiting
            a = self._nfs_rpcs(bed)
            time.sleep(window)
            both = self._nfs_rpcs(bed) - a
            w.kill()
            w.wait()
            h.stdin.write("go\n")
            h.stdin.flush()
            h.wait()
            rates[who] = (section, counterpart, max(both - alone, 0) / window)
        for who, (section, counterpart, rate) in rates.items():
            if counterpart:
                self.record("NFS load", f"{section}: waiting {who}", f"{rate:.1f} RPC/s",
                            f"≤ 1/5 of {counterpart}", rate <= rates[counterpart][2] / 5)
            else:
                self.record("NFS load", f"{section}: waiting {who}", f"{rate:.1f} RPC/s")

    # 2b. the etcd kind beside etcdctl lock, on a one-member etcd on loopback
    def etcd(self):
        if not (shutil.which("etcd") and shutil.which("etcdctl")):
            self.failures.append("etcd and etcdctl are needed (apt-get install etcd-server etcd-client)")
            return
        plain = Etcd(self.tmp, "plain")
        try:
            self._etcd(plain, "")
        finally:
            plain.stop()
        tls = Etcd(self.tmp, "tls", tls=True)
        try:
            self._etcd(tls, "TLS: ")
        finally:
            tls.stop()

    def _etcd(self, server, label):
        fr = self.flockrun
        ctl = ["etcdctl", "--endpoints", server.endpoint(), *server.client_args()]
        lock = lambda name: [fr, "exec", *server.client_args(), f"{server.scheme}://{server.endpoint()}/{name}", "--"]
        env = dict(os.environ, ETCDCTL_API="3")
        runs = self.n(100, 5)
        for who, cmd in [(f"flockrun exec {server.scheme}://…/NAME -- true", lock("u1") + ["true"]),
                         ("etcdctl lock NAME true", [*ctl, "lock", "u2", "true"])]:
            start = time.perf_counter()
            for _ in range(runs):
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            self.record("etcd", f"{label}uncontended: {who} ({runs} runs)", ms((time.perf_counter() - start) / runs))
        # Handoff as for the other kinds, samples of the two tools interleaved. etcdctl gives
        # its command no stdin, so both holders wait on a FIFO instead.
        samples = self.n(60, 3)
        fifo = self.tmp / f"etcd-release-{server.name}"
        os.mkfifo(fifo)
        hold = ["sh", "-c", f"echo ready; read x < {fifo}; date +%s%N"]
        date = ["date", "+%s%N"]
        cases = [
            ("flockrun exec", lock),
            ("etcdctl lock", lambda n: [*ctl, "lock", n, "--"]),
        ]
        values = {who: [] for who, _ in cases}
        for i in range(samples):
            for who, prefix in cases:
                name = f"h-{who.split()[0]}-{i}"
                h = subprocess.Popen(prefix(name) + hold, stdout=subprocess.PIPE, text=True, env=env)
                assert h.stdout.readline().strip() == "ready", who
                w = subprocess.Popen(prefix(name) + date, stdout=subprocess.PIPE, text=True, env=env)
                time.sleep(0.2)  # let the waiter queue
                with open(fifo, "w") as release:
                    release.write("go\n")
                end = int(h.stdout.readline())
                h.wait()
                start = int(w.stdout.readline())
                w.wait()
                values[who].append((start - end) / 1e6)
        theirs = statistics.median(values["etcdctl lock"])
        for who, _ in cases:
            p50 = statistics.median(values[who])
            value = f"p50 {p50:.2f} ms, p90 {pct(values[who], 90):.2f} ms"
            if who == "etcdctl lock":
                self.record("etcd", f"{label}handoff: {who}", value)
            else:
                self.record("etcd", f"{label}handoff: {who}", value, "p50 no slower than etcdctl",
                            p50 <= theirs)
        os.unlink(fifo)

    # 2c. the PostgreSQL kind beside psql taking pg_advisory_lock by hand, on a server
    # started by the benchmark on loopback (TCP, trust)
    def postgresql(self):
        if not (shutil.which("psql") and PostgresServer.bin_dir()):
            self.failures.append("PostgreSQL is needed (apt-get install postgresql)")
            return
        server = PostgresServer(self.tmp)
        try:
            self._postgresql(server)
        finally:
            server.stop()

    def _postgresql(self, server):
        fr = self.flockrun
        url = lambda name: f"postgresql://postgres@127.0.0.1:{server.port}/postgres/{name}"
        psql = ["psql", "-X", "-q", "-At", "-o", "/dev/null", "-h", "127.0.0.1", "-p", str(server.port),
                "-U", "postgres", "-d", "postgres"]
        # psql holds the session lock while its \! runs the command, as scripts do by hand.
        by_hand = lambda name, cmd: [*psql, "-c", f"SELECT pg_advisory_lock(hashtext('{name}'))",
                                     "-c", "\\! " + cmd]
        self._beside_a_client("postgresql", "pg-release", [
            ("flockrun exec postgresql://…/NAME -- true", [fr, "exec", url("u1"), "--", "true"]),
            ("psql -c 'SELECT pg_advisory_lock(…)' -c '\\! true'", by_hand("u2", "true")),
        ], [
            ("flockrun exec", lambda n, hold: [fr, "exec", url(n), "--", "sh", "-c", hold],
             lambda n: [fr, "exec", url(n), "--", "sh", "-c", "date +%s%N"]),
            ("psql pg_advisory_lock", lambda n, hold: by_hand(n, f"sh -c '{hold}'"),
             lambda n: by_hand(n, "date +%s%N")),
        ], "psql")

    def _beside_a_client(self, section, fifo_name, uncontended, cases, client):
        """Uncontended runs, then handoffs through a FIFO, of flockrun and of the engine's own
        client doing the same by hand (its cases' names start with `client`). `cases` are
        (who, holder(name, hold), waiter(name)): the holder runs the shell snippet `hold`
        while it holds, the waiter prints the time once it holds."""
        runs = self.n(100, 5)
        for who, cmd in uncontended:
            start = time.perf_counter()
            for _ in range(runs):
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            self.record(section, f"uncontended: {who} ({runs} runs)", ms((time.perf_counter() - start) / runs))
        samples = self.n(60, 3)
        fifo = self.tmp / fifo_name
        os.mkfifo(fifo)
        hold = f"echo ready; read x < {fifo}; date +%s%N"
        values = {who: [] for who, _, _ in cases}
        for i in range(samples):
            for k, (who, holder, waiter) in enumerate(cases):
                name = f"h-{k}-{i}"
                h = subprocess.Popen(holder(name, hold), stdout=subprocess.PIPE, text=True)
                assert h.stdout.readline().strip() == "ready", who
                w = subprocess.Popen(waiter(name), stdout=subprocess.PIPE, text=True)
                time.sleep(0.2)  # let the waiter start waiting
                with open(fifo, "w") as release:
                    release.write("go\n")
                end = int(h.stdout.readline())
                h.wait()
                start = int(w.stdout.readline())
                w.wait()
                values[who].append((start - end) / 1e6)
        theirs = statistics.median(next(v for who, v in values.items() if who.startswith(client)))
        for who, _, _ in cases:
            p50 = statistics.median(values[who])
            value = f"p50 {p50:.2f} ms, p90 {pct(values[who], 90):.2f} ms"
            if who.startswith(client):
                self.record(section, f"handoff: {who}", value)
            else:
                self.record(section, f"handoff: {who}", value, f"p50 no slower than {theirs_name(client)}",
                            p50 <= theirs)
        os.unlink(fifo)

    # 2d. the Redis kind beside redis-cli doing SET NX by hand, on a server started by the
    # benchmark on loopback (no persistence, default settings: no keyspace notifications)
    def redis(self):
        if not (shutil.which("redis-server") and shutil.which("redis-cli")):
            self.failures.append("Redis is needed (apt-get install redis-server redis-tools)")
            return
        server = RedisServer(self.tmp)
        try:
            self._redis(server)
        finally:
            server.stop()

    def _redis(self, server):
        fr = self.flockrun
        url = lambda name: f"redis://127.0.0.1:{server.port}/{name}"
        cli = f"redis-cli -p {server.port}"
        # What scripts write by hand: SET NX PX, the command, DEL.
        by_hand = lambda name, cmd: ["sh", "-c", f"[ \"$({cli} SET flockrun:{name} me NX PX 60000)\" = OK ] "
                                     f"&& {{ {cmd}; {cli} DEL flockrun:{name} >/dev/null; }}"]
        # A waiter that polls: SET NX in a loop with no pause, the fastest a script can be
        # (and a load on the server: one connection per try).
        polling = lambda name: ["sh", "-c", f"until [ \"$({cli} SET flockrun:{name} w NX PX 60000)\" = OK ]; "
                                f"do :; done; date +%s%N; {cli} DEL flockrun:{name} >/dev/null"]
        self._beside_a_client("redis", "redis-release", [
            ("flockrun exec redis://…/NAME -- true", [fr, "exec", url("u1"), "--", "true"]),
            ("redis-cli SET NX PX, true, redis-cli DEL", by_hand("u2", "true")),
        ], [
            ("flockrun exec", lambda n, hold: [fr, "exec", url(n), "--", "sh", "-c", hold],
             lambda n: [fr, "exec", url(n), "--", "date", "+%s%N"]),
            ("redis-cli SET NX loop, no pause", lambda n, hold: by_hand(n, hold), polling),
        ], "redis-cli")

    # 3. 8 processes × 200 exec on one lock, incrementing a counter
    def contention(self):
        procs, each = 8, self.n(200, 10)
        def run(tool_cmd, kind):
            counter = self.tmp / f"counter-{kind}"
            counter.write_text("0\n")
            body = f"n=$(cat {counter}); echo $((n+1)) > {counter}"
            script = f"for i in $(seq {each}); do {tool_cmd} sh -c '{body}'; done"
            start = time.perf_counter()
            ps = [subprocess.Popen(["bash", "-c", script]) for _ in range(procs)]
            codes = [p.wait() for p in ps]
            took = time.perf_counter() - start
            count = int(counter.read_text())
            lost = procs * each - count
            if lost or any(codes):
                self.failures.append(f"contention {kind}: {lost} lost updates, exit codes {codes}")
            return took, lost
        f, f_lost = run(f"flock {self.lock('c1')}", "flock")
        r, r_lost = run(f"{self.flockrun} exec {self.lock('c2')} --", "kernel")
        self.record("contention", f"flock(1): {procs}×{each}", f"{f:.2f} s, {f_lost} lost")
        self.record("contention", f"flockrun exec: {procs}×{each}", f"{r:.2f} s, {r_lost} lost",
                    "0 lost, ≤ 1.2× flock(1)", r_lost == 0 and r <= 1.2 * f)
        for kind, cmd in [("sqlite", f"{self.flockrun} write {self.lock('c3')} --"),
                          ("soft", f"{self.flockrun} exec --soft {self.lock('c4')} --")]:
            t, lost = run(cmd, kind)
            self.record("contention", f"flockrun {kind}: {procs}×{each}", f"{t:.2f} s, {lost} lost", "0 lost", lost == 0)

    # 4. a writer behind a stream of overlapping readers
    READER_HOLD, READER_EVERY = 0.2, 0.1

    def _writer_behind_readers(self, options):
        """Seconds until a writer got in behind readers arriving every READER_EVERY s, each
        holding READER_HOLD s (so readers always overlap), and the bound it should meet."""
        hold, every = self.READER_HOLD, self.READER_EVERY
        lock = self.lock("rw-" + "-".join(options).replace("-", ""))
        warmup = self.n(0.5, 0.3)
        readers, writer, launched = [], None, None
        start = time.monotonic()
        while writer is None or writer.poll() is None:
            if time.monotonic() - start > 10:
                self.failures.append(f"writer preference {options}: the writer never got in (10 s)")
                break
            readers.append(subprocess.Popen([self.flockrun, "read", *options, lock, "--", "sleep", str(hold)]))
            if writer is None and time.monotonic() - start >= warmup:
                launched = time.time_ns()
                writer = subprocess.Popen([self.flockrun, "write", *options, lock, "--", "date", "+%s%N"],
                                          stdout=subprocess.PIPE, text=True)
            time.sleep(every)
        got_in = int(writer.stdout.readline() or 0)
        writer.wait()
        for r in readers:
            r.wait()
        return (got_in - launched) / 1e9, hold + 0.05

    def writer_preference(self):
        waited, bound = self._writer_behind_readers([])
        self.record("writer preference",
                    f"flockrun write behind readers holding {self.READER_HOLD:g} s, one every {self.READER_EVERY:g} s",
                    f"got in after {waited * 1000:.0f} ms", f"≤ {bound * 1000:.0f} ms", waited <= bound)

    # 5. --timeout precision
    def timeout_precision(self):
        lock = self.lock("t")
        holder = subprocess.Popen([self.flockrun, "exec", lock, "--", "sh", "-c", "echo ready; read x"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready"
        def measure(cmd):
            values = []
            for _ in range(self.n(10, 2)):
                start = time.perf_counter()
                code = subprocess.run(cmd, stderr=subprocess.DEVNULL).returncode
                values.append(time.perf_counter() - start)
                assert code != 0
            return values
        fr = measure([self.flockrun, "exec", "-w", "0.3", lock, "true"])
        fl = measure(["flock", "-w", "0.3", lock, "true"])
        holder.stdin.close()
        holder.wait()
        self.record("timeout", "flock(1) -w 0.3", f"{min(fl):.3f}–{max(fl):.3f} s")
        self.record("timeout", "flockrun -w 0.3", f"{min(fr):.3f}–{max(fr):.3f} s", "0.30–0.35 s",
                    min(fr) >= 0.30 and max(fr) <= 0.35)

    # 6. peak memory while holding
    def memory(self):
        def hwm(cmd):
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().strip() == "ready"
            status = Path(f"/proc/{p.pid}/status").read_text()
            p.stdin.close()
            p.wait()
            kib = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:"))
            return kib / 1024
        hold = ["sh", "-c", "echo ready; read x"]
        for what, cmd in [
            ("flock(1)", ["flock", self.lock("m0"), *hold]),
            ("flockrun exec", [self.flockrun, "exec", self.lock("m1"), "--", *hold]),
            ("flockrun write", [self.flockrun, "write", self.lock("m2"), "--", *hold]),
            ("flockrun exec --soft", [self.flockrun, "exec", "--soft", self.lock("m3"), "--", *hold]),
        ]:
            mib = hwm(cmd)
            if what.startswith("flockrun"):
                self.record("memory", f"{what}: peak RSS while holding", f"{mib:.1f} MiB", "≤ 4 MiB", mib <= 4)
            else:
                self.record("memory", f"{what}: peak RSS while holding", f"{mib:.1f} MiB")

    # 7. status with many unrelated locks held
    def status_time(self):
        count = self.n(1000, 50)
        many = subprocess.Popen([sys.executable, "-c", PY_MANY_LOCKS, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert many.stdout.readline().strip() == "ready"
        lock = self.lock("s")
        Path(lock).touch()
        def timed():
            values = []
            for _ in range(self.n(20, 2)):
                start = time.perf_counter()
                subprocess.run([self.flockrun, "status", lock], stdout=subprocess.DEVNULL)
                values.append(time.perf_counter() - start)
            return statistics.median(values)
        free = timed()
        holder = subprocess.Popen([self.flockrun, "exec", lock, "--", "sh", "-c", "echo ready; read x"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "ready"
        held = timed()
        holder.stdin.close()
        holder.wait()
        many.stdin.close()
        many.wait()
        self.record("status", f"status, lock free, {count} unrelated locks held", f"p50 {free * 1000:.1f} ms", "≤ 50 ms", free <= 0.05)
        self.record("status", f"status, lock held, {count} unrelated locks held", f"p50 {held * 1000:.1f} ms", "≤ 50 ms", held <= 0.05)


class Etcd:
    """A one-member etcd on free loopback ports, in a directory of the benchmark's; with
    `tls`, it serves clients over TLS only and wants client certificates (made with
    openssl into the same directory)."""

    def __init__(self, tmp, name, tls=False):
        import socket
        self.name, self.tls = name, tls
        self.scheme = "etcds" if tls else "etcd"
        self.dir = Path(tmp) / f"etcd-{name}"
        self.dir.mkdir()
        socks = [socket.socket() for _ in range(2)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        self.client, peer = (sock.getsockname()[1] for sock in socks)
        for sock in socks:
            sock.close()
        scheme = "https" if tls else "http"
        client_url, peer_url = f"{scheme}://127.0.0.1:{self.client}", f"http://127.0.0.1:{peer}"
        extra = []
        if tls:
            self._certificates()
            d = self.dir
            extra = ["--cert-file", str(d / "member.pem"), "--key-file", str(d / "member-key.pem"),
                     "--client-cert-auth", "--trusted-ca-file", str(d / "ca.pem")]
        self.log = open(self.dir / "etcd.log", "w")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "bench", "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"bench={peer_url}", *extra],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        health = ["etcdctl", "--endpoints", self.endpoint(), *self.client_args(), "endpoint", "health"]
        while True:  # readiness: etcd's own health answer
            if subprocess.run(health, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, ETCDCTL_API="3")).returncode == 0:
                break
            if time.monotonic() > deadline:
                sys.exit(f"bench: etcd ({self.name}) did not become healthy")
            time.sleep(0.05)

    def _certificates(self):
        """A CA, a member certificate for 127.0.0.1 and a client certificate (EC P-256)."""
        d = self.dir
        def run(*args):
            subprocess.run(["openssl", *args], check=True, cwd=d,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench CA")
        for who, san in (("member", "IP:127.0.0.1"), ("client", "DNS:client")):
            run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{who}-key.pem", "-out", f"{who}.csr", "-subj", f"/CN={who}")
            (d / f"{who}.ext").write_text(
                f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
            run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")

    def client_args(self):
        if not self.tls:
            return []
        d = self.dir
        return ["--cacert", str(d / "ca.pem"), "--cert", str(d / "client.pem"),
                "--key", str(d / "client-key.pem")]

    def endpoint(self):
        return f"127.0.0.1:{self.client}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


class PostgresServer:
    """A PostgreSQL cluster made with initdb in a directory of the benchmark's, run as user
    postgres (initdb refuses root) on a free loopback port, trusting local connections."""

    @staticmethod
    def bin_dir():
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                          key=lambda p: int(p.parent.parent.name))
        return versions[-1].parent if versions else None

    def __init__(self, tmp):
        import pwd
        import socket
        self.bin = self.bin_dir()
        user = pwd.getpwnam("postgres")
        os.chmod(tmp, 0o755)
        self.dir = Path(tmp) / "pg"
        self.dir.mkdir()
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        data = self.dir / "data"
        subprocess.run([*self.as_postgres, str(self.bin / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "--no-sync"], check=True, stdout=subprocess.DEVNULL)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.dir}'\n")
        self.data = data
        subprocess.run([*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(data), "-l",
                        str(self.dir / "log"), "-w", "start"], check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run([*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "-w", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class RedisServer:
    """A redis-server on a free loopback port, no persistence, its files in the benchmark's
    directory."""

    def __init__(self, tmp):
        import socket
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        ping = ["redis-cli", "-p", str(self.port), "PING"]
        while subprocess.run(ping, capture_output=True, text=True).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def venv_python(version=PY_FILELOCK):
    venv = ROOT / "target" / f"bench-venv-filelock-{version}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"filelock=={version}"], check=True)
        (venv / ".installed").write_text(version)
    return str(python)


def build_c(source, name):
    """benches/SOURCE, static, as target/NAME (rebuilt when the source is newer)."""
    source = ROOT / "benches" / source
    binary = ROOT / "target" / name
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-static", "-o", str(binary), str(source)], check=True)
    return str(binary)


def build(profile):
    args = ["cargo", "build", "--locked", "--quiet"] + (["--release"] if profile == "release" else [])
    subprocess.run(args, cwd=ROOT, check=True)
    found = sorted(ROOT.glob(f"target/*/{profile}/flockrun")) + sorted(ROOT.glob(f"target/{profile}/flockrun"))
    return str(max(found, key=lambda p: p.stat().st_mtime))


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.machine())
    mem = next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    return f"{os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB, Linux {platform.release()}"


# Kept beside the table: what a reader of its rows would ask about.
UNCONTENDED_NOTE = [
    "## Uncontended exec: before and after issue 18",
    "",
    "Before (flockrun 0.1.0 as of the issue-17 run, a shell loop of 500 runs, the same VM):",
    "`flockrun exec LOCK -- true` took 1.16–1.21× of `flock LOCK true`; callgrind counted",
    "635 k instructions in flockrun's own process per run, perf 190 page faults. It did a scan of `/proc/self/fd` (a `statx` per",
    "descriptor) before the first try, reads of `/proc/self/stat` and `/proc/self/status`",
    "after it, five `statx` of the lock, clap's parse of the whole command tree, std's",
    "runtime start-up (a read of `/proc/self/maps`, a signal stack) and std's fork with a",
    "socketpair handshake.",
    "",
    "After: the table above, measured by `benches/repeat.c` (posix_spawn in a loop, so no",
    "shell fork per run blurs the difference) in 7 interleaved rounds, the best round of each.",
    "Now 84 k instructions (a third of them glibc's static start-up, as in the C floor) and",
    "101 page faults per run (the C floor: 89). An uncontended run makes no `/proc` read of its own",
    "(glibc's static start-up reads the `/proc/self/exe` link, as it does in the C floor), no",
    "descriptor scan; nesting and holder lookups happen only when the first try finds the",
    "lock busy. COMMAND starts through a vfork-style clone on a stack that is not zeroed",
    "(zeroing its 64 KiB had been 44 % of the instructions left). The binary is built",
    "position-dependent, which saves the start-up self-relocation of a static PIE (about",
    "5,900 relocations and 24 page faults). What is left between flockrun and the floor is",
    "the page faults of a 7 MB binary (5 MB before rustls came in with issue 19) and the child resetting every signal disposition",
    "before exec.",
    "",
    "The ratios move by up to a tenth from one run to the next on this 2-core VM (the same",
    "binaries; the C floor's own ratio to flock(1) went from 0.69 to 0.81 in three runs).",
    "",
    "## Kernel handoff: a tie with flock(1)",
    "",
    "Both waiters sleep in the same kernel queue and, once woken, start the same dynamically",
    "linked `date`, which is most of the 1.3–1.5 ms. After the wake flockrun makes one `statx`",
    "of the lock (to notice a lock file replaced while it waited) and a vfork-style clone,",
    "flock(1) a fork. The difference of the two p50s has had either sign from run to run on",
    "this VM, within a tenth of a millisecond, so the verdict of \"no slower\" in one run is",
    "decided by noise; 100 interleaved samples do not resolve a tie.",
    "",
    "## etcd handoff: before and after issue 19",
    "",
    "Before: 7.4 ms against `etcdctl lock`'s 5.7 ms. A waiter watched the key ahead of it and,",
    "when the watch reported the deletion, asked the gateway for the queue again before it",
    "started COMMAND: one more round trip through the JSON gateway. Now a waiter next in",
    "line watches the whole queue from the revision it looked at and takes the deletion of",
    "the only key ahead as the lock won (the deletion of its own key, in the same ordered",
    "stream, as the lock lost). The samples of the two tools are interleaved, and TLS with",
    "client certificates is measured beside etcdctl over TLS.",
    "",
    "## Across NFS clients",
    "",
    "The NFS rows come from the real-NFS bed of the tests (`tests/helpers/nfsbed.py`): an NFS",
    "server and two NFS clients, each a virtual machine running Debian's 6.1 kernel under qemu,",
    "NFSv4.2 with the server's lease at 15 s. This machine's `/dev/kvm` cannot run a stock",
    "kernel, so the machines run under software emulation: every process start and NFS round",
    "trip in them is slower than on real hardware, by a similar factor for every tool, and",
    "the absolute figures mean little. A handoff is timed by two machines' clocks (holder on",
    "client A, waiter on client B), set from this host's when they boot; they agree within",
    "about 10 ms. The load of a waiting process is the server's count of RPCs",
    "(`/proc/net/rpc/nfsd`) over 10 s while it waits, less the same window with the holder",
    "alone (its own renewals). py-filelock polls every 50 ms; a waiting flockrun sleeps on",
    "its holder's release signal (an OFD lock on the holder's marker, or on `LOCK.wake` for a",
    "soft read/write lock: README.md, \"What flockrun does on NFS\"), and a kernel-lock waiter",
    "in the kernel (NFSv4's CB_NOTIFY_LOCK wakes it). Before that change, on the same bed, a",
    "waiting flockrun cost the server 88 RPC/s (`--soft`), 89 (lease) and 411 (soft",
    "read/write writer), where py-filelock cost 47, 46 and 53.",
    "",
]


def write_report(bench, flockrun):
    versions = {
        "flockrun": sh([flockrun, "--version"]).removeprefix("flockrun "),
        "flock(1)": sh(["flock", "--version"]),
        "py-filelock": f"{PY_FILELOCK} and {PY_FILELOCK_V1}",
        "etcd": sh(["etcd", "--version"]).splitlines()[0].removeprefix("etcd Version: "),
        "PostgreSQL": sh(["psql", "--version"]).split()[-1],
        "Redis": sh(["redis-server", "--version"]).split()[2].removeprefix("v="),
        "Python": platform.python_version(),
    }
    lines = [
        "# Benchmarks",
        "",
        "flockrun beside util-linux flock(1), py-filelock, etcdctl lock, psql and redis-cli, measured in one run of",
        "`python3 benches/bench.py --write` (release build). Wall-clock times of real processes;",
        "see the script's docstring for how each figure is taken. Targets are SPEC §7's.",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {machine()}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| section | measurement | result | target | verdict |",
        "|---|---|---|---|---|",
    ]
    for section, what, value, target, verdict in bench.rows:
        lines.append(f"| {section} | {what} | {value} | {target} | {verdict} |")
    lines += ["", "Reproduce: `python3 benches/bench.py` (add `--write` to rewrite this file).", "",
              *UNCONTENDED_NOTE]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few iterations, for CI")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md")
    parser.add_argument("--only", metavar="STEP", help="run one section (uncontended, handoff, "
                        "soft_rw, lease_takeover, etcd, ...); not with --write")
    args = parser.parse_args()
    if args.only and args.write:
        sys.exit("bench: --write needs the full run")
    for tool in ("flock", "bash", "date", "sh", "etcd", "etcdctl", "gcc", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is needed")
    flockrun = build("debug" if args.smoke else "release")
    python = venv_python()
    with tempfile.TemporaryDirectory(prefix="flockrun-bench-") as tmp:
        bench = Bench(flockrun, python, args.smoke, tmp)
        for step in (bench.uncontended, bench.handoff, bench.slots, bench.soft_rw, bench.lease_takeover, bench.etcd,
                     bench.postgresql, bench.redis, bench.contention,
                     bench.writer_preference, bench.timeout_precision, bench.memory,
                     bench.status_time, bench.nfs):
            if args.only and step.__name__ != args.only:
                continue
            print(f"{step.__name__}:", flush=True)
            step()
    if args.write and not args.smoke:
        write_report(bench, flockrun)
    if bench.failures:
        sys.exit("bench: invariants broken: " + "; ".join(bench.failures))
    missed = [r for r in bench.rows if r[4] == "MISSED"]
    print(f"bench: {len(bench.rows)} figures, {len(missed)} targets missed" +
          (" (smoke run: targets not judged)" if args.smoke else ""))


if __name__ == "__main__":
    main()
