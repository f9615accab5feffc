/*
 * The PyTorch peer (bench/torch_peer.py) as a child process driven over two
 * pipes, so its runs interleave with ours rep by rep and share whatever the
 * machine is doing at the time.  Lines to the peer: "run T K REP" (one forward
 * on T tokens with rep REP's routes; answer "ms <time>"), "check T K FILE"
 * (compare its output for rep 0 with ours, raw float32 in FILE; answer
 * "err <max rel>"), then EOF.  It answers "ready"
 * once its weights are built.  The interpreter is $MOED_BENCH_PYTHON, default
 * /usr/bin/python3 (Debian's, with python3-torch).  The peer gets the same
 * thread count in OPENBLAS_NUM_THREADS and OMP_NUM_THREADS as well as
 * torch.set_num_threads() (F.linear's fp32 GEMM is OpenBLAS's, which would
 * otherwise use every core), and OMP_WAIT_POLICY=PASSIVE so its idle threads
 * do not spin on the cores while we are being timed.  A peer that fails is reported and dropped: the
 * table then shows our figures alone.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

struct peer {
	pid_t pid;
	FILE *to, *from;
};

static int answer(struct peer *p, const char *key, double *ret)
{
	char line[256], fmt[32];

	snprintf(fmt, sizeof(fmt), "%s %%lf", key);
	while (fgets(line, sizeof(line), p->from))
		if (sscanf(line, fmt, ret) == 1)
			return 0;
	return -1;
}

struct peer *peer_start(const char *script, const struct shape *s, enum bench_dtype d,
			unsigned threads, size_t max_T, double zipf)
{
	const char *py = getenv("MOED_BENCH_PYTHON") ? getenv("MOED_BENCH_PYTHON")
						      : "/usr/bin/python3";
	char arg[8][32];
	int to[2], from[2];
	struct peer *p = calloc(1, sizeof(*p));
	double ready;

	if (!p || pipe(to) || pipe(from))
		goto fail;
	snprintf(arg[0], 32, "%u", s->H);
	snprintf(arg[1], 32, "%u", s->In);
	snprintf(arg[2], 32, "%u", s->E);
	snprintf(arg[3], 32, "%u", s->n_shared);
	snprintf(arg[4], 32, "%u", threads);
	snprintf(arg[5], 32, "%zu", max_T);
	snprintf(arg[6], 32, "%s", bench_dtype_name(d));
	snprintf(arg[7], 32, "%.17g", zipf);
	fflush(stdout);
	p->pid = fork();
	if (p->pid < 0)
		goto fail;
	if (p->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]), close(from[0]);
		/* torch.set_num_threads() does not reach the BLAS under F.linear:
		 * without these OpenBLAS would use every core */
		setenv("OPENBLAS_NUM_THREADS", arg[4], 1);
		setenv("OMP_NUM_THREADS", arg[4], 1);
		setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
		execl(py, py, script, "--H", arg[0], "--I", arg[1], "--E", arg[2], "--shared",
		      arg[3], "--threads", arg[4], "--max-tokens", arg[5], "--dtype", arg[6],
		      "--zipf", arg[7], (char *)NULL);
		perror(py);
		_exit(127);
	}
	close(to[0]), close(from[1]);
	p->to = fdopen(to[1], "w");
	p->from = fdopen(from[0], "r");
	if (p->to && p->from && answer(p, "ready", &ready) == 0)
		return p;
	fprintf(stderr, "peer: %s %s did not start; no peer figures\n", py, script);
	peer_stop(p);
	return NULL;
fail:
	perror("peer");
	free(p);
	return NULL;
}

double peer_time(struct peer *p, const struct shape *s, size_t T, unsigned rep)
{
	double ms;

	fprintf(p->to, "run %zu %u %u\n", T, s->k, rep);
	fflush(p->to);
	return answer(p, "ms", &ms) ? -1 : ms / 1e3;
}

double peer_check(struct peer *p, const struct shape *s, size_t T, const float *y)
{
	char tmp[] = "/tmp/moed-bench-y.XXXXXX";
	int fd = mkstemp(tmp);
	FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	double err = -1;

	if (!f)
		return -1;
	if (fwrite(y, sizeof(float), T * s->H, f) == T * s->H && !fclose(f)) {
		fprintf(p->to, "check %zu %u %s\n", T, s->k, tmp);
		fflush(p->to);
		if (answer(p, "err", &err))
			err = -1;
	}
	unlink(tmp);
	return err;
}

void peer_stop(struct peer *p)
{
	int st;

	if (!p)
		return;
	if (p->to)
		fclose(p->to);
	if (p->from)
		fclose(p->from);
	if (p->pid > 0 && waitpid(p->pid, &st, 0) > 0 && !(WIFEXITED(st) && !WEXITSTATUS(st)))
		fprintf(stderr, "peer: exited with status %d\n", st);
	free(p);
}
