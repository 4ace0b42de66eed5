/*
 * state_thread.c - the thread that calls a remote state backend for the
 * runner, so that its loop never waits on the network (state_thread.h).
 */
#include "runner/state_thread.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "common/err.h"

struct gkp__state_thread {
  gkp__loop *loop;
  gkp_pool *pool;
  pthread_t thread;
  pthread_mutex_t mu; /* a leaf: guards the queue and `stopping` */
  pthread_cond_t cv;
  gkp__sop *head, *tail;
  int stopping;
};

/* A batch of finished operations, handed to the loop in one post. */
typedef struct batch {
  gkp__sop *head;
} batch;

static void batch_done(gkp__loop *loop, void *ud) {
  batch *b = ud;
  (void)loop;
  for (gkp__sop *op = b->head, *next; op != NULL; op = next) {
    next = op->next;
    op->done(op, 0);
  }
  free(b);
}

/* Hands a finished batch to the loop, or finishes it here if the loop has
 * stopped taking work. */
static void hand_back(gkp__state_thread *t, gkp__sop *head) {
  batch *b = malloc(sizeof *b);
  if (b != NULL) {
    b->head = head;
    if (gkp__loop_post(t->loop, batch_done, b) == 0) {
      return;
    }
    free(b);
  }
  for (gkp__sop *op = head, *next; op != NULL; op = next) {
    next = op->next;
    op->done(op, 1);
  }
}

/* The ends of requests first, all in one step; then the other verbs in
 * order. */
static void run_batch(gkp__state_thread *t, gkp__sop *head) {
  size_t n = 0, i = 0;
  for (gkp__sop *op = head; op != NULL; op = op->next) {
    n += op->fin != NULL;
  }
  gkp__finish *fs = n > 1 ? malloc(n * sizeof *fs) : NULL;
  for (gkp__sop *op = head; op != NULL; op = op->next) {
    if (op->fin == NULL) {
      continue;
    }
    if (fs != NULL) {
      fs[i++] = *op->fin;
    } else {
      gkp__pool_finish_many(t->pool, op->fin, 1, NULL);
    }
  }
  if (fs != NULL) {
    gkp__pool_finish_many(t->pool, fs, n, NULL);
    free(fs);
  }
  for (gkp__sop *op = head; op != NULL; op = op->next) {
    if (op->run != NULL) {
      op->run(op);
    }
  }
}

static void *state_main(void *ud) {
  gkp__state_thread *t = ud;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    while (t->head == NULL && !t->stopping) {
      pthread_cond_wait(&t->cv, &t->mu);
    }
    if (t->head == NULL) {
      break;
    }
    gkp__sop *head = t->head;
    t->head = t->tail = NULL;
    pthread_mutex_unlock(&t->mu);
    run_batch(t, head);
    hand_back(t, head);
    pthread_mutex_lock(&t->mu);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

int gkp__state_thread_new(gkp__loop *loop, gkp_pool *pool, gkp__state_thread **out,
                          gkp_error *err) {
  gkp__state_thread *t = calloc(1, sizeof *t);
  sigset_t all, old;
  int rc;
  *out = NULL;
  if (t == NULL) {
    return gkp__err(err, -ENOMEM, "out of memory");
  }
  t->loop = loop;
  t->pool = pool;
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&t->thread, NULL, state_main, t);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
    return gkp__err(err, -rc, "cannot start the state thread");
  }
  *out = t;
  return 0;
}

void gkp__state_submit(gkp__state_thread *t, gkp__sop *op) {
  op->next = NULL;
  pthread_mutex_lock(&t->mu);
  if (t->tail != NULL) {
    t->tail->next = op;
  } else {
    t->head = op;
  }
  t->tail = op;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

void gkp__state_thread_free(gkp__state_thread *t) {
  if (t == NULL) {
    return;
  }
  pthread_mutex_lock(&t->mu);
  t->stopping = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}
