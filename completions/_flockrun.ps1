
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'flockrun' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'flockrun'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'flockrun' {
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Wait for an exclusive lock on LOCK, run COMMAND, then release the lock')
            [CompletionResult]::new('try', 'try', [CompletionResultType]::ParameterValue, 'Run COMMAND under the lock only if LOCK is free; if it is busy, exit 75 at once')
            [CompletionResult]::new('read', 'read', [CompletionResultType]::ParameterValue, 'Take a shared reader lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; readers run together, a writer waits for them')
            [CompletionResult]::new('write', 'write', [CompletionResultType]::ParameterValue, 'Take the exclusive writer lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; a waiting writer keeps new readers out')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether each LOCK is held, by whom and since when, and who waits; exit 0 when all are free, 1 when any is held, 66 when one cannot be inspected')
            [CompletionResult]::new('flock', 'flock', [CompletionResultType]::ParameterValue, 'Take util-linux flock(1)''s command line, exit statuses and messages (what flockrun does when started through a link named flock)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'flockrun;exec' {
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'The lease''s time to live in seconds: for an etcd:// or postgresql:// LOCK, whole seconds [default: 10; at least 3 for PostgreSQL]; for a redis:// LOCK, 1 or more with fractions allowed [default: 10], renewed every TTL/3; and with --soft, 0.1 or more with fractions allowed as py-filelock''s `lease_duration`, where it makes the lock a soft lease (py-filelock''s `SoftFileLease`) that a crashed holder''s host cannot keep forever. flockrun renews a soft lease every TTL/3 and an etcd lease every TTL/4; if it dies, the lock frees itself after about TTL. Every user of a soft lease must give the same TTL')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Make LOCK a semaphore of N slots (1 to 1024): at most N holders at once, and COMMAND learns which slot it holds from `FLOCKRUN_SLOT` (0 to N-1) and N from `FLOCKRUN_SLOTS`. Kernel and --fcntl locks: slot i is byte i of LOCK (an OFD lock); --soft: one marker LOCK.slot-i per slot; etcd: the N oldest keys under NAME hold. Every user of a semaphore must give the same N')
            [CompletionResult]::new('-E', '-E ', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--command', '--command', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]')
            [CompletionResult]::new('--run-limit', '--run-limit', [CompletionResultType]::ParameterName, 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count')
            [CompletionResult]::new('--kill-after', '--kill-after', [CompletionResultType]::ParameterName, 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]')
            [CompletionResult]::new('--fd', '--fd', [CompletionResultType]::ParameterName, 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends')
            [CompletionResult]::new('--cacert', '--cacert', [CompletionResultType]::ParameterName, 'TLS: the CA bundle (PEM) that signs the servers'' certificates [default: etcd: ETCDCTL_CACERT; else the system''s CAs]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'TLS: the client certificate''s private key (PEM) [default: etcd: ETCDCTL_KEY]')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'The user''s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--nonblock', '--nonblock', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--nb', '--nb', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s')
            [CompletionResult]::new('--shared', '--shared', [CompletionResultType]::ParameterName, 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s')
            [CompletionResult]::new('--fcntl', '--fcntl', [CompletionResultType]::ParameterName, 'Use a Linux open-file-description lock (`F_OFD_SETLK`) instead of flock(2), like util-linux flock --fcntl. An exclusive one needs write permission on LOCK')
            [CompletionResult]::new('--soft', '--soft', [CompletionResultType]::ParameterName, 'Use a marker-file lock (the soft-lock protocol of py-filelock) for filesystems where kernel locks do not work; a crashed holder''s marker is reclaimed once its pid is provably gone')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies')
            [CompletionResult]::new('--close', '--close', [CompletionResultType]::ParameterName, 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies')
            [CompletionResult]::new('-F', '-F ', [CompletionResultType]::ParameterName, 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock')
            [CompletionResult]::new('--no-fork', '--no-fork', [CompletionResultType]::ParameterName, 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock')
            [CompletionResult]::new('--replace', '--replace', [CompletionResultType]::ParameterName, 'If a process on this host holds LOCK (a slot of it, with --slots: the one held longest), stop it (SIGTERM, SIGKILL after --kill-after) and take the lock once it has let go. The holder is the one `flockrun status` names; a holder on another host or one this user may not signal is not stopped (exit 75)')
            [CompletionResult]::new('--refuse-host-local', '--refuse-host-local', [CompletionResultType]::ParameterName, 'Refuse (exit 65) instead of warning when LOCK is on a filesystem that keeps kernel locks to this host (FUSE such as sshfs, NFS mounted nolock or with `local_lock`, SMB mounted nobrl), where a process on another host could hold the same kernel lock at the same time. Applies to the kernel and --fcntl kinds')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'flockrun;try' {
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'The lease''s time to live in seconds: for an etcd:// or postgresql:// LOCK, whole seconds [default: 10; at least 3 for PostgreSQL]; for a redis:// LOCK, 1 or more with fractions allowed [default: 10], renewed every TTL/3; and with --soft, 0.1 or more with fractions allowed as py-filelock''s `lease_duration`, where it makes the lock a soft lease (py-filelock''s `SoftFileLease`) that a crashed holder''s host cannot keep forever. flockrun renews a soft lease every TTL/3 and an etcd lease every TTL/4; if it dies, the lock frees itself after about TTL. Every user of a soft lease must give the same TTL')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Make LOCK a semaphore of N slots (1 to 1024): at most N holders at once, and COMMAND learns which slot it holds from `FLOCKRUN_SLOT` (0 to N-1) and N from `FLOCKRUN_SLOTS`. Kernel and --fcntl locks: slot i is byte i of LOCK (an OFD lock); --soft: one marker LOCK.slot-i per slot; etcd: the N oldest keys under NAME hold. Every user of a semaphore must give the same N')
            [CompletionResult]::new('-E', '-E ', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--command', '--command', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]')
            [CompletionResult]::new('--run-limit', '--run-limit', [CompletionResultType]::ParameterName, 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count')
            [CompletionResult]::new('--kill-after', '--kill-after', [CompletionResultType]::ParameterName, 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]')
            [CompletionResult]::new('--fd', '--fd', [CompletionResultType]::ParameterName, 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends')
            [CompletionResult]::new('--cacert', '--cacert', [CompletionResultType]::ParameterName, 'TLS: the CA bundle (PEM) that signs the servers'' certificates [default: etcd: ETCDCTL_CACERT; else the system''s CAs]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'TLS: the client certificate''s private key (PEM) [default: etcd: ETCDCTL_KEY]')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'The user''s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s')
            [CompletionResult]::new('--shared', '--shared', [CompletionResultType]::ParameterName, 'Take a shared lock (any number of shared holders, no exclusive one), like flock -s')
            [CompletionResult]::new('--fcntl', '--fcntl', [CompletionResultType]::ParameterName, 'Use a Linux open-file-description lock (`F_OFD_SETLK`) instead of flock(2), like util-linux flock --fcntl. An exclusive one needs write permission on LOCK')
            [CompletionResult]::new('--soft', '--soft', [CompletionResultType]::ParameterName, 'Use a marker-file lock (the soft-lock protocol of py-filelock) for filesystems where kernel locks do not work; a crashed holder''s marker is reclaimed once its pid is provably gone')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies')
            [CompletionResult]::new('--close', '--close', [CompletionResultType]::ParameterName, 'Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if flockrun dies')
            [CompletionResult]::new('-F', '-F ', [CompletionResultType]::ParameterName, 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock')
            [CompletionResult]::new('--no-fork', '--no-fork', [CompletionResultType]::ParameterName, 'Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock')
            [CompletionResult]::new('--replace', '--replace', [CompletionResultType]::ParameterName, 'If a process on this host holds LOCK (a slot of it, with --slots: the one held longest), stop it (SIGTERM, SIGKILL after --kill-after) and take the lock once it has let go. The holder is the one `flockrun status` names; a holder on another host or one this user may not signal is not stopped (exit 75)')
            [CompletionResult]::new('--refuse-host-local', '--refuse-host-local', [CompletionResultType]::ParameterName, 'Refuse (exit 65) instead of warning when LOCK is on a filesystem that keeps kernel locks to this host (FUSE such as sshfs, NFS mounted nolock or with `local_lock`, SMB mounted nobrl), where a process on another host could hold the same kernel lock at the same time. Applies to the kernel and --fcntl kinds')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'flockrun;read' {
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'With --soft: the stale threshold in seconds, 0.1 or more, fractions allowed as py-filelock''s `stale_threshold` [default: 90, py-filelock''s]: a participant whose records stay unrenewed this long is evicted. Give every user of the lock the same one. For a postgresql:// LOCK: the lease in whole seconds, 3 or more [default: 10]')
            [CompletionResult]::new('--layout', '--layout', [CompletionResultType]::ParameterName, 'With --soft: the on-disk layout to take: v1 (py-filelock 3.27-3.32), v2 (4.0 and later), or both, v1 first, which keeps out Python peers of either age [default: both]')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Not for reader/writer locks: accepted only to be refused with a clear message')
            [CompletionResult]::new('-E', '-E ', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--command', '--command', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]')
            [CompletionResult]::new('--run-limit', '--run-limit', [CompletionResultType]::ParameterName, 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count')
            [CompletionResult]::new('--kill-after', '--kill-after', [CompletionResultType]::ParameterName, 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]')
            [CompletionResult]::new('--fd', '--fd', [CompletionResultType]::ParameterName, 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--nonblock', '--nonblock', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--nb', '--nb', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--soft', '--soft', [CompletionResultType]::ParameterName, 'Use py-filelock''s `SoftReadWriteLock` (marker files and a generation log beside LOCK) instead of SQLite, for filesystems whose locks do not reach every host (NFS, SMB, FUSE). A holder renews its records every TTL/3; one that stops is evicted after the TTL')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'flockrun;write' {
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single attempt). Default: wait as long as it takes')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'With --soft: the stale threshold in seconds, 0.1 or more, fractions allowed as py-filelock''s `stale_threshold` [default: 90, py-filelock''s]: a participant whose records stay unrenewed this long is evicted. Give every user of the lock the same one. For a postgresql:// LOCK: the lease in whole seconds, 3 or more [default: 10]')
            [CompletionResult]::new('--layout', '--layout', [CompletionResultType]::ParameterName, 'With --soft: the on-disk layout to take: v1 (py-filelock 3.27-3.32), v2 (4.0 and later), or both, v1 first, which keeps out Python peers of either age [default: both]')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Not for reader/writer locks: accepted only to be refused with a clear message')
            [CompletionResult]::new('-E', '-E ', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit status when the lock is busy or the wait times out (0-255)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--command', '--command', [CompletionResultType]::ParameterName, 'Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]')
            [CompletionResult]::new('--run-limit', '--run-limit', [CompletionResultType]::ParameterName, 'Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit. The wait for the lock does not count')
            [CompletionResult]::new('--kill-after', '--kill-after', [CompletionResultType]::ParameterName, 'With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]')
            [CompletionResult]::new('--fd', '--fd', [CompletionResultType]::ParameterName, 'exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND, flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock stays with the caller''s descriptor after COMMAND ends')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--nonblock', '--nonblock', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--nb', '--nb', [CompletionResultType]::ParameterName, 'Do not wait if the lock is busy (same as --timeout 0)')
            [CompletionResult]::new('--soft', '--soft', [CompletionResultType]::ParameterName, 'Use py-filelock''s `SoftReadWriteLock` (marker files and a generation log beside LOCK) instead of SQLite, for filesystems whose locks do not reach every host (NFS, SMB, FUSE). A holder renews its records every TTL/3; one that stops is evicted after the TTL')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say on stderr how long the wait took and who held the lock meanwhile')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No message when the lock is busy or the wait timed out')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'flockrun;status' {
            [CompletionResult]::new('--kind', '--kind', [CompletionResultType]::ParameterName, 'Inspect LOCK as this kind instead of detecting it from the kernel''s locks and the file''s content')
            [CompletionResult]::new('--cacert', '--cacert', [CompletionResultType]::ParameterName, 'TLS: the CA bundle (PEM) that signs the servers'' certificates [default: etcd: ETCDCTL_CACERT; else the system''s CAs]')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'TLS: the client certificate (PEM) for a server that requires one, with --key [default: etcd: ETCDCTL_CERT]')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'TLS: the client certificate''s private key (PEM) [default: etcd: ETCDCTL_KEY]')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The user to authenticate as: an etcd user [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). NAME:PASSWORD works as with etcdctl, but shows the password in the process list: prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'The user''s password: the first line of FILE [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON document (schema in the README and the man page)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print the kernel''s lock lines for each LOCK')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print the kernel''s lock lines for each LOCK')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing; only the exit status tells')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing; only the exit status tells')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'flockrun;flock' {
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'flockrun;help' {
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Wait for an exclusive lock on LOCK, run COMMAND, then release the lock')
            [CompletionResult]::new('try', 'try', [CompletionResultType]::ParameterValue, 'Run COMMAND under the lock only if LOCK is free; if it is busy, exit 75 at once')
            [CompletionResult]::new('read', 'read', [CompletionResultType]::ParameterValue, 'Take a shared reader lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; readers run together, a writer waits for them')
            [CompletionResult]::new('write', 'write', [CompletionResultType]::ParameterValue, 'Take the exclusive writer lock on LOCK (py-filelock''s SQLite `ReadWriteLock`, or with --soft its `SoftReadWriteLock`) and run COMMAND; a waiting writer keeps new readers out')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether each LOCK is held, by whom and since when, and who waits; exit 0 when all are free, 1 when any is held, 66 when one cannot be inspected')
            [CompletionResult]::new('flock', 'flock', [CompletionResultType]::ParameterValue, 'Take util-linux flock(1)''s command line, exit statuses and messages (what flockrun does when started through a link named flock)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'flockrun;help;exec' {
            break
        }
        'flockrun;help;try' {
            break
        }
        'flockrun;help;read' {
            break
        }
        'flockrun;help;write' {
            break
        }
        'flockrun;help;status' {
            break
        }
        'flockrun;help;flock' {
            break
        }
        'flockrun;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
