/*
 * srtcaller: a minimal libsrt caller for the interop tests.
 *
 *   srtcaller host port streamid [--passphrase P] [--timeout-ms N]
 *             [--send-packets N] [--packet-size N] [--interval-us N]
 *             [--linger-ms N] [--repeat N]
 *
 * Each attempt creates a live-mode socket, sets SRTO_STREAMID (and
 * SRTO_PASSPHRASE, SRTO_CONNTIMEO), connects with a blocking srt_connect
 * and prints one line to stdout:
 *
 *   CONNECTED <microseconds>
 *   REJECTED <srt_getrejectreason()> <microseconds>
 *   FAILED <srt_getlasterror_str()>
 *
 * After a successful connect it sends --send-packets packets of
 * --packet-size bytes (packet i is filled with the byte i % 256), waits for
 * the send buffer to drain and the peer's latency to pass (or --linger-ms,
 * when given), prints "SENT <packets> <bytes>", and closes. --repeat runs that many attempts in sequence.
 * Exit status: 0 when every attempt connected, 1 otherwise, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <srt/srt.h>

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void usage(void)
{
	fprintf(stderr, "usage: srtcaller host port streamid [--passphrase P] [--timeout-ms N] "
			"[--send-packets N] [--packet-size N] [--interval-us N] [--linger-ms N] [--repeat N]\n");
	exit(2);
}

static long num_arg(const char *name, const char *v)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || n < 0) {
		fprintf(stderr, "srtcaller: %s: not a number: %s\n", name, v);
		exit(2);
	}
	return n;
}

struct opts {
	const char *streamid;
	const char *passphrase;
	long timeout_ms, packets, size, interval_us, repeat, linger_ms;
};

/* attempt runs one connect (and send); returns 0 when it connected. */
static int attempt(const struct sockaddr *sa, int salen, const struct opts *o)
{
	SRTSOCKET s = srt_create_socket();
	if (s == SRT_INVALID_SOCK) {
		printf("FAILED %s\n", srt_getlasterror_str());
		return 1;
	}
	int live = SRTT_LIVE;
	srt_setsockflag(s, SRTO_TRANSTYPE, &live, sizeof live);
	if (srt_setsockflag(s, SRTO_STREAMID, o->streamid, (int)strlen(o->streamid)) == SRT_ERROR) {
		printf("FAILED %s\n", srt_getlasterror_str());
		srt_close(s);
		return 1;
	}
	if (o->passphrase && srt_setsockflag(s, SRTO_PASSPHRASE, o->passphrase, (int)strlen(o->passphrase)) == SRT_ERROR) {
		printf("FAILED %s\n", srt_getlasterror_str());
		srt_close(s);
		return 1;
	}
	if (o->timeout_ms > 0) {
		int ms = (int)o->timeout_ms;
		srt_setsockflag(s, SRTO_CONNTIMEO, &ms, sizeof ms);
	}
	long long start = now_us();
	int r = srt_connect(s, sa, salen);
	long long took = now_us() - start;
	if (r == SRT_ERROR) {
		int err = srt_getlasterror(NULL);
		if (err == SRT_ECONNREJ)
			printf("REJECTED %d %lld\n", srt_getrejectreason(s), took);
		else
			printf("FAILED %s (reject reason %d)\n", srt_getlasterror_str(), srt_getrejectreason(s));
		fflush(stdout);
		srt_close(s);
		return 1;
	}
	printf("CONNECTED %lld\n", took);
	fflush(stdout);

	if (o->packets > 0) {
		char *buf = malloc((size_t)o->size);
		long long sent_bytes = 0;
		long sent = 0;
		for (long i = 0; i < o->packets; i++) {
			memset(buf, (int)(i & 0xff), (size_t)o->size);
			int n = srt_sendmsg2(s, buf, (int)o->size, NULL);
			if (n == SRT_ERROR) {
				printf("FAILED send: %s\n", srt_getlasterror_str());
				break;
			}
			sent++;
			sent_bytes += n;
			if (o->interval_us > 0)
				usleep((useconds_t)o->interval_us);
		}
		free(buf);
		/* Live mode closes without lingering: wait until every packet is acknowledged. */
		for (int i = 0; i < 300; i++) {
			size_t blocks = 0, bytes = 0;
			if (srt_getsndbuffer(s, &blocks, &bytes) == SRT_ERROR || blocks == 0)
				break;
			usleep(10000);
		}
		/* The receiver holds the last packets for its latency before
		 * delivering them, and drops them on SHUTDOWN: wait that out. */
		long linger = o->linger_ms;
		if (linger < 0) {
			int latency = 0, len = sizeof latency;
			if (srt_getsockflag(s, SRTO_PEERLATENCY, &latency, &len) == SRT_ERROR || latency < 120)
				latency = 120;
			linger = latency + 100;
		}
		usleep((useconds_t)linger * 1000);
		printf("SENT %ld %lld\n", sent, sent_bytes);
		fflush(stdout);
	}
	srt_close(s);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		usage();
	struct opts o = {.streamid = argv[3], .size = 1316, .repeat = 1, .linger_ms = -1};
	for (int i = 4; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "--passphrase"))
			o.passphrase = v;
		else if (!strcmp(a, "--timeout-ms"))
			o.timeout_ms = num_arg(a, v);
		else if (!strcmp(a, "--send-packets"))
			o.packets = num_arg(a, v);
		else if (!strcmp(a, "--packet-size"))
			o.size = num_arg(a, v);
		else if (!strcmp(a, "--interval-us"))
			o.interval_us = num_arg(a, v);
		else if (!strcmp(a, "--linger-ms"))
			o.linger_ms = num_arg(a, v);
		else if (!strcmp(a, "--repeat"))
			o.repeat = num_arg(a, v);
		else
			usage();
	}
	if (o.size < 1 || o.size > 1456) {
		fprintf(stderr, "srtcaller: --packet-size must be 1..1456\n");
		return 2;
	}

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai;
	int gai = getaddrinfo(argv[1], argv[2], &hints, &ai);
	if (gai != 0) {
		fprintf(stderr, "srtcaller: %s:%s: %s\n", argv[1], argv[2], gai_strerror(gai));
		return 2;
	}

	srt_startup();
	srt_setloglevel(LOG_ERR);
	int failed = 0;
	for (long i = 0; i < o.repeat; i++)
		failed |= attempt(ai->ai_addr, (int)ai->ai_addrlen, &o);
	freeaddrinfo(ai);
	srt_cleanup();
	return failed;
}
