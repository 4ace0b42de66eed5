/*
 * server.h - runs tests/client/test_server.py for the client tests.
 */
#ifndef GKP_TESTS_CLIENT_SERVER_H
#define GKP_TESTS_CLIENT_SERVER_H

#include <sys/types.h>

typedef struct test_server {
  pid_t pid;
  int in_fd; /* the server's stdin: closing it ends the server */
  int port;
} test_server;

/* Starts the server and reads its port.  Returns 0, or -1 when python3 or
 * the script is missing (the caller skips). */
int test_server_start(test_server *s);

/* Ends the server and reaps it. */
void test_server_stop(test_server *s);

/* Keeps proxies from the environment away from loopback requests. */
void test_no_proxy(void);

/* A TCP port on 127.0.0.1 that refuses connections: a bound socket that
 * does not listen (kept open in *fd so nobody else takes the port). */
int test_refusing_port(int *fd);

/* CLOCK_MONOTONIC in ms. */
long long test_now_ms(void);

#endif
