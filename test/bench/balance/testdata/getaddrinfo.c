/*
 * getaddrinfo.c: the glibc client of the balance benchmark
 * (test/bench/balance). Each thread is one client: it resolves NAME with
 * glibc's getaddrinfo (AF_UNSPEC, SOCK_STREAM, as getent ahosts and most
 * programs ask), takes the FIRST address of the result, maps a pod address
 * 10.244.a.b to the backend listener 127.244.a.b (the API server does not
 * accept loopback pod IPs) and opens a TCP connection to PORT there, closed
 * at once with a reset. Then it sleeps PAUSE_US and starts again, until
 * DURATION_MS have passed.
 *
 * Thread i asks SERVER[i % nservers] (ip:port). glibc takes its name
 * servers from _res, which is per thread: res_init() fills it from
 * /etc/resolv.conf and the thread then replaces nsaddr_list, a documented
 * way to point the stub resolver elsewhere (and the only one that allows a
 * port other than 53). Everything after that (query, retries, TCP
 * fallback on TC, RFC 6724 sorting) is glibc's own getaddrinfo.
 *
 * Usage: getaddrinfo NAME PORT DURATION_MS PAUSE_US THREADS SERVER...
 * Prints "ok=N lookup_errors=N connect_errors=N other=N" on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *name;
static int port;
static long duration_ms, pause_us;
static int nservers;
static struct sockaddr_in *servers;
static struct timespec start;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long ok_total, lookup_errors, connect_errors, other;

static long elapsed_ms(void) {
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
}

static void *client(void *arg) {
	long idx = (long)arg;
	long ok = 0, lerr = 0, cerr = 0, oth = 0;
	if (res_init() != 0) {
		fprintf(stderr, "res_init failed\n");
		exit(2);
	}
	_res.nscount = 1;
	_res.nsaddr_list[0] = servers[idx % nservers];
	_res.retrans = 2;
	_res.retry = 2;
	while (elapsed_ms() < duration_ms) {
		struct addrinfo hints, *res = NULL;
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		int rc = getaddrinfo(name, NULL, &hints, &res);
		if (rc != 0 || res == NULL) {
			lerr++;
		} else if (res->ai_family != AF_INET) {
			oth++;
		} else {
			struct sockaddr_in dst = *(struct sockaddr_in *)res->ai_addr;
			unsigned char *b = (unsigned char *)&dst.sin_addr.s_addr;
			if (b[0] != 10 || b[1] != 244) {
				oth++;
			} else {
				b[0] = 127; /* 10.244.a.b -> 127.244.a.b */
				dst.sin_port = htons(port);
				int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
				if (fd < 0) {
					cerr++;
				} else {
					struct linger lg = {1, 0};
					setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
					if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0)
						ok++;
					else
						cerr++;
					close(fd);
				}
			}
		}
		if (res)
			freeaddrinfo(res);
		if (pause_us > 0)
			usleep(pause_us);
	}
	pthread_mutex_lock(&mu);
	ok_total += ok;
	lookup_errors += lerr;
	connect_errors += cerr;
	other += oth;
	pthread_mutex_unlock(&mu);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc < 7) {
		fprintf(stderr, "usage: %s NAME PORT DURATION_MS PAUSE_US THREADS SERVER...\n", argv[0]);
		return 2;
	}
	name = argv[1];
	port = atoi(argv[2]);
	duration_ms = atol(argv[3]);
	pause_us = atol(argv[4]);
	int threads = atoi(argv[5]);
	nservers = argc - 6;
	servers = calloc(nservers, sizeof *servers);
	for (int i = 0; i < nservers; i++) {
		char host[64];
		const char *colon = strrchr(argv[6 + i], ':');
		if (colon == NULL || (size_t)(colon - argv[6 + i]) >= sizeof host) {
			fprintf(stderr, "bad server %s\n", argv[6 + i]);
			return 2;
		}
		memcpy(host, argv[6 + i], colon - argv[6 + i]);
		host[colon - argv[6 + i]] = 0;
		servers[i].sin_family = AF_INET;
		servers[i].sin_port = htons(atoi(colon + 1));
		if (inet_pton(AF_INET, host, &servers[i].sin_addr) != 1) {
			fprintf(stderr, "bad server %s\n", argv[6 + i]);
			return 2;
		}
	}
	if (threads < 1 || threads > 1024)
		threads = 1;
	clock_gettime(CLOCK_MONOTONIC, &start);
	pthread_t *tids = calloc(threads, sizeof *tids);
	for (long i = 0; i < threads; i++)
		if (pthread_create(&tids[i], NULL, client, (void *)i) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 2;
		}
	for (int i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	printf("ok=%ld lookup_errors=%ld connect_errors=%ld other=%ld\n", ok_total, lookup_errors, connect_errors, other);
	return 0;
}
