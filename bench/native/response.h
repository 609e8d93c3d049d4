/*
 * One HTTP/1.1 response at a time, parsed from the bytes read so far, for
 * bench/native/loadgen.c: the status, keep-alive, and a body framed by
 * Content-Length, chunked transfer-encoding (decoded in place) or the end of
 * the connection. Included once, by loadgen.c.
 */
#ifndef BENCH_NATIVE_RESPONSE_H
#define BENCH_NATIVE_RESPONSE_H

#include "common.h"

#define HEAD_MAX (64 * 1024)        /* response status line and headers */
#define RESP_MAX (16 * 1024 * 1024) /* response body */

/* What has been parsed of the response in flight. */
struct response {
    size_t head;   /* 0 until the head is parsed, then its length */
    int status, keep_alive, chunked, until_eof;
    size_t length; /* Content-Length */
    size_t body;   /* body bytes, decoded in place from in.p + head on */
    size_t scan;   /* chunked: the next raw byte to decode */
    int trailer;   /* chunked: the last chunk was seen, the trailer is being read */
};

/* The status line and headers, p[0..head) ending in the blank line. 0, or -1 with *why. */
static int parse_head(const char *p, size_t head, struct response *r, const char **why)
{
    const char *eol = memmem(p, head, "\r\n", 2);
    if (eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') {
        *why = "bad HTTP response: no status line";
        return -1;
    }
    int http11 = p[7] == '1', wants_close = 0, wants_keep = 0, has_length = 0;
    r->status = (int)parse_length(p + 9, 3, 999);
    if (r->status < 100) {
        *why = "bad HTTP response: no status code";
        return -1;
    }
    const char *at = eol + 2;
    struct header h;
    int rc;
    while ((rc = next_header(&at, p + head - 2, &h)) > 0) {
        if (name_is(h.name, h.name_len, "content-length")) {
            long long v = parse_length(h.value, h.value_len, RESP_MAX);
            if (v < 0) {
                *why = v == -2 ? "response body too large" : "bad HTTP response: bad Content-Length";
                return -1;
            }
            r->length = (size_t)v;
            has_length = 1;
        } else if (name_is(h.name, h.name_len, "transfer-encoding")) {
            r->chunked = has_token(h.value, h.value_len, "chunked");
        } else if (name_is(h.name, h.name_len, "connection")) {
            wants_close |= has_token(h.value, h.value_len, "close");
            wants_keep |= has_token(h.value, h.value_len, "keep-alive");
        }
    }
    if (rc < 0) {
        *why = "bad HTTP response: bad header line";
        return -1;
    }
    r->keep_alive = http11 ? !wants_close : wants_keep && !wants_close;
    if (r->status < 200 || r->status == 204 || r->status == 304) { /* no body */
        r->length = 0;
        r->chunked = 0;
    } else if (!r->chunked && !has_length) {
        r->until_eof = 1;
        r->keep_alive = 0;
    }
    r->head = head;
    r->scan = head;
    return 0;
}

/* Decodes the chunks that have arrived into place. 1 when the body is complete, 0 for more, -1 with *why. */
static int dechunk(struct buf *in, struct response *r, const char **why)
{
    char *p = in->p;
    size_t n = in->len;
    for (;;) {
        char *line = p + r->scan;
        char *eol = memmem(line, n - r->scan, "\r\n", 2);
        if (eol == NULL) {
            *why = "bad HTTP response: chunk line too long";
            return n - r->scan > 4096 ? -1 : 0;
        }
        if (r->trailer) { /* trailer lines, then an empty one */
            r->scan = (size_t)(eol + 2 - p);
            if (eol == line)
                break;
            continue;
        }
        size_t size = 0, digits = 0;
        for (char *q = line; q < eol && digits <= 8; q++, digits++) {
            int d = *q >= '0' && *q <= '9' ? *q - '0' : (*q | 0x20) >= 'a' && (*q | 0x20) <= 'f' ? (*q | 0x20) - 'a' + 10 : -1;
            if (d < 0)
                break; /* chunk extensions after ';' are ignored */
            size = size * 16 + (size_t)d;
        }
        if (digits == 0 || digits > 8 || r->body + size > RESP_MAX) {
            *why = "bad HTTP response: bad chunk size";
            return -1;
        }
        size_t data = (size_t)(eol + 2 - p);
        if (size == 0) {
            r->trailer = 1;
            r->scan = data;
            continue;
        }
        if (n < data + size + 2)
            return 0; /* the chunk is decoded once it has arrived whole */
        if (memcmp(p + data + size, "\r\n", 2) != 0) {
            *why = "bad HTTP response: chunk not followed by CRLF";
            return -1;
        }
        memmove(p + r->head + r->body, p + data, size);
        r->body += size;
        r->scan = data + size + 2;
    }
    if (r->scan != n) {
        *why = "bad HTTP response: bytes after the response";
        return -1;
    }
    return 1;
}

/* 1 when in holds a complete response, 0 for more, -1 with *why. */
static int parse_response(struct buf *in, struct response *r, const char **why)
{
    if (r->head == 0) {
        const char *end = memmem(in->p, in->len, "\r\n\r\n", 4);
        if (end == NULL) {
            *why = "bad HTTP response: head too large";
            return in->len > HEAD_MAX ? -1 : 0;
        }
        if (parse_head(in->p, (size_t)(end - in->p) + 4, r, why) < 0)
            return -1;
    }
    if (r->chunked)
        return dechunk(in, r, why);
    if (r->until_eof) {
        r->body = in->len - r->head;
        *why = "response body too large";
        return r->body > RESP_MAX ? -1 : 0; /* complete at EOF */
    }
    if (in->len - r->head < r->length)
        return 0;
    r->body = r->length;
    *why = "bad HTTP response: bytes after the response";
    return in->len > r->head + r->length ? -1 : 1;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Does the body hold "choices" ... "message" ... "content": "<at least one character>"? */
static int has_content(const char *p, size_t n)
{
    const char *end = p + n, *q = memmem(p, n, "\"choices\"", 9);
    q = q ? memmem(q, (size_t)(end - q), "\"message\"", 9) : NULL;
    q = q ? memmem(q, (size_t)(end - q), "\"content\"", 9) : NULL;
    if (q == NULL)
        return 0;
    q = skip_ws(q + 9, end);
    if (q >= end || *q != ':')
        return 0;
    q = skip_ws(q + 1, end);
    return end - q >= 2 && q[0] == '"' && q[1] != '"';
}

#endif
