/*
 * The load generator of bench/'s saturation scenarios, in C. It measures what
 * bench/loadgen.py measures for non-streaming requests -- the same window, the
 * same error kinds, the same JSON keys (read that module's docstrings) -- for a
 * few microseconds of CPU per request, so that on a small machine the
 * instrument leaves the cores to the gateway it measures.
 *
 * One thread, one level-triggered epoll loop, one keep-alive connection per
 * client. Each client sends the same prebuilt POST again as soon as its
 * previous answer is complete or has failed, reconnecting when the server
 * closed the connection or an error left it unusable. A 200 answer counts when
 * its body has a non-empty choices[0].message.content string (found by a scan
 * of the body, not a full JSON parse). Figures go to stdout as one JSON object.
 * --coalesce-us N pauses up to N microseconds after a wakeup that brought few
 * events (common.h says why); latencies then include up to N us of that pause.
 *
 *   loadgen --port 9001 --body '{"model":"m",...}' [--concurrency 16]
 *           [--requests 10000] [--duration 5] [--warmup 1] [--timeout 30]
 *           [--api-key K] [--path /v1/chat/completions] [--host 127.0.0.1]
 *           [--coalesce-us 0]
 */
#include "common.h"
#include "response.h"

#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROG "loadgen"
#define READ_CHUNK (16 * 1024) /* free space offered to each read */
#define CONNECT_TIMEOUT 5.0    /* as bench/loadgen.py */
#define RETRY_PAUSE 0.05       /* after a failed connect, as bench/loadgen.py */
#define SCAN_EVERY 0.01        /* seconds between looks for timed-out clients */
#define MAX_SAMPLES 5
#define MAX_KINDS 32

struct options {
    struct in_addr addr;
    const char *host, *path, *body, *api_key;
    int port, concurrency;
    long requests, coalesce_us;
    double duration, warmup, timeout;
};

enum state { CONNECTING, WAITING, RETRYING, DONE };

struct client {
    int fd;
    enum state state;
    int first;       /* its first request (or failed connect) has not ended yet */
    double t0;       /* when the request went out */
    double deadline; /* of the connect or the response; end of the retry pause */
    size_t sent;     /* bytes of the request written */
    struct buf in;
    struct response r;
};

/* The measurement window and every figure (bench/loadgen.py's _Run). */
struct run {
    struct options o;
    struct buf request;
    int epfd;
    double started, open_at, opened, closed, stop_at, hard_close_at, end_at, next_scan; /* 0: not yet */
    int warmed, done_clients;
    long min_completions, answered, unfinished, connects, errors;
    double *lat; /* seconds, of the answers recorded in the window */
    size_t nlat, lat_cap;
    struct {
        char name[32];
        long count;
    } kinds[MAX_KINDS];
    int nkinds, nsamples;
    char samples[MAX_SAMPLES][400];
};

/* ---- the window ---- */

static int in_window(const struct run *run, double t)
{
    return run->opened > 0 && run->opened <= t && run->closed == 0;
}

static void window_open(struct run *run, double t)
{
    if (run->opened > 0)
        return;
    run->opened = t;
    run->stop_at = t + run->o.duration;
    run->hard_close_at = run->stop_at + run->o.timeout;
}

static void window_close(struct run *run, double t)
{
    if (run->closed == 0)
        run->closed = t;
}

/* Closes once the count is reached, or once the duration is over and every client could answer. */
static void maybe_close(struct run *run, double t)
{
    long n = (long)run->nlat + run->errors;
    if (run->opened > 0 && (n >= run->o.requests || (t >= run->stop_at && n >= run->min_completions)))
        window_close(run, t);
}

/* A client's first request ended: the window opens once all have, and the warm-up is over. */
static void warm_one(struct run *run, double t)
{
    if (++run->warmed == run->o.concurrency) {
        double at = run->started + run->o.warmup;
        at = at > t ? at : t;
        run->open_at = at < run->open_at ? at : run->open_at;
    }
}

/* ---- recording ---- */

/* kind and detail become "kind: detail" in error_samples. */
static void record_error(struct run *run, double t, const char *kind, const char *detail)
{
    int i = 0;
    while (i < run->nkinds && strcmp(run->kinds[i].name, kind) != 0)
        i++;
    if (i == run->nkinds && run->nkinds < MAX_KINDS)
        snprintf(run->kinds[run->nkinds++].name, sizeof run->kinds[0].name, "%s", kind);
    if (i < run->nkinds)
        run->kinds[i].count++;
    run->errors++;
    if (run->nsamples < MAX_SAMPLES)
        snprintf(run->samples[run->nsamples++], sizeof run->samples[0], "%s: %s", kind, detail);
    maybe_close(run, t);
}

static void record_latency(struct run *run, double t, double seconds)
{
    if (run->nlat == run->lat_cap) {
        run->lat_cap = run->lat_cap ? run->lat_cap * 2 : 65536;
        run->lat = realloc(run->lat, run->lat_cap * sizeof *run->lat);
        if (run->lat == NULL)
            die(PROG, "out of memory");
    }
    run->lat[run->nlat++] = seconds;
    maybe_close(run, t);
}

/* ---- clients ---- */

static void client_issue(struct run *run, struct client *c, double t);

static void drop_connection(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void watch(struct run *run, struct client *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(run->epfd, op, c->fd, &ev) < 0)
        die(PROG, "epoll_ctl");
}

/* The request ended, answered or failed (kind != NULL): record it, then send the next. */
static void client_end(struct run *run, struct client *c, const char *kind, const char *detail)
{
    double t = now();
    run->answered++;
    if (in_window(run, t)) {
        if (kind != NULL)
            record_error(run, t, kind, detail);
        else
            record_latency(run, t, t - c->t0);
    } else if (run->closed > 0) {
        run->unfinished++;
    }
    if (c->first) {
        c->first = 0;
        warm_one(run, t);
    }
    if (kind != NULL || !c->r.keep_alive)
        drop_connection(c);
    client_issue(run, c, t);
}

static void connect_failed(struct run *run, struct client *c, const char *detail)
{
    double t = now();
    drop_connection(c);
    if (in_window(run, t))
        record_error(run, t, "connect", detail);
    c->state = RETRYING;
    c->deadline = t + RETRY_PAUSE;
}

/* Writes the rest of the request. */
static void client_write(struct run *run, struct client *c)
{
    int rc = send_rest(c->fd, run->request.p, run->request.len, &c->sent);
    if (rc > 0)
        watch(run, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
    else if (rc < 0)
        client_end(run, c, "closed", strerror(errno));
}

static void client_send(struct run *run, struct client *c)
{
    memset(&c->r, 0, sizeof c->r);
    c->in.len = 0;
    c->sent = 0;
    c->state = WAITING;
    c->t0 = now();
    c->deadline = c->t0 + run->o.timeout;
    client_write(run, c);
}

static void client_connect(struct run *run, struct client *c, double t)
{
    run->connects++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        connect_failed(run, c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)run->o.port), .sin_addr = run->o.addr};
    /* Even an immediate success is taken from EPOLLOUT: no request is sent from inside this call. */
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) == 0 || errno == EINPROGRESS) {
        watch(run, c, EPOLL_CTL_ADD, EPOLLOUT);
        c->state = CONNECTING;
        c->deadline = t + CONNECT_TIMEOUT;
    } else {
        connect_failed(run, c, strerror(errno));
    }
}

/* The next request, on this connection or a new one; none once the window has closed. */
static void client_issue(struct run *run, struct client *c, double t)
{
    if (run->closed > 0) {
        drop_connection(c);
        c->state = DONE;
        run->done_clients++;
    } else if (c->fd < 0) {
        client_connect(run, c, t);
    } else {
        client_send(run, c);
    }
}

/* A whole response has arrived: a success only with status 200 and a message content. */
static void client_answered(struct run *run, struct client *c)
{
    if (c->r.status != 200) {
        char kind[16], detail[301];
        size_t k = c->r.body < 300 ? c->r.body : 300;
        snprintf(kind, sizeof kind, "http_%d", c->r.status);
        memcpy(detail, c->in.p + c->r.head, k);
        detail[k] = '\0';
        client_end(run, c, kind, detail);
    } else if (!has_content(c->in.p + c->r.head, c->r.body)) {
        client_end(run, c, "invalid", "completion without choices[0].message.content");
    } else {
        client_end(run, c, NULL, NULL);
    }
}

static void client_read(struct run *run, struct client *c)
{
    buf_reserve(&c->in, READ_CHUNK);
    ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == 0 && c->r.until_eof) { /* a body framed by the end of the connection */
        client_answered(run, c);
        return;
    }
    if (n <= 0) {
        char detail[128];
        snprintf(detail, sizeof detail, "connection closed mid-response (%s)", n == 0 ? "EOF" : strerror(errno));
        client_end(run, c, "closed", detail);
        return;
    }
    c->in.len += (size_t)n;
    const char *why = NULL;
    int rc = parse_response(&c->in, &c->r, &why);
    if (rc < 0)
        client_end(run, c, "protocol", why);
    else if (rc > 0)
        client_answered(run, c);
}

static void client_event(struct run *run, struct client *c, uint32_t events)
{
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            connect_failed(run, c, strerror(err));
            return;
        }
        watch(run, c, EPOLL_CTL_MOD, EPOLLIN);
        client_issue(run, c, now()); /* sends, unless the window closed meanwhile */
        return;
    }
    if (c->state != WAITING)
        return;
    if ((events & EPOLLOUT) && c->sent < run->request.len) {
        client_write(run, c);
        if (c->state == WAITING && c->sent == run->request.len)
            watch(run, c, EPOLL_CTL_MOD, EPOLLIN);
    }
    if (c->state == WAITING && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        client_read(run, c);
}

/* The timers: the window's, and every SCAN_EVERY the clients' timeouts and retry pauses. */
static void tick(struct run *run, struct client *clients, double t)
{
    if (run->opened == 0 && t >= run->open_at)
        window_open(run, t);
    if (run->opened > 0 && t >= run->stop_at)
        maybe_close(run, t);
    if (run->opened > 0 && t >= run->hard_close_at)
        window_close(run, t);
    if (t < run->next_scan)
        return;
    run->next_scan = t + SCAN_EVERY;
    for (int i = 0; i < run->o.concurrency; i++) {
        struct client *c = &clients[i];
        if (c->state == DONE || t < c->deadline)
            continue;
        if (c->state == CONNECTING) {
            connect_failed(run, c, "connect timed out");
        } else if (c->state == WAITING) {
            client_end(run, c, "timeout", "no complete response in time");
        } else if (c->state == RETRYING) {
            if (c->first) {
                c->first = 0;
                warm_one(run, t);
            }
            client_issue(run, c, t);
        }
    }
}

/* Milliseconds until the next timer, rounded up. */
static int wait_ms(const struct run *run, double t)
{
    double next = run->next_scan;
    if (run->opened == 0 && run->open_at < next)
        next = run->open_at;
    if (run->opened > 0 && run->closed == 0 && run->stop_at < next)
        next = run->stop_at;
    double ms = ceil((next - t) * 1000);
    return ms < 0 ? 0 : (int)ms;
}

/* ---- the output: bench/loadgen.py's keys, non-streaming ---- */

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A JSON string; bytes outside printable ASCII become '?' (error bodies may be anything). */
static void json_string(struct buf *b, const char *s)
{
    buf_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_fmt(b, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            buf_str(b, c == '\n' ? "\\n" : "?");
        else
            buf_add(b, s, 1);
    }
    buf_str(b, "\"");
}

/* A float as orjson would read it back: always with a '.' or an exponent. */
static void json_float(struct buf *b, const char *key, double v)
{
    size_t start = b->len;
    buf_fmt(b, ",\"%s\":%.9g", key, v);
    if (strpbrk(b->p + start + strlen(key) + 4, ".e") == NULL) /* a float, as in bench/loadgen.py's output */
        buf_str(b, ".0");
}

/* stats.summarize_ms: count, mean, min, nearest-rank p50 p90 p99 p999, max, in milliseconds. */
static void json_latency(struct buf *b, double *v, size_t n)
{
    static const struct {
        const char *name;
        double q;
    } pcts[] = {{"p50", 50.0}, {"p90", 90.0}, {"p99", 99.0}, {"p999", 99.9}};
    buf_fmt(b, "{\"count\":%zu.0", n);
    if (n > 0) {
        qsort(v, n, sizeof *v, by_value);
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += v[i];
        json_float(b, "mean", sum / (double)n * 1000);
        json_float(b, "min", v[0] * 1000);
        for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
            double rank = ceil(pcts[i].q / 100 * (double)n);
            size_t r = rank < 1 ? 1 : rank > (double)n ? n : (size_t)rank;
            json_float(b, pcts[i].name, v[r - 1] * 1000);
        }
        json_float(b, "max", v[n - 1] * 1000);
    }
    buf_str(b, "}");
}

static void print_result(struct run *run)
{
    double opened = run->opened > 0 ? run->opened : run->started;
    double window = (run->closed > 0 ? run->closed : now()) - opened;
    long ok = (long)run->nlat, total = ok + run->errors;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec
                 + (double)ru.ru_stime.tv_usec * 1e-6;
    struct buf b = {0};
    buf_fmt(&b, "{\"ok\":%ld,\"errors\":%ld", ok, run->errors);
    json_float(&b, "error_rate", total ? (double)run->errors / (double)total : 0.0);
    buf_str(&b, ",\"error_kinds\":{");
    for (int i = 0; i < run->nkinds; i++) {
        buf_str(&b, i ? "," : "");
        json_string(&b, run->kinds[i].name);
        buf_fmt(&b, ":%ld", run->kinds[i].count);
    }
    buf_str(&b, "},\"error_samples\":[");
    for (int i = 0; i < run->nsamples; i++) {
        buf_str(&b, i ? "," : "");
        json_string(&b, run->samples[i]);
    }
    buf_fmt(&b, "],\"warmup_s\":%.4f,\"window_s\":%.4f", opened - run->started, window);
    json_float(&b, "rps", window > 0 ? (double)ok / window : 0.0);
    buf_str(&b, ",\"latency_ms\":");
    json_latency(&b, run->lat, run->nlat);
    buf_fmt(&b, ",\"unfinished_after_window\":%ld,\"answered_total\":%ld,\"connects\":%ld,\"loadgen_cpu_s\":%.3f}\n",
            run->unfinished, run->answered, run->connects, cpu);
    fwrite(b.p, 1, b.len, stdout);
    free(b.p);
}

/* ---- the program ---- */

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " --port PORT --body JSON [--host 127.0.0.1] [--path /v1/chat/completions]\n"
                    "       [--concurrency 16] [--requests 10000] [--duration 5] [--warmup 1] [--timeout 30]\n"
                    "       [--api-key sk-bench-0000] [--coalesce-us 0]\n");
    exit(2);
}

static struct options parse_options(int argc, char **argv)
{
    struct options o = {.host = "127.0.0.1", .path = "/v1/chat/completions", .api_key = "sk-bench-0000",
                        .concurrency = 16, .requests = 10000, .duration = 5.0, .warmup = 1.0, .timeout = 30.0};
    for (int i = 1; i < argc; i += 2) {
        const char *name = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            usage();
        if (strcmp(name, "--host") == 0)
            o.host = v;
        else if (strcmp(name, "--port") == 0)
            o.port = (int)arg_number(PROG, name, v, 1, 65535);
        else if (strcmp(name, "--path") == 0)
            o.path = v;
        else if (strcmp(name, "--body") == 0)
            o.body = v;
        else if (strcmp(name, "--api-key") == 0)
            o.api_key = v;
        else if (strcmp(name, "--concurrency") == 0)
            o.concurrency = (int)arg_number(PROG, name, v, 1, 4096);
        else if (strcmp(name, "--requests") == 0)
            o.requests = (long)arg_number(PROG, name, v, 1, 1e9);
        else if (strcmp(name, "--duration") == 0)
            o.duration = arg_number(PROG, name, v, 1e-3, 3600);
        else if (strcmp(name, "--warmup") == 0)
            o.warmup = arg_number(PROG, name, v, 0, 3600);
        else if (strcmp(name, "--timeout") == 0)
            o.timeout = arg_number(PROG, name, v, 1e-3, 3600);
        else if (strcmp(name, "--coalesce-us") == 0)
            o.coalesce_us = (long)arg_number(PROG, name, v, 0, 100000);
        else
            usage();
    }
    if (o.port == 0 || o.body == NULL)
        usage();
    o.addr = loopback_addr(PROG, o.host);
    return o;
}

/* Room for one socket per client. */
static void raise_fd_limit(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)need ? rl.rlim_max : (rlim_t)need;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct run run = {.o = parse_options(argc, argv)};
    struct options *o = &run.o;
    /* the same bytes as wire.http_request */
    buf_fmt(&run.request,
            "POST %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: polyroute-bench\r\nAccept: */*\r\n"
            "Content-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %zu\r\n\r\n%s",
            o->path, o->host, o->port, o->api_key, strlen(o->body), o->body);
    raise_fd_limit(o->concurrency + 64);
    run.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (run.epfd < 0)
        die(PROG, "epoll_create1");
    run.min_completions = o->requests < o->concurrency ? o->requests : o->concurrency;
    run.started = now();
    run.open_at = run.started + o->warmup + o->timeout; /* at the latest */
    run.end_at = run.started + o->warmup + o->duration + 3 * o->timeout + 5.0; /* loadgen.hard_limit */

    struct client *clients = calloc((size_t)o->concurrency, sizeof *clients);
    if (clients == NULL)
        die(PROG, "out of memory");
    for (int i = 0; i < o->concurrency; i++) {
        clients[i].fd = -1;
        clients[i].first = 1;
        client_issue(&run, &clients[i], run.started);
    }

    struct epoll_event events[512];
    while (run.done_clients < o->concurrency) {
        double t = now();
        if (t >= run.end_at) {
            char detail[64];
            snprintf(detail, sizeof detail, "%d workers still running at the hard limit",
                     o->concurrency - run.done_clients);
            record_error(&run, t, "stuck", detail);
            break;
        }
        tick(&run, clients, t);
        int n = epoll_wait(run.epfd, events, 512, wait_ms(&run, t));
        if (n < 0 && errno != EINTR)
            die(PROG, "epoll_wait");
        for (int i = 0; i < n; i++)
            client_event(&run, events[i].data.ptr, events[i].events);
        coalesce(n, o->coalesce_us);
    }
    print_result(&run);
    return 0;
}
