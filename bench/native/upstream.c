/*
 * The "instant" fake OpenAI upstream of bench/, in C. It answers every chat
 * completion at once with the bytes bench/upstream.py sends for zero latency
 * (bench/wire.py's shapes, the requested model echoed), for a few microseconds
 * of CPU per request instead of Python's tens.
 *
 * One thread and one level-triggered epoll loop per process; --processes N
 * forks N processes, each with its own SO_REUSEPORT socket. HTTP/1.1
 * keep-alive; requests may be pipelined or split across reads; bodies are
 * framed by Content-Length (a chunked request body is refused with 411).
 *
 *   POST .../chat/completions   a chat.completion, or with "stream": true the
 *                               SSE chunks and "data: [DONE]" in one HTTP chunk
 *   GET  .../models             the two bench models
 *   anything else               404, or 405 for a known path and another method
 *
 * Like bench/upstream.py it does not check Authorization. SIGTERM or SIGINT
 * stops it.
 *
 * --coalesce-us N pauses up to N microseconds after a wakeup that brought few
 * events (common.h says why): the answers are then "at once" within N us.
 *
 *   upstream --port 9001 [--host 127.0.0.1] [--tokens 20] [--processes 1] [--coalesce-us 0]
 */
#include "common.h"
#include "chat_request.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROG "upstream"
#define HEAD_MAX (64 * 1024)       /* request line and headers */
#define BODY_MAX (8 * 1024 * 1024) /* request body */
#define READ_CHUNK (16 * 1024)     /* free space offered to each read */
#define CREATED "1700000000"       /* bench/wire.py CREATED */
#define PROMPT_TOKENS 12           /* bench/wire.py _usage */
#define TOKEN_TEXT "tok "          /* bench/wire.py TOKEN_TEXT */

/* ---- the process: its sockets and the answer parts built once ---- */

struct server {
    int epfd, listen_fd, signal_fd;
    int tokens;                    /* tokens in every answer */
    unsigned long long next_id;    /* answers are chatcmpl-bench1, 2, ... */
    struct buf completion_tail;    /* a completion from after its model to its end */
    struct buf usage;              /* "usage":{...} for these tokens */
    struct buf scratch;            /* one streamed body while it is built */
};

/* Tags for the epoll entries that are not connections. */
static char LISTENER_TAG, SIGNAL_TAG;

/* One client connection. */
struct conn {
    int fd;
    struct buf in, out; /* bytes read and not yet parsed; answers not yet written */
    size_t out_sent;
    int closing; /* close once out is written: the client asked, or sent something unusable */
    int writing; /* waiting for EPOLLOUT, not reading meanwhile */
};

/* One parsed request; pointers into conn.in. */
struct request {
    const char *method, *path, *body; /* path without its query */
    size_t method_len, path_len, body_len;
    int keep_alive;
};

/* ---- HTTP request parsing ---- */

/*
 * Parses the request at p[0..n). Returns its length when it is complete, 0 when
 * more bytes are needed, or minus the HTTP status to answer when it cannot be
 * served (the connection is closed after that answer).
 */
static long parse_request(const char *p, size_t n, struct request *r)
{
    const char *end = memmem(p, n < HEAD_MAX ? n : HEAD_MAX, "\r\n\r\n", 4);
    if (end == NULL)
        return n >= HEAD_MAX ? -431 : 0;
    size_t head = (size_t)(end - p) + 4;
    /* request line: METHOD SP TARGET SP HTTP/1.x */
    const char *eol = memmem(p, head, "\r\n", 2);
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (sp1 == NULL || sp1 == p || sp2 == NULL || sp2 == sp1 + 1 || eol - sp2 != 9
        || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
        return -400;
    r->method = p;
    r->method_len = (size_t)(sp1 - p);
    r->path = sp1 + 1;
    const char *query = memchr(r->path, '?', (size_t)(sp2 - r->path));
    r->path_len = (size_t)((query ? query : sp2) - r->path);
    int http11 = sp2[8] == '1', wants_close = 0, wants_keep = 0;
    long long length = 0;
    const char *at = eol + 2;
    struct header h;
    int rc;
    while ((rc = next_header(&at, end + 2, &h)) > 0) {
        if (name_is(h.name, h.name_len, "content-length")) {
            length = parse_length(h.value, h.value_len, BODY_MAX);
            if (length < 0)
                return length == -2 ? -413 : -400;
        } else if (name_is(h.name, h.name_len, "transfer-encoding")) {
            return -411; /* the clients here send Content-Length; a chunked body is refused */
        } else if (name_is(h.name, h.name_len, "connection")) {
            wants_close |= has_token(h.value, h.value_len, "close");
            wants_keep |= has_token(h.value, h.value_len, "keep-alive");
        }
    }
    if (rc < 0)
        return -400;
    if (n < head + (size_t)length)
        return 0;
    r->body = p + head;
    r->body_len = (size_t)length;
    r->keep_alive = http11 ? !wants_close : wants_keep && !wants_close;
    return (long)(head + (size_t)length);
}

/* ---- answers, appended to conn.out ---- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    default: return "Error";
    }
}

static void json_head(struct buf *out, int status, size_t length, int keep_alive)
{
    buf_fmt(out, "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n%s\r\n", status,
            reason(status), length, keep_alive ? "" : "connection: close\r\n");
}

/* An error in OpenAI's shape; message must need no JSON escaping. */
static void send_error(struct conn *c, int status, const char *message, int keep_alive)
{
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}",
                     message);
    json_head(&c->out, status, (size_t)n, keep_alive);
    buf_add(&c->out, body, (size_t)n);
}

/* The same bytes as wire.completion(model, id, tokens): orjson's compact output, key for key. */
static void send_completion(struct server *s, struct conn *c, const struct chat *chat, int keep_alive)
{
    static const char head[] = "{\"id\":\"chatcmpl-bench";
    static const char mid[] = "\",\"object\":\"chat.completion\",\"created\":" CREATED ",\"model\":\"";
    char id[24];
    int id_len = snprintf(id, sizeof id, "%llu", s->next_id++);
    size_t length = sizeof head - 1 + (size_t)id_len + sizeof mid - 1 + chat->model_len + s->completion_tail.len;
    json_head(&c->out, 200, length, keep_alive);
    buf_reserve(&c->out, length);
    buf_add(&c->out, head, sizeof head - 1);
    buf_add(&c->out, id, (size_t)id_len);
    buf_add(&c->out, mid, sizeof mid - 1);
    buf_add(&c->out, chat->model, chat->model_len);
    buf_add(&c->out, s->completion_tail.p, s->completion_tail.len);
}

/* One SSE event of wire.StreamEvents: "data: {chunk}\n\n", choices as given. */
static void stream_event(struct buf *b, unsigned long long id, const struct chat *chat, const char *choices,
                         int usage_null)
{
    buf_fmt(b,
            "data: {\"id\":\"chatcmpl-bench%llu\",\"object\":\"chat.completion.chunk\",\"created\":" CREATED
            ",\"model\":\"%.*s\",\"system_fingerprint\":\"fp_bench\",\"choices\":%s%s}\n\n",
            id, (int)chat->model_len, chat->model, choices, usage_null ? ",\"usage\":null" : "");
}

/* The whole stream of wire.StreamEvents at once, as bench/upstream.py does with no token interval. */
static void send_stream(struct server *s, struct conn *c, const struct chat *chat, int keep_alive)
{
    unsigned long long id = s->next_id++;
    int u = chat->include_usage;
    struct buf *b = &s->scratch;
    b->len = 0;
    stream_event(b, id, chat, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                              "\"finish_reason\":null}]", u);
    size_t start = b->len;
    stream_event(b, id, chat, "[{\"index\":0,\"delta\":{\"content\":\"" TOKEN_TEXT "\"},\"logprobs\":null,"
                              "\"finish_reason\":null}]", u);
    size_t token = b->len - start;
    for (int i = 1; i < s->tokens; i++) {
        buf_reserve(b, token); /* before taking b->p: it may move */
        buf_add(b, b->p + start, token);
    }
    stream_event(b, id, chat, "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]", u);
    if (u) {
        buf_fmt(b, "data: {\"id\":\"chatcmpl-bench%llu\",\"object\":\"chat.completion.chunk\",\"created\":" CREATED
                   ",\"model\":\"%.*s\",\"system_fingerprint\":\"fp_bench\",\"choices\":[],%.*s}\n\n",
                id, (int)chat->model_len, chat->model, (int)s->usage.len, s->usage.p);
    }
    buf_str(b, "data: [DONE]\n\n");
    buf_fmt(&c->out,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            "transfer-encoding: chunked\r\n%s\r\n%zx\r\n",
            keep_alive ? "" : "connection: close\r\n", b->len);
    buf_add(&c->out, b->p, b->len);
    buf_str(&c->out, "\r\n0\r\n\r\n");
}

static void send_models(struct conn *c, int keep_alive)
{
    static const char body[] =
        "{\"object\":\"list\",\"data\":["
        "{\"id\":\"bench-model\",\"object\":\"model\",\"created\":" CREATED ",\"owned_by\":\"bench\"},"
        "{\"id\":\"bench-instant\",\"object\":\"model\",\"created\":" CREATED ",\"owned_by\":\"bench\"}]}";
    json_head(&c->out, 200, sizeof body - 1, keep_alive);
    buf_add(&c->out, body, sizeof body - 1);
}

static int ends_with(const char *p, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(p + n - k, suffix, k) == 0;
}

static void answer(struct server *s, struct conn *c, const struct request *r)
{
    int ka = r->keep_alive;
    if (ends_with(r->path, r->path_len, "/chat/completions")) {
        if (!name_is(r->method, r->method_len, "POST")) {
            send_error(c, 405, "use POST", ka);
            return;
        }
        struct chat chat;
        const char *why = parse_chat(r->body, r->body_len, &chat);
        if (why != NULL)
            send_error(c, 400, why, ka);
        else if (chat.stream)
            send_stream(s, c, &chat, ka);
        else
            send_completion(s, c, &chat, ka);
    } else if (ends_with(r->path, r->path_len, "/models")) {
        if (name_is(r->method, r->method_len, "GET"))
            send_models(c, ka);
        else
            send_error(c, 405, "use GET", ka);
    } else {
        send_error(c, 404, "no such route", ka);
    }
}

/* ---- connections ---- */

static void conn_close(struct conn *c)
{
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

static void watch(struct server *s, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die(PROG, "epoll_ctl");
}

/* Why a request that parse_request refused with this status cannot be served. */
static const char *refusal(long status)
{
    switch (status) {
    case 411: return "send the body with a Content-Length: chunked request bodies are not supported";
    case 413: return "request body too large";
    case 431: return "request head too large";
    default: return "bad HTTP request";
    }
}

/* Answers every complete request in c->in, in order. */
static void serve_input(struct server *s, struct conn *c)
{
    size_t off = 0;
    while (!c->closing && off < c->in.len) {
        struct request r;
        long n = parse_request(c->in.p + off, c->in.len - off, &r);
        if (n == 0)
            break;
        if (n < 0) {
            send_error(c, (int)-n, refusal(-n), 0);
            c->closing = 1;
            break;
        }
        answer(s, c, &r);
        c->closing = !r.keep_alive;
        off += (size_t)n;
    }
    if (c->closing)
        c->in.len = 0; /* nothing more is read from it */
    else if (off > 0) {
        memmove(c->in.p, c->in.p + off, c->in.len - off);
        c->in.len -= off;
    }
}

/* Writes what is pending. Returns -1 when the connection is to be closed. */
static int conn_flush(struct server *s, struct conn *c)
{
    int rc = send_rest(c->fd, c->out.p, c->out.len, &c->out_sent);
    if (rc < 0)
        return -1;
    if (rc > 0) {
        if (!c->writing)
            watch(s, c, EPOLLOUT); /* stop reading until the client takes its answers */
        c->writing = 1;
        return 0;
    }
    c->out.len = c->out_sent = 0;
    if (c->closing)
        return -1;
    if (c->writing)
        watch(s, c, EPOLLIN);
    c->writing = 0;
    return 0;
}

static void conn_event(struct server *s, struct conn *c, uint32_t events)
{
    if ((events & EPOLLOUT) && conn_flush(s, c) < 0) {
        conn_close(c);
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->writing)
        return;
    buf_reserve(&c->in, READ_CHUNK);
    ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* the client is gone: what it sent before was answered already */
        conn_close(c);
        return;
    }
    c->in.len += (size_t)n;
    serve_input(s, c);
    if (conn_flush(s, c) < 0)
        conn_close(c);
}

static void accept_all(struct server *s)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                fprintf(stderr, PROG ": accept: %s\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL)
            die(PROG, "out of memory");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            die(PROG, "epoll_ctl");
    }
}

/* ---- the process ---- */

static void add_fd(struct server *s, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die(PROG, "epoll_ctl");
}

static int listen_on(struct in_addr host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        die(PROG, "socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = host};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die(PROG, "bind");
    if (listen(fd, 4096) < 0)
        die(PROG, "listen");
    return fd;
}

/* The parts of every answer that depend on --tokens only. */
static void build_answers(struct server *s)
{
    buf_fmt(&s->usage, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
            PROMPT_TOKENS, s->tokens, PROMPT_TOKENS + s->tokens);
    struct buf *t = &s->completion_tail;
    buf_str(t, "\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{\"index\":0,\"message\":"
               "{\"role\":\"assistant\",\"content\":\"");
    for (int i = 0; i < s->tokens; i++)
        buf_str(t, TOKEN_TEXT);
    buf_str(t, "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
    buf_add(t, s->usage.p, s->usage.len);
    buf_str(t, "}");
}

static void usage(void)
{
    fprintf(stderr, "usage: " PROG " --port PORT [--host 127.0.0.1] [--tokens 20] [--processes 1]\n"
                    "       [--coalesce-us 0]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, processes = 1;
    long coalesce_us = 0;
    struct server s = {.tokens = 20, .next_id = 1};
    for (int i = 1; i < argc; i += 2) {
        const char *name = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL)
            usage();
        if (strcmp(name, "--host") == 0)
            host = value;
        else if (strcmp(name, "--port") == 0)
            port = (int)arg_number(PROG, name, value, 1, 65535);
        else if (strcmp(name, "--tokens") == 0)
            s.tokens = (int)arg_number(PROG, name, value, 1, 100000);
        else if (strcmp(name, "--processes") == 0)
            processes = (int)arg_number(PROG, name, value, 1, 64);
        else if (strcmp(name, "--coalesce-us") == 0)
            coalesce_us = (long)arg_number(PROG, name, value, 0, 100000);
        else
            usage();
    }
    if (port == 0)
        usage();
    struct in_addr addr = loopback_addr(PROG, host);

    /* SIGTERM and SIGINT arrive through a signalfd in the loop: no race with epoll_wait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    for (int i = 1; i < processes; i++) {
        pid_t pid = fork();
        if (pid < 0)
            die(PROG, "fork");
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* the harness signals the group; this covers a killed parent */
            break;
        }
    }

    build_answers(&s);
    s.listen_fd = listen_on(addr, port);
    s.signal_fd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    s.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s.signal_fd < 0 || s.epfd < 0)
        die(PROG, "signalfd/epoll");
    add_fd(&s, s.listen_fd, &LISTENER_TAG);
    add_fd(&s, s.signal_fd, &SIGNAL_TAG);

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(s.epfd, events, 256, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die(PROG, "epoll_wait");
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &SIGNAL_TAG)
                return 0; /* open connections close with the process */
            if (tag == &LISTENER_TAG)
                accept_all(&s);
            else
                conn_event(&s, tag, events[i].events);
        }
        coalesce(n, coalesce_us);
    }
}
