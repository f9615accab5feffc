/*
 * Runs the PyTorch peer (bench/torch_peer.py) for one configuration: our
 * output for check_T tokens goes to a temporary file the peer compares with
 * its own, the token counts and thread count on its command line, and its
 * answers come back on stdout as "T <t> ms <median>" and "err <max rel>" lines.
 * The interpreter is $MOED_BENCH_PYTHON, default /usr/bin/python3 (Debian's,
 * with python3-torch).  A peer that fails leaves ms at 0 and err at -1: the
 * table then shows our figures alone, and says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"

void peer_run(const char *script, const struct shape *s, int bf16, unsigned threads,
	      const size_t *Ts, size_t nT, const float *y_check, size_t check_T, double *ms,
	      double *err)
{
	const char *py = getenv("MOED_BENCH_PYTHON") ? getenv("MOED_BENCH_PYTHON")
						      : "/usr/bin/python3";
	char tmp[] = "/tmp/moed-bench-y.XXXXXX", cmd[1024], line[256], list[256] = "";
	FILE *f, *out;
	int fd, rc;

	for (size_t i = 0; i < nT; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%zu", i ? "," : "",
			 Ts[i]);
	fd = mkstemp(tmp);
	f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (!f || fwrite(y_check, sizeof(float), check_T * s->H, f) != check_T * s->H ||
	    fclose(f)) {
		perror("peer: temporary file");
		return;
	}
	snprintf(cmd, sizeof(cmd),
		 "%s %s --H %u --I %u --E %u --k %u --shared %u --dtype %s --threads %u "
		 "--tokens %s --check %s --check-tokens %zu",
		 py, script, s->H, s->In, s->E, s->k, s->n_shared, bf16 ? "bf16" : "f32", threads,
		 list, tmp, check_T);
	out = popen(cmd, "r");
	while (out && fgets(line, sizeof(line), out)) {
		size_t T;
		double v;

		if (sscanf(line, "T %zu ms %lf", &T, &v) == 2) {
			for (size_t i = 0; i < nT; i++)
				if (Ts[i] == T)
					ms[i] = v;
		} else if (sscanf(line, "err %lf", &v) == 1) {
			*err = v;
		}
	}
	rc = out ? pclose(out) : -1;
	unlink(tmp);
	if (rc != 0)
		fprintf(stderr, "peer: '%s' failed (status %d); no peer figures\n", cmd, rc);
}
