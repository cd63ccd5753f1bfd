# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_flockrun_global_optspecs
    string join \n h/help V/version
end

function __fish_flockrun_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_flockrun_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_flockrun_using_subcommand
    set -l cmd (__fish_flockrun_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c flockrun -n "__fish_flockrun_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flockrun -n "__fish_flockrun_needs_command" -s V -l version -d 'Print version'
complete -c flockrun -n "__fish_flockrun_needs_command" -f -a "exec" -d 'Wait for an exclusive lock on LOCK, run COMMAND, then release the lock'
complete -c flockrun -n "__fish_flockrun_needs_command" -f -a "try" -d 'Run COMMAND under the lock only if LOCK is free; if it is busy, exit 75 at once'
complete -c flockrun -n "__fish_flockrun_needs_command" -f -a "read" -d 'Take a shared reader lock on LOCK (py-filelock\'s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; readers run together, a writer waits for them'
complete -c flockrun -n "__fish_flockrun_needs_command" -f -a "write" -d 'Take the exclusive writer lock on LOCK (py-filelock\'s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; a waiting writer keeps new readers out'
complete -c flockrun -n "__fish_flockrun_needs_command" -f -a "status" -d 'Show whether each LOCK is held, by whom and since when, and who waits; exit 0 when all are free, 1 when any is held, 66 when one cannot be inspected'
complete -c flockrun -n "__fish_flockrun_needs_command" -f -a "flock" -d 'Take util-linux flock(1)\'s command line, exit statuses and messages (what flockrun does when started through a link named flock)'
complete -c flockrun -n "__fish_flockrun_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s w -l timeout -l wait -d 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l ttl -d 'The lease\'s time to live in seconds: for an etcd:// or postgresql:// LOCK, whole seconds [default: 10; at least 3 for PostgreSQL]; for a redis:// LOCK, 1 or more with fractions allowed [default: 10], renewed every TTL/3; and with --soft, 0.1 or more with fractions allowed as py-filelock\'s `lease_duration`, where it makes the lock a soft lease (py-filelock\'s `SoftFileLease`) that a crashed holder\'s host cannot keep forever. flockrun renews a soft lease every TTL/3 and an etcd lease every TTL/4; if it dies, the lock frees itself after about TTL. Every user of a soft lease must give the same TTL' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l slots -d 'Make LOCK a semaphore of N slots (1 to 1024): at most N holders at once, and COMMAND learns which slot it holds from `FLOCKRUN_SLOT` (0 to N-1) and N from `FLOCKRUN_SLOTS`. Kernel and --fcntl locks: slot i is byte i of LOCK (an OFD lock); --soft: one marker LOCK.slot-i per slot; etcd: the N oldest keys under NAME hold. Every user of a semaphore must give the same N' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s E -l conflict-exit-code -d 'Exit status when the lock is busy or the wait times out (0-255)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s c -l command -d 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l mode -d 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l run-limit -d 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l kill-after -d 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l fd -d 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller\'s descriptor after COMMAND ends' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l cacert -d 'TLS: the CA bundle (PEM) that signs the servers\' certificates [default: etcd: ETCDCTL_CACERT; else the system\'s CAs]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l cert -d 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l key -d 'TLS: the client certificate\'s private key (PEM) [default: etcd: ETCDCTL_KEY]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l user -d 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l password-file -d 'The user\'s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s n -l nonblock -l nb -d 'Do not wait if the lock is busy (same as --timeout 0)'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s s -l shared -d 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l fcntl -d 'Use a Linux open-file-description lock (`F_OFD_SETLK`) instead of flock(2), like util-linux flock --fcntl. An exclusive one needs write permission on LOCK'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l soft -d 'Use a marker-file lock (the soft-lock protocol of py-filelock) for filesystems where kernel locks do not work; a crashed holder\'s marker is reclaimed once its pid is provably gone'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s o -l close -d 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s F -l no-fork -d 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l replace -d 'If a process on this host holds LOCK (a slot of it, with --slots: the one held longest), stop it (SIGTERM, SIGKILL after --kill-after) and take the lock once it has let go. The holder is the one `flockrun status` names; a holder on another host or one this user may not signal is not stopped (exit 75)'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -l refuse-host-local -d 'Refuse (exit 65) instead of warning when LOCK is on a filesystem that keeps kernel locks to this host (FUSE such as sshfs, NFS mounted nolock or with `local_lock`, SMB mounted nobrl), where a process on another host could hold the same kernel lock at the same time. Applies to the kernel and --fcntl kinds'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s v -l verbose -d 'Say on stderr how long the wait took and who held the lock meanwhile'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s q -l quiet -d 'No message when the lock is busy or the wait timed out'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s h -l help -d 'Print help'
complete -c flockrun -n "__fish_flockrun_using_subcommand exec" -s V -l version -d 'Print version'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l ttl -d 'The lease\'s time to live in seconds: for an etcd:// or postgresql:// LOCK, whole seconds [default: 10; at least 3 for PostgreSQL]; for a redis:// LOCK, 1 or more with fractions allowed [default: 10], renewed every TTL/3; and with --soft, 0.1 or more with fractions allowed as py-filelock\'s `lease_duration`, where it makes the lock a soft lease (py-filelock\'s `SoftFileLease`) that a crashed holder\'s host cannot keep forever. flockrun renews a soft lease every TTL/3 and an etcd lease every TTL/4; if it dies, the lock frees itself after about TTL. Every user of a soft lease must give the same TTL' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l slots -d 'Make LOCK a semaphore of N slots (1 to 1024): at most N holders at once, and COMMAND learns which slot it holds from `FLOCKRUN_SLOT` (0 to N-1) and N from `FLOCKRUN_SLOTS`. Kernel and --fcntl locks: slot i is byte i of LOCK (an OFD lock); --soft: one marker LOCK.slot-i per slot; etcd: the N oldest keys under NAME hold. Every user of a semaphore must give the same N' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s E -l conflict-exit-code -d 'Exit status when the lock is busy or the wait times out (0-255)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s c -l command -d 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l mode -d 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l run-limit -d 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l kill-after -d 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l fd -d 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller\'s descriptor after COMMAND ends' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l cacert -d 'TLS: the CA bundle (PEM) that signs the servers\' certificates [default: etcd: ETCDCTL_CACERT; else the system\'s CAs]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l cert -d 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l key -d 'TLS: the client certificate\'s private key (PEM) [default: etcd: ETCDCTL_KEY]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l user -d 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l password-file -d 'The user\'s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s s -l shared -d 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l fcntl -d 'Use a Linux open-file-description lock (`F_OFD_SETLK`) instead of flock(2), like util-linux flock --fcntl. An exclusive one needs write permission on LOCK'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l soft -d 'Use a marker-file lock (the soft-lock protocol of py-filelock) for filesystems where kernel locks do not work; a crashed holder\'s marker is reclaimed once its pid is provably gone'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s o -l close -d 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s F -l no-fork -d 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l replace -d 'If a process on this host holds LOCK (a slot of it, with --slots: the one held longest), stop it (SIGTERM, SIGKILL after --kill-after) and take the lock once it has let go. The holder is the one `flockrun status` names; a holder on another host or one this user may not signal is not stopped (exit 75)'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -l refuse-host-local -d 'Refuse (exit 65) instead of warning when LOCK is on a filesystem that keeps kernel locks to this host (FUSE such as sshfs, NFS mounted nolock or with `local_lock`, SMB mounted nobrl), where a process on another host could hold the same kernel lock at the same time. Applies to the kernel and --fcntl kinds'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s v -l verbose -d 'Say on stderr how long the wait took and who held the lock meanwhile'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s q -l quiet -d 'No message when the lock is busy or the wait timed out'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s h -l help -d 'Print help'
complete -c flockrun -n "__fish_flockrun_using_subcommand try" -s V -l version -d 'Print version'
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s w -l timeout -l wait -d 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l ttl -d 'With --soft: the stale threshold in seconds, 0.1 or more, fractions allowed as py-filelock\'s `stale_threshold` [default: 90, py-filelock\'s]: a participant whose records stay unrenewed this long is evicted. Give every user of the lock the same one. For a postgresql:// LOCK: the lease in whole seconds, 3 or more [default: 10]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l layout -d 'With --soft: the on-disk layout to take: v1 (py-filelock 3.27-3.32), v2 (4.0 and later), or both, v1 first, which keeps out Python peers of either age [default: both]' -r -f -a "v1\t''
v2\t''
both\t''"
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l slots -d 'Not for reader/writer locks: accepted only to be refused with a clear message' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s E -l conflict-exit-code -d 'Exit status when the lock is busy or the wait times out (0-255)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s c -l command -d 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l mode -d 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l run-limit -d 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l kill-after -d 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l fd -d 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller\'s descriptor after COMMAND ends' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s n -l nonblock -l nb -d 'Do not wait if the lock is busy (same as --timeout 0)'
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -l soft -d 'Use py-filelock\'s `SoftReadWriteLock` (marker files and a generation log beside LOCK) instead of SQLite, for filesystems whose locks do not reach every host (NFS, SMB, FUSE). A holder renews its records every TTL/3; one that stops is evicted after the TTL'
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s v -l verbose -d 'Say on stderr how long the wait took and who held the lock meanwhile'
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s q -l quiet -d 'No message when the lock is busy or the wait timed out'
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s h -l help -d 'Print help'
complete -c flockrun -n "__fish_flockrun_using_subcommand read" -s V -l version -d 'Print version'
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s w -l timeout -l wait -d 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l ttl -d 'With --soft: the stale threshold in seconds, 0.1 or more, fractions allowed as py-filelock\'s `stale_threshold` [default: 90, py-filelock\'s]: a participant whose records stay unrenewed this long is evicted. Give every user of the lock the same one. For a postgresql:// LOCK: the lease in whole seconds, 3 or more [default: 10]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l layout -d 'With --soft: the on-disk layout to take: v1 (py-filelock 3.27-3.32), v2 (4.0 and later), or both, v1 first, which keeps out Python peers of either age [default: both]' -r -f -a "v1\t''
v2\t''
both\t''"
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l slots -d 'Not for reader/writer locks: accepted only to be refused with a clear message' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s E -l conflict-exit-code -d 'Exit status when the lock is busy or the wait times out (0-255)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s c -l command -d 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l mode -d 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l run-limit -d 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l kill-after -d 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l fd -d 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller\'s descriptor after COMMAND ends' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s n -l nonblock -l nb -d 'Do not wait if the lock is busy (same as --timeout 0)'
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -l soft -d 'Use py-filelock\'s `SoftReadWriteLock` (marker files and a generation log beside LOCK) instead of SQLite, for filesystems whose locks do not reach every host (NFS, SMB, FUSE). A holder renews its records every TTL/3; one that stops is evicted after the TTL'
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s v -l verbose -d 'Say on stderr how long the wait took and who held the lock meanwhile'
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s q -l quiet -d 'No message when the lock is busy or the wait timed out'
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s h -l help -d 'Print help'
complete -c flockrun -n "__fish_flockrun_using_subcommand write" -s V -l version -d 'Print version'
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -l kind -d 'Inspect LOCK as this kind instead of detecting it from the kernel\'s locks and the file\'s content' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -l cacert -d 'TLS: the CA bundle (PEM) that signs the servers\' certificates [default: etcd: ETCDCTL_CACERT; else the system\'s CAs]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -l cert -d 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -l key -d 'TLS: the client certificate\'s private key (PEM) [default: etcd: ETCDCTL_KEY]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -l user -d 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH' -r
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -l password-file -d 'The user\'s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]' -r -F
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -l json -d 'Print one JSON document (schema in the README and the man page)'
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -s v -l verbose -d 'Also print the kernel\'s lock lines for each LOCK'
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -s q -l quiet -d 'Print nothing; only the exit status tells'
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flockrun -n "__fish_flockrun_using_subcommand status" -s V -l version -d 'Print version'
complete -c flockrun -n "__fish_flockrun_using_subcommand flock" -s V -l version -d 'Print version'
complete -c flockrun -n "__fish_flockrun_using_subcommand help; and not __fish_seen_subcommand_from exec try read write status flock help" -f -a "exec" -d 'Wait for an exclusive lock on LOCK, run COMMAND, then release the lock'
complete -c flockrun -n "__fish_flockrun_using_subcommand help; and not __fish_seen_subcommand_from exec try read write status flock help" -f -a "try" -d 'Run COMMAND under the lock only if LOCK is free; if it is busy, exit 75 at once'
complete -c flockrun -n "__fish_flockrun_using_subcommand help; and not __fish_seen_subcommand_from exec try read write status flock help" -f -a "read" -d 'Take a shared reader lock on LOCK (py-filelock\'s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; readers run together, a writer waits for them'
complete -c flockrun -n "__fish_flockrun_using_subcommand help; and not __fish_seen_subcommand_from exec try read write status flock help" -f -a "write" -d 'Take the exclusive writer lock on LOCK (py-filelock\'s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; a waiting writer keeps new readers out'
complete -c flockrun -n "__fish_flockrun_using_subcommand help; and not __fish_seen_subcommand_from exec try read write status flock help" -f -a "status" -d 'Show whether each LOCK is held, by whom and since when, and who waits; exit 0 when all are free, 1 when any is held, 66 when one cannot be inspected'
complete -c flockrun -n "__fish_flockrun_using_subcommand help; and not __fish_seen_subcommand_from exec try read write status flock help" -f -a "flock" -d 'Take util-linux flock(1)\'s command line, exit statuses and messages (what flockrun does when started through a link named flock)'
complete -c flockrun -n "__fish_flockrun_using_subcommand help; and not __fish_seen_subcommand_from exec try read write status flock help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
