#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into fuzz/corpus/<target>/: real samples of
what the parsers read (markers as py-filelock and flockrun write them, /proc/locks and
mountinfo lines, etcd gateway replies), from which the fuzzer mutates. Run once before the
first fuzzing; the committed corpora already include these and what the fuzzer added."""
import hashlib
import os
import sqlite3
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
TOKEN = "0123456789abcdef0123456789abcdef"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.join(ROOT, target)
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def chunked(body, pieces=3):
    size = max(1, len(body) // pieces)
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return "".join(f"{len(p):x}\r\n{p}\r\n" for p in parts) + "0\r\n\r\n"


# Soft markers: protocol 1 (SoftFileLock 3.x/4.0), with a start token, protocol 2 records
# (exclusive and lease), py-filelock's strict sentinel, junk.
for m in [
    "4242\nweb-1\n",
    "4242\nweb-1\n1733572800123456\n",
    "filelock/2\npid=4242\nhost=web-1\nmode=exclusive\nstart=1733572800123456\n",
    "filelock/2\npid=4242\nhost=web-1\nmode=lease\ntoken=" + TOKEN + "\nduration=1.5\nstart=17\n",
    "filelock/2\npid=7\nhost=h\nmode=lease\ntoken=t\nduration=2e+01\n",
    "filelock/2\npid=7\nhost=h\nmode=shared\n",
    "1\nfilelock-strict-v1\x00\n0\n",
    "",
]:
    put("soft_marker", m)

# Soft read/write: v1 markers, v2 generation records and holder records, generation names.
for r in [
    f"{TOKEN}\n18262\nvm\n",
    f"{TOKEN}\n1\nvm\n\n\n",
    "filelock-rw/1\ngeneration=0\n",
    f"filelock-rw/1\ngeneration=2\nwriter={TOKEN}\nreader={TOKEN}\n",
    f"filelock-rw/1\ntoken={TOKEN}\npid=4242\nhost=web-1\nlease=90.0\nnonce={TOKEN}\n",
    "00000000000000000042",
]:
    put("soft_rw_record", r)

# Files at a read/write lock's path: empty, py-filelock's empty database, a database with
# a table, WAL mode, not SQLite at all.
put("sqlite_file", b"")
with tempfile.TemporaryDirectory() as tmp:
    for n, statements in enumerate([
        [],
        ["CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"],
        ["PRAGMA journal_mode=WAL", "CREATE TABLE w(x)"],
    ]):
        path = os.path.join(tmp, f"{n}.db")
        db = sqlite3.connect(path)
        for s in statements:
            db.execute(s)
        db.commit()
        if not statements:
            db.execute("PRAGMA user_version=0")
            db.execute("VACUUM")
        db.close()
        with open(path, "rb") as f:
            data = f.read()
        put("sqlite_file", data or b"SQLite format 3\x00" + bytes(84))
put("sqlite_file", b"not a database\n")

# etcd gateway replies: a range with flockrun's and etcdctl's keys, an error, a watch.
import base64
def b64(s):
    return base64.b64encode(s.encode()).decode()
owner = '{"host":"web-1","pid":4242,"command":"./job.sh","since":"2026-12-07T10:00:00Z","by":"flockrun"}'
rng = ('{"header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"2"},"kvs":['
       '{"key":"' + b64("job/694d8c3a1f2e0b01") + '","create_revision":"7","mod_revision":"7",'
       '"version":"1","value":"' + b64(owner) + '","lease":"7587883457018461953"},'
       '{"key":"' + b64("job/694d8c3a1f2e0b02") + '","create_revision":"8","mod_revision":"8",'
       '"version":"1","lease":"7587883457018461954"}],"count":"2"}')
error = '{"error":"etcdserver: requested lease not found","code":5,"message":"etcdserver: requested lease not found"}'
watch = ('{"result":{"header":{"revision":"9"},"created":true}}\n'
         '{"result":{"header":{"revision":"10"},"events":[{"type":"DELETE","kv":{"key":"' + b64("job/1") + '","mod_revision":"10"}}]}}\n')
for status, body in [("200 OK", rng), ("404 Not Found", error), ("503 Service Unavailable", "upstream")]:
    put("etcd_reply", f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}")
put("etcd_reply", f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunked(rng)}")
put("etcd_reply", f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunked(watch)}")
put("etcd_reply", f"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n{rng}")
put("etcd_reply", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{}\n\r\n0\r\nTrailer: x\r\n\r\n")

# Redis replies: the lock script's taken and busy answers, a renewal's, errors, a
# subscription's confirmations and a pushed message, nested and null values.
record = owner[:-1] + ',"token":"97b10387e8d3edd926ec66a207f8104c"}'
put("redis_reply", "*2\r\n:1\r\n:42\r\n")
put("redis_reply", f"*3\r\n:0\r\n${len(record)}\r\n{record}\r\n:9962\r\n")
put("redis_reply", "*3\r\n:0\r\n$6\r\ncron-7\r\n:-1\r\n:1\r\n:0\r\n$5\r\nthief\r\n")
put("redis_reply", "-NOPERM this user has no permissions to run the 'eval' command\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n")
put("redis_reply", "*3\r\n$9\r\nsubscribe\r\n$25\r\nflockrun-released:nightly\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$25\r\nflockrun-released:nightly\r\n$1\r\n1\r\n")
put("redis_reply", "$-1\r\n*-1\r\n*2\r\n*1\r\n$0\r\n\r\n*0\r\n$44\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n")

# /proc/locks and fdinfo: this machine's table, and the shapes the kernel prints.
for t in [
    "1: OFDLCK ADVISORY  READ -1 fe:00:5415684 201 201\n"
    "2: POSIX  ADVISORY  WRITE 4939 fe:00:745760 0 EOF\n"
    "3: FLOCK  ADVISORY  WRITE 5361 fe:00:5390633 0 EOF\n"
    "3: -> FLOCK  ADVISORY  WRITE 5370 fe:00:5390633 0 EOF\n"
    "4: LEASE  ACTIVE    READ 911 00:2a:33 0 EOF\n",
    "pos:\t0\nflags:\t0100002\nmnt_id:\t29\nino:\t5390633\nlock:\t1: FLOCK  ADVISORY  WRITE 5361 fe:00:5390633 0 EOF\n",
]:
    put("proc_locks", t)
try:
    with open("/proc/locks") as f:
        put("proc_locks", "".join(f.readlines()[:20]))
except OSError:
    pass

# mountinfo lines and a mountstats excerpt.
for t in [
    "29 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n",
    "41 29 0:38 / /mnt/nfs\\040share rw,relatime shared:20 - nfs4 10.0.0.1:/export rw,vers=4.2,"
    "rsize=1048576,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.2,local_lock=none,addr=10.0.0.1\n",
    "42 29 0:39 / /mnt/v3 rw - nfs 10.0.0.1:/export rw,vers=3,nolock,actimeo=60,local_lock=all\n",
    "/mnt/nfs share\ndevice 10.0.0.1:/export mounted on /mnt/nfs\\040share with fstype nfs4 statvers=1.1\n"
    "\tnfsv4:\tbm0=0xfdffbfff,bm1=0xf9be3e,acl=0x3,sessions,pnfs=not configured,lease_time=90,lease_expired=0\n",
]:
    put("mountinfo", t)
try:
    with open("/proc/self/mountinfo") as f:
        put("mountinfo", "".join(f.readlines()[:10]))
except OSError:
    pass

# /proc/PID/stat with awkward command names.
for t in [
    "4242 (job.sh) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 100\n",
    "4243 (a) (b) c) R 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0\n",
]:
    put("proc_stat", t)
with open("/proc/self/stat") as f:
    put("proc_stat", f.read())
print("seeds written under", os.path.normpath(ROOT), file=sys.stderr)
