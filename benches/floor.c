/*
 * The floor for `flock LOCK COMMAND`: what any lock-then-run tool must do at least. Open
 * LOCK (creating it), take flock(2), fork, exec COMMAND, wait, exit with its status; no
 * checks, no messages. Built static by benches/bench.py, so it pays no dynamic loading,
 * as flockrun (static) does not either: flockrun's time over this is its own.
 */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 64;
	int fd = open(argv[1], O_RDONLY | O_CREAT | O_NOCTTY | O_CLOEXEC, 0666);
	if (fd < 0 || flock(fd, LOCK_EX) != 0)
		return 71;
	pid_t child = fork();
	if (child == 0) {
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	int status;
	if (child < 0 || waitpid(child, &status, 0) != child)
		return 71;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
