/*
 * The chat request's body, for bench/native/upstream.c: just enough JSON to
 * validate it (strings, escapes, nesting) and to read the three members that
 * change the answer: "model", "stream" and "stream_options.include_usage".
 * Included once, by upstream.c.
 */
#ifndef BENCH_NATIVE_CHAT_REQUEST_H
#define BENCH_NATIVE_CHAT_REQUEST_H

#include <stddef.h>
#include <string.h>

#define MODEL_MAX 1024  /* bytes of the echoed model name */
#define JSON_DEPTH 128  /* nesting of the request JSON */

struct json {
    const char *p, *end;
};

struct chat {
    const char *model; /* the raw (still escaped) contents of the "model" string */
    size_t model_len;
    int stream;        /* "stream": true */
    int include_usage; /* "stream_options": {"include_usage": true} */
};

static int json_value(struct json *j, int depth);

static void json_ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string at j->p; *s, *n get its raw contents, escapes kept (so it can be echoed as is). */
static int json_string(struct json *j, const char **s, size_t *n)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    const char *start = ++j->p;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            *s = start;
            *n = (size_t)(j->p++ - start);
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            j->p++;
            continue;
        }
        if (j->end - j->p < 2 || !strchr("\"\\/bfnrtu", j->p[1]))
            return -1;
        if (j->p[1] == 'u') {
            if (j->end - j->p < 6 || !is_hex(j->p[2]) || !is_hex(j->p[3]) || !is_hex(j->p[4]) || !is_hex(j->p[5]))
                return -1;
            j->p += 4;
        }
        j->p += 2;
    }
    return -1;
}

static int json_word(struct json *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return -1;
    j->p += n;
    return 0;
}

static int json_number(struct json *j)
{
    const char *start = j->p;
    while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || (*j->p && strchr("+-.eE", *j->p))))
        j->p++;
    return j->p > start ? 0 : -1;
}

/*
 * Called with each member's key, j->p at its value. Returns 1 to have the value
 * skipped, 0 when it consumed the value itself, -1 when the JSON is bad.
 */
typedef int member_fn(struct json *j, const char *key, size_t key_len, struct chat *c, int depth);

/* An object at j->p; fn (may be NULL) sees every member. */
static int json_object(struct json *j, int depth, member_fn *fn, struct chat *c)
{
    j->p++; /* '{' */
    json_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        const char *key;
        size_t key_len;
        json_ws(j);
        if (json_string(j, &key, &key_len) < 0)
            return -1;
        json_ws(j);
        if (j->p >= j->end || *j->p++ != ':')
            return -1;
        json_ws(j);
        int rc = fn ? fn(j, key, key_len, c, depth) : 1;
        if (rc < 0 || (rc > 0 && json_value(j, depth) < 0))
            return -1;
        json_ws(j);
        if (j->p >= j->end)
            return -1;
        if (*j->p == '}') {
            j->p++;
            return 0;
        }
        if (*j->p++ != ',')
            return -1;
    }
}

static int json_array(struct json *j, int depth)
{
    j->p++; /* '[' */
    json_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (json_value(j, depth) < 0)
            return -1;
        json_ws(j);
        if (j->p >= j->end)
            return -1;
        if (*j->p == ']') {
            j->p++;
            return 0;
        }
        if (*j->p++ != ',')
            return -1;
    }
}

/* Skips (and so validates) one value. */
static int json_value(struct json *j, int depth)
{
    const char *s;
    size_t n;
    json_ws(j);
    if (j->p >= j->end || depth > JSON_DEPTH)
        return -1;
    switch (*j->p) {
    case '"': return json_string(j, &s, &n);
    case '{': return json_object(j, depth + 1, NULL, NULL);
    case '[': return json_array(j, depth + 1);
    case 't': return json_word(j, "true");
    case 'f': return json_word(j, "false");
    case 'n': return json_word(j, "null");
    default: return json_number(j);
    }
}

static int is_true(const struct json *j)
{
    return j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0;
}

static int options_member(struct json *j, const char *key, size_t key_len, struct chat *c, int depth)
{
    (void)depth;
    if (key_len == 13 && memcmp(key, "include_usage", 13) == 0)
        c->include_usage = is_true(j);
    return 1;
}

/* The request's top-level members; a later duplicate wins, as in a Python dict. */
static int chat_member(struct json *j, const char *key, size_t key_len, struct chat *c, int depth)
{
    if (key_len == 5 && memcmp(key, "model", 5) == 0) {
        c->model = NULL;
        if (j->p < j->end && *j->p == '"')
            return json_string(j, &c->model, &c->model_len);
    } else if (key_len == 6 && memcmp(key, "stream", 6) == 0) {
        c->stream = is_true(j);
    } else if (key_len == 14 && memcmp(key, "stream_options", 14) == 0) {
        c->include_usage = 0;
        if (j->p < j->end && *j->p == '{')
            return json_object(j, depth + 1, options_member, c);
    }
    return 1;
}

/* NULL when body is a JSON object with a string "model", else why not. */
static const char *parse_chat(const char *body, size_t len, struct chat *c)
{
    struct json j = {body, body + len};
    memset(c, 0, sizeof *c);
    json_ws(&j);
    if (j.p >= j.end || *j.p != '{' || json_object(&j, 1, chat_member, c) < 0)
        return "invalid JSON body";
    json_ws(&j);
    if (j.p != j.end || c->model == NULL)
        return "invalid JSON body";
    if (c->model_len > MODEL_MAX)
        return "model name too long";
    return NULL;
}

#endif
