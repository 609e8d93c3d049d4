/*
 * What bench/native/loadgen.c and bench/native/upstream.c share: a growable
 * byte buffer, the monotonic clock, command-line numbers, the loopback rule
 * (benchmark traffic never leaves 127.0.0.0/8) and HTTP header helpers.
 * Everything is static inline: each program is one translation unit and uses
 * only some of it.
 */
#ifndef BENCH_NATIVE_COMMON_H
#define BENCH_NATIVE_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* Stop the program: its figures would be wrong anyway. */
static inline void die(const char *prog, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, errno ? strerror(errno) : "failed");
    exit(1);
}

/* A growable byte buffer: p[0..len) is used, p[len..cap) is free. */
struct buf {
    char *p;
    size_t len, cap;
};

static inline void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        die("bench-native", "out of memory");
    b->p = p;
    b->cap = cap;
}

static inline void buf_add(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static inline void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static inline void buf_fmt(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("bench-native", "vsnprintf");
    if ((size_t)n >= b->cap - b->len) { /* did not fit: grow, then format again */
        buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * Wakeup coalescing. Every return from a blocking epoll_wait costs a context
 * switch, which on a small VM costs about as much CPU as the request itself;
 * below full speed every wakeup brings a single event. Pausing us microseconds
 * after a wakeup that brought only a few events lets the next one bring
 * several: fewer wakeups per request, for at most us more latency.
 */
#define COALESCE_BELOW 8

static inline void coalesce(int events, long us)
{
    if (us > 0 && events > 0 && events < COALESCE_BELOW) {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Sends p[*sent..len) on a non-blocking socket: 0 when all of it left, 1 when the
   socket is full (wait for EPOLLOUT), -1 on an error (errno says which). */
static inline int send_rest(int fd, const char *p, size_t len, size_t *sent)
{
    while (*sent < len) {
        ssize_t n = send(fd, p + *sent, len - *sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 1 : -1;
        *sent += (size_t)n;
    }
    return 0;
}

/* A command-line number in [lo, hi], or exit 2 saying which option was wrong. */
static inline double arg_number(const char *prog, const char *name, const char *text, double lo, double hi)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: %s wants a number from %g to %g, got '%s'\n", prog, name, lo, hi, text);
        exit(2);
    }
    return v;
}

/* The IPv4 address for host, which must be on loopback; exit 2 otherwise. */
static inline struct in_addr loopback_addr(const char *prog, const char *host)
{
    struct in_addr a;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr, "%s: refusing %s: the benchmark stays on IPv4 loopback (127.0.0.0/8)\n", prog, host);
        exit(2);
    }
    return a;
}

/* Does the header name p[0..n) equal name, ignoring case? */
static inline int name_is(const char *p, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* Does the comma-separated header value p[0..n) hold token, ignoring case? */
static inline int has_token(const char *p, size_t n, const char *token)
{
    const char *end = p + n;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *start = p;
        while (p < end && *p != ',')
            p++;
        const char *stop = p;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if (name_is(start, (size_t)(stop - start), token))
            return 1;
    }
    return 0;
}

/* A decimal Content-Length: -1 when it is not a number, -2 when it is above max. */
static inline long long parse_length(const char *p, size_t n, long long max)
{
    long long v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
        if (v > max)
            return -2;
    }
    return v;
}

/* One "Name: value" header line, value trimmed. */
struct header {
    const char *name, *value;
    size_t name_len, value_len;
};

/*
 * Reads the header line at *at and moves *at past it; every line of
 * [*at, stop) ends in CRLF. Returns 1 with h filled, 0 at stop, -1 when the
 * line is not "Name: value".
 */
static inline int next_header(const char **at, const char *stop, struct header *h)
{
    const char *p = *at;
    if (p >= stop)
        return 0;
    const char *eol = memmem(p, (size_t)(stop - p), "\r\n", 2);
    const char *colon = eol ? memchr(p, ':', (size_t)(eol - p)) : NULL;
    if (colon == NULL || colon == p)
        return -1;
    const char *v = colon + 1, *e = eol;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    h->name = p;
    h->name_len = (size_t)(colon - p);
    h->value = v;
    h->value_len = (size_t)(e - v);
    *at = eol + 2;
    return 1;
}

#endif
