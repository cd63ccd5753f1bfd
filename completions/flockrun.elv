
use builtin;
use str;

set edit:completion:arg-completer[flockrun] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'flockrun'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'flockrun'= {
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand exec 'Wait for an exclusive lock on LOCK, run COMMAND, then release the lock'
            cand try 'Run COMMAND under the lock only if LOCK is free; if it is busy, exit 75 at once'
            cand read 'Take a shared reader lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; readers run together, a writer waits for them'
            cand write 'Take the exclusive writer lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; a waiting writer keeps new readers out'
            cand status 'Show whether each LOCK is held, by whom and since when, and who waits; exit 0 when all are free, 1 when any is held, 66 when one cannot be inspected'
            cand flock 'Take util-linux flock(1)''s command line, exit statuses and messages (what flockrun does when started through a link named flock)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'flockrun;exec'= {
            cand -w 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --timeout 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --wait 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --ttl 'The lease''s time to live in seconds: for an etcd:// or postgresql:// LOCK, whole seconds [default: 10; at least 3 for PostgreSQL]; for a redis:// LOCK, 1 or more with fractions allowed [default: 10], renewed every TTL/3; and with --soft, 0.1 or more with fractions allowed as py-filelock''s `lease_duration`, where it makes the lock a soft lease (py-filelock''s `SoftFileLease`) that a crashed holder''s host cannot keep forever. flockrun renews a soft lease every TTL/3 and an etcd lease every TTL/4; if it dies, the lock frees itself after about TTL. Every user of a soft lease must give the same TTL'
            cand --slots 'Make LOCK a semaphore of N slots (1 to 1024): at most N holders at once, and COMMAND learns which slot it holds from `FLOCKRUN_SLOT` (0 to N-1) and N from `FLOCKRUN_SLOTS`. Kernel and --fcntl locks: slot i is byte i of LOCK (an OFD lock); --soft: one marker LOCK.slot-i per slot; etcd: the N oldest keys under NAME hold. Every user of a semaphore must give the same N'
            cand -E 'Exit status when the lock is busy or the wait times out (0-255)'
            cand --conflict-exit-code 'Exit status when the lock is busy or the wait times out (0-255)'
            cand -c 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --command 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --mode 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]'
            cand --run-limit 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count'
            cand --kill-after 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]'
            cand --fd 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends'
            cand --cacert 'TLS: the CA bundle (PEM) that signs the servers'' certificates [default: etcd: ETCDCTL_CACERT; else the system''s CAs]'
            cand --cert 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]'
            cand --key 'TLS: the client certificate''s private key (PEM) [default: etcd: ETCDCTL_KEY]'
            cand --user 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH'
            cand --password-file 'The user''s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]'
            cand -n 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --nonblock 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --nb 'Do not wait if the lock is busy (same as --timeout 0)'
            cand -s 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s'
            cand --shared 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s'
            cand --fcntl 'Use a Linux open-file-description lock (`F_OFD_SETLK`) instead of flock(2), like util-linux flock --fcntl. An exclusive one needs write permission on LOCK'
            cand --soft 'Use a marker-file lock (the soft-lock protocol of py-filelock) for filesystems where kernel locks do not work; a crashed holder''s marker is reclaimed once its pid is provably gone'
            cand -o 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies'
            cand --close 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies'
            cand -F 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock'
            cand --no-fork 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock'
            cand --replace 'If a process on this host holds LOCK (a slot of it, with --slots: the one held longest), stop it (SIGTERM, SIGKILL after --kill-after) and take the lock once it has let go. The holder is the one `flockrun status` names; a holder on another host or one this user may not signal is not stopped (exit 75)'
            cand --refuse-host-local 'Refuse (exit 65) instead of warning when LOCK is on a filesystem that keeps kernel locks to this host (FUSE such as sshfs, NFS mounted nolock or with `local_lock`, SMB mounted nobrl), where a process on another host could hold the same kernel lock at the same time. Applies to the kernel and --fcntl kinds'
            cand -v 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand --verbose 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand -q 'No message when the lock is busy or the wait timed out'
            cand --quiet 'No message when the lock is busy or the wait timed out'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'flockrun;try'= {
            cand --ttl 'The lease''s time to live in seconds: for an etcd:// or postgresql:// LOCK, whole seconds [default: 10; at least 3 for PostgreSQL]; for a redis:// LOCK, 1 or more with fractions allowed [default: 10], renewed every TTL/3; and with --soft, 0.1 or more with fractions allowed as py-filelock''s `lease_duration`, where it makes the lock a soft lease (py-filelock''s `SoftFileLease`) that a crashed holder''s host cannot keep forever. flockrun renews a soft lease every TTL/3 and an etcd lease every TTL/4; if it dies, the lock frees itself after about TTL. Every user of a soft lease must give the same TTL'
            cand --slots 'Make LOCK a semaphore of N slots (1 to 1024): at most N holders at once, and COMMAND learns which slot it holds from `FLOCKRUN_SLOT` (0 to N-1) and N from `FLOCKRUN_SLOTS`. Kernel and --fcntl locks: slot i is byte i of LOCK (an OFD lock); --soft: one marker LOCK.slot-i per slot; etcd: the N oldest keys under NAME hold. Every user of a semaphore must give the same N'
            cand -E 'Exit status when the lock is busy or the wait times out (0-255)'
            cand --conflict-exit-code 'Exit status when the lock is busy or the wait times out (0-255)'
            cand -c 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --command 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --mode 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]'
            cand --run-limit 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count'
            cand --kill-after 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]'
            cand --fd 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends'
            cand --cacert 'TLS: the CA bundle (PEM) that signs the servers'' certificates [default: etcd: ETCDCTL_CACERT; else the system''s CAs]'
            cand --cert 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]'
            cand --key 'TLS: the client certificate''s private key (PEM) [default: etcd: ETCDCTL_KEY]'
            cand --user 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH'
            cand --password-file 'The user''s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]'
            cand -s 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s'
            cand --shared 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s'
            cand --fcntl 'Use a Linux open-file-description lock (`F_OFD_SETLK`) instead of flock(2), like util-linux flock --fcntl. An exclusive one needs write permission on LOCK'
            cand --soft 'Use a marker-file lock (the soft-lock protocol of py-filelock) for filesystems where kernel locks do not work; a crashed holder''s marker is reclaimed once its pid is provably gone'
            cand -o 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies'
            cand --close 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies'
            cand -F 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock'
            cand --no-fork 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock'
            cand --replace 'If a process on this host holds LOCK (a slot of it, with --slots: the one held longest), stop it (SIGTERM, SIGKILL after --kill-after) and take the lock once it has let go. The holder is the one `flockrun status` names; a holder on another host or one this user may not signal is not stopped (exit 75)'
            cand --refuse-host-local 'Refuse (exit 65) instead of warning when LOCK is on a filesystem that keeps kernel locks to this host (FUSE such as sshfs, NFS mounted nolock or with `local_lock`, SMB mounted nobrl), where a process on another host could hold the same kernel lock at the same time. Applies to the kernel and --fcntl kinds'
            cand -v 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand --verbose 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand -q 'No message when the lock is busy or the wait timed out'
            cand --quiet 'No message when the lock is busy or the wait timed out'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'flockrun;read'= {
            cand -w 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --timeout 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --wait 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --ttl 'With --soft: the stale threshold in seconds, 0.1 or more, fractions allowed as py-filelock''s `stale_threshold` [default: 90, py-filelock''s]: a participant whose records stay unrenewed this long is evicted. Give every user of the lock the same one. For a postgresql:// LOCK: the lease in whole seconds, 3 or more [default: 10]'
            cand --layout 'With --soft: the on-disk layout to take: v1 (py-filelock 3.27-3.32), v2 (4.0 and later), or both, v1 first, which keeps out Python peers of either age [default: both]'
            cand --slots 'Not for reader/writer locks: accepted only to be refused with a clear message'
            cand -E 'Exit status when the lock is busy or the wait times out (0-255)'
            cand --conflict-exit-code 'Exit status when the lock is busy or the wait times out (0-255)'
            cand -c 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --command 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --mode 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]'
            cand --run-limit 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count'
            cand --kill-after 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]'
            cand --fd 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends'
            cand -n 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --nonblock 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --nb 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --soft 'Use py-filelock''s `SoftReadWriteLock` (marker files and a generation log beside LOCK) instead of SQLite, for filesystems whose locks do not reach every host (NFS, SMB, FUSE). A holder renews its records every TTL/3; one that stops is evicted after the TTL'
            cand -v 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand --verbose 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand -q 'No message when the lock is busy or the wait timed out'
            cand --quiet 'No message when the lock is busy or the wait timed out'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'flockrun;write'= {
            cand -w 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --timeout 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --wait 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes'
            cand --ttl 'With --soft: the stale threshold in seconds, 0.1 or more, fractions allowed as py-filelock''s `stale_threshold` [default: 90, py-filelock''s]: a participant whose records stay unrenewed this long is evicted. Give every user of the lock the same one. For a postgresql:// LOCK: the lease in whole seconds, 3 or more [default: 10]'
            cand --layout 'With --soft: the on-disk layout to take: v1 (py-filelock 3.27-3.32), v2 (4.0 and later), or both, v1 first, which keeps out Python peers of either age [default: both]'
            cand --slots 'Not for reader/writer locks: accepted only to be refused with a clear message'
            cand -E 'Exit status when the lock is busy or the wait times out (0-255)'
            cand --conflict-exit-code 'Exit status when the lock is busy or the wait times out (0-255)'
            cand -c 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --command 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)'
            cand --mode 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]'
            cand --run-limit 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count'
            cand --kill-after 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]'
            cand --fd 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends'
            cand -n 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --nonblock 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --nb 'Do not wait if the lock is busy (same as --timeout 0)'
            cand --soft 'Use py-filelock''s `SoftReadWriteLock` (marker files and a generation log beside LOCK) instead of SQLite, for filesystems whose locks do not reach every host (NFS, SMB, FUSE). A holder renews its records every TTL/3; one that stops is evicted after the TTL'
            cand -v 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand --verbose 'Say on stderr how long the wait took and who held the lock meanwhile'
            cand -q 'No message when the lock is busy or the wait timed out'
            cand --quiet 'No message when the lock is busy or the wait timed out'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'flockrun;status'= {
            cand --kind 'Inspect LOCK as this kind instead of detecting it from the kernel''s locks and the file''s content'
            cand --cacert 'TLS: the CA bundle (PEM) that signs the servers'' certificates [default: etcd: ETCDCTL_CACERT; else the system''s CAs]'
            cand --cert 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]'
            cand --key 'TLS: the client certificate''s private key (PEM) [default: etcd: ETCDCTL_KEY]'
            cand --user 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH'
            cand --password-file 'The user''s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]'
            cand --json 'Print one JSON document (schema in the README and the man page)'
            cand -v 'Also print the kernel''s lock lines for each LOCK'
            cand --verbose 'Also print the kernel''s lock lines for each LOCK'
            cand -q 'Print nothing; only the exit status tells'
            cand --quiet 'Print nothing; only the exit status tells'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'flockrun;flock'= {
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'flockrun;help'= {
            cand exec 'Wait for an exclusive lock on LOCK, run COMMAND, then release the lock'
            cand try 'Run COMMAND under the lock only if LOCK is free; if it is busy, exit 75 at once'
            cand read 'Take a shared reader lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; readers run together, a writer waits for them'
            cand write 'Take the exclusive writer lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; a waiting writer keeps new readers out'
            cand status 'Show whether each LOCK is held, by whom and since when, and who waits; exit 0 when all are free, 1 when any is held, 66 when one cannot be inspected'
            cand flock 'Take util-linux flock(1)''s command line, exit statuses and messages (what flockrun does when started through a link named flock)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'flockrun;help;exec'= {
        }
        &'flockrun;help;try'= {
        }
        &'flockrun;help;read'= {
        }
        &'flockrun;help;write'= {
        }
        &'flockrun;help;status'= {
        }
        &'flockrun;help;flock'= {
        }
        &'flockrun;help;help'= {
        }
    ]
    $completions[$command]
}
