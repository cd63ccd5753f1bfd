/*
 * `repeat N COMMAND [ARG]...`: runs COMMAND N times one after the other (stdout to
 * /dev/null), each started with posix_spawnp and waited for, and prints the mean wall time
 * of one run in microseconds. The benchmark's loop for the uncontended figures: a shell
 * loop would add its own fork for every run, the same for every tool, which only blurs the
 * difference between them.
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc < 3)
		return 64;
	long runs = strtol(argv[1], NULL, 10);
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < runs; i++) {
		pid_t child;
		int status;
		if (posix_spawnp(&child, argv[2], &actions, NULL, argv + 2, environ) != 0)
			return 71;
		if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
	printf("%.1f\n", ns / runs / 1000.0);
	return 0;
}
