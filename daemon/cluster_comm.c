/*
 * The communication thread (see cluster_comm.h).  Queued sends are moved to
 * the transport as non-blocking sends and freed when complete; every poll
 * drains what has arrived.  Errors of the transport are reported to the
 * handler (send_failed); the daemon decides what they mean.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "daemon/cluster_comm.h"
#include "daemon/log.h"
#include "daemon/transport.h"

struct out {
	struct out *next;
	int dest, tag;
	void *buf;
	size_t len;
	void *req;                      /* transport request once started */
};

struct comm {
	const struct moed_transport *t;
	void *module;
	struct comm_handler h;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_cond_t joined;          /* init done (rank known) */
	struct out *queue, **queue_tail;        /* to start */
	struct out *flight;             /* started, not complete (comm thread only) */
	int busy;
	int stop, abort_code, aborting;
	int init_done, init_rc;
	uint64_t stop_deadline_ns;
	int rank, size;
	char init_err[256];
};

int comm_launched(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL ||
	       getenv("PMIX_RANK") != NULL;
}

static void start_queued(struct comm *c, struct out *list)
{
	while (list) {
		struct out *o = list;
		int r;

		list = o->next;
		r = c->t->isend(o->dest, o->tag, o->buf, o->len, &o->req);
		if (r < 0) {
			c->h.send_failed(c->h.ctx, o->dest, r);
			free(o->buf);
			free(o);
			continue;
		}
		o->next = c->flight;
		c->flight = o;
	}
}

/* Complete sends; 1 if any completed. */
static int test_flight(struct comm *c)
{
	struct out **p = &c->flight;
	int any = 0;

	while (*p) {
		struct out *o = *p;
		int r = c->t->test(o->req);

		if (r == 0) {
			p = &o->next;
			continue;
		}
		if (r < 0)
			c->h.send_failed(c->h.ctx, o->dest, r);
		*p = o->next;
		free(o->buf);
		free(o);
		any = 1;
	}
	return any;
}

/* Receive what is waiting; 1 if anything came. */
static int drain(struct comm *c)
{
	int source, tag, any = 0;
	size_t len;

	while (c->t->probe(&source, &tag, &len) == 1) {
		void *buf = malloc(len ? len : 1);

		if (!buf || c->t->recv(source, tag, buf, len) < 0) {
			log_err("cluster: cannot receive %zu bytes from rank %d", len, source);
			free(buf);
			c->h.send_failed(c->h.ctx, source, -EIO);
			return 1;
		}
		c->h.message(c->h.ctx, source, tag, buf, len);
		any = 1;
	}
	return any;
}

static uint64_t interval_ns(const struct comm *c, uint64_t idle_ns)
{
	if (c->busy > 0 || idle_ns < 2000000ull)
		return 20000;
	return idle_ns < 1000000000ull ? 100000 : 1000000;
}

static void *comm_main(void *arg)
{
	struct comm *c = arg;
	uint64_t last_activity;
	int r;

	r = c->t->init(&c->rank, &c->size, c->init_err, sizeof(c->init_err));
	if (r == 0 && c->h.joined && (r = c->h.joined(c->h.ctx, c->rank, c->size)) < 0) {
		snprintf(c->init_err, sizeof(c->init_err), "cluster: out of memory");
		c->t->finalize();
	}
	pthread_mutex_lock(&c->lock);
	c->init_done = 1;
	c->init_rc = r;
	pthread_cond_broadcast(&c->joined);
	pthread_mutex_unlock(&c->lock);
	if (r < 0)
		return NULL;
	last_activity = mono_ns();
	for (;;) {
		struct out *list;
		uint64_t now, wait;
		int any, stop;

		pthread_mutex_lock(&c->lock);
		if (c->aborting) {
			pthread_mutex_unlock(&c->lock);
			c->t->abort(c->abort_code);
		}
		list = c->queue;
		c->queue = NULL;
		c->queue_tail = &c->queue;
		stop = c->stop;
		pthread_mutex_unlock(&c->lock);
		start_queued(c, list);
		any = list != NULL;
		any |= test_flight(c);
		if (!stop)
			any |= drain(c);
		now = mono_ns();
		if (c->h.tick && !stop)
			c->h.tick(c->h.ctx, now);
		if (stop && (!c->flight || now > c->stop_deadline_ns))
			break;
		if (any)
			last_activity = now;
		wait = interval_ns(c, now - last_activity);
		pthread_mutex_lock(&c->lock);
		if (!c->queue && !c->aborting && !(c->stop && !stop)) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += (long)wait;
			if (ts.tv_nsec >= 1000000000l) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000l;
			}
			pthread_cond_timedwait(&c->wake, &c->lock, &ts);
		}
		pthread_mutex_unlock(&c->lock);
	}
	c->t->finalize();
	return NULL;
}

static void init_monotonic_cond(pthread_cond_t *cond)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
}

int comm_open(const char *module, const struct comm_handler *h, struct comm **ret,
	      int *ret_rank, int *ret_size, char *err, size_t errlen)
{
	struct comm *c;
	int r;

	if (!module)
		module = getenv("MOED_CLUSTER_MODULE");
	if (!module || !*module)
		module = MOED_CLUSTER_DIR "/mpi.so";
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->h = *h;
	c->queue_tail = &c->queue;
	/* RTLD_GLOBAL: Open MPI's components resolve libmpi's symbols */
	c->module = dlopen(module, RTLD_NOW | RTLD_GLOBAL);
	if (!c->module) {
		snprintf(err, errlen, "cannot load the MPI transport '%s': %s (moed was started "
			 "by mpirun: install moed-mpi, or build with --with-mpi)", module, dlerror());
		free(c);
		return -ENOENT;
	}
	c->t = dlsym(c->module, "moed_transport_mpi");
	if (!c->t || c->t->version != MOED_TRANSPORT_VERSION) {
		snprintf(err, errlen, "'%s' is not a moed transport of version %u", module,
			 MOED_TRANSPORT_VERSION);
		dlclose(c->module);
		free(c);
		return -ENOEXEC;
	}
	pthread_mutex_init(&c->lock, NULL);
	init_monotonic_cond(&c->wake);
	pthread_cond_init(&c->joined, NULL);
	r = -pthread_create(&c->thread, NULL, comm_main, c);
	if (r < 0) {
		snprintf(err, errlen, "cannot start the communication thread: %s", strerror(-r));
		dlclose(c->module);
		free(c);
		return r;
	}
	pthread_mutex_lock(&c->lock);
	while (!c->init_done)
		pthread_cond_wait(&c->joined, &c->lock);
	pthread_mutex_unlock(&c->lock);
	if (c->init_rc < 0) {
		snprintf(err, errlen, "%s", c->init_err);
		pthread_join(c->thread, NULL);
		r = c->init_rc;
		free(c);        /* the module stays: MPI may have left threads in it */
		return r;
	}
	*ret_rank = c->rank;
	*ret_size = c->size;
	*ret = c;
	return 0;
}

int comm_send(struct comm *c, int dest, int tag, void *buf, size_t len)
{
	struct out *o = malloc(sizeof(*o));

	if (!o) {
		free(buf);
		return -ENOMEM;
	}
	*o = (struct out){ .dest = dest, .tag = tag, .buf = buf, .len = len };
	pthread_mutex_lock(&c->lock);
	*c->queue_tail = o;
	c->queue_tail = &o->next;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

void comm_busy(struct comm *c, int delta)
{
	pthread_mutex_lock(&c->lock);
	c->busy += delta;
	if (delta > 0)
		pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

void comm_close(struct comm *c, uint64_t timeout_ms)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = 1;
	c->stop_deadline_ns = mono_ns() + timeout_ms * 1000000ull;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	while (c->queue) {
		struct out *o = c->queue;

		c->queue = o->next;
		free(o->buf);
		free(o);
	}
	/* sends still in flight at the deadline: their buffers stay with MPI */
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->wake);
	pthread_cond_destroy(&c->joined);
	free(c);
}

void comm_abort(struct comm *c, int code)
{
	pthread_mutex_lock(&c->lock);
	c->aborting = 1;
	c->abort_code = code;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	if (pthread_equal(pthread_self(), c->thread))
		c->t->abort(code);
	for (;;)
		pause();
}

const char *comm_library(const struct comm *c)
{
	return c->t->library();
}
