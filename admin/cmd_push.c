/*
 * mirrordav push LOCAL URL [--basis OLDLOCAL] [--chunk BYTES] [--gzip]
 *
 * Sends LOCAL to the server as PATCH-APPLY requests (SPEC section 5): the
 * caller passes the previous local copy, the one the server holds, as
 * --basis; without it the whole file is sent with PUT.  Nothing is
 * fetched from the server.
 *
 * A delta (librsync, the rdiff format) is made against the file as the
 * server holds it when each request arrives: with --chunk, request k
 * rewrites bytes [kC, (k+1)C) of the new file and the server's file is
 * then NEW[0,kC) + OLD[kC,..), so its signature is put together from the
 * two files' signatures (the chunk is a multiple of the block length),
 * never recomputed.  The last request truncates the file to its new size.
 * Deltas and gzip bodies are produced while curl sends them: memory does
 * not grow with the file.  Exit 0 when every request was accepted, 1 when
 * one was refused (its status and message on stderr), 2 on a usage or
 * local error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <librsync.h>
#include <zlib.h>

#include "admin/commands.h"

#define IOBUF (64 * 1024)

typedef struct {
    FILE *in;      /* the bytes to send (raw), or to make a delta of */
    uint64_t left; /* of them still to read */
    rs_job_t *job; /* delta job, or NULL to send them as they are */
    rs_buffers_t rb;
    char inbuf[IOBUF];
    int in_eof, job_done, failed;
    int gz; /* deflate what the above produces */
    z_stream z;
    char mid[IOBUF];
    int raw_done, z_done;
    uint64_t wire; /* bytes handed to curl */
} source;

/* Up to CAP bytes of the body before any gzip: the delta, or raw data. */
static size_t produce_raw(source *s, char *out, size_t cap)
{
    if (!s->job) {
        size_t want = s->left < cap ? (size_t)s->left : cap;
        size_t n = want ? fread(out, 1, want, s->in) : 0;
        s->left -= n;
        if (n < want)
            s->failed = ferror(s->in) ? 1 : s->failed;
        return n;
    }
    while (!s->job_done) {
        rs_result r;
        size_t produced;

        if (s->rb.avail_in == 0 && !s->in_eof) {
            size_t want = s->left < IOBUF ? (size_t)s->left : IOBUF;
            size_t n = want ? fread(s->inbuf, 1, want, s->in) : 0;
            s->left -= n;
            s->rb.next_in = s->inbuf;
            s->rb.avail_in = n;
            if (n < want && ferror(s->in)) {
                s->failed = 1;
                return 0;
            }
            if (s->left == 0 || n == 0)
                s->in_eof = s->rb.eof_in = 1;
        }
        s->rb.next_out = out;
        s->rb.avail_out = cap;
        r = rs_job_iter(s->job, &s->rb);
        produced = cap - s->rb.avail_out;
        if (r == RS_DONE)
            s->job_done = 1;
        else if (r != RS_BLOCKED) {
            fprintf(stderr, "mirrordav push: delta: %s\n", rs_strerror(r));
            s->failed = 1;
            return 0;
        }
        if (produced)
            return produced;
    }
    return 0;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    source *s = ud;
    size_t cap = size * nitems, n;

    if (!s->gz) {
        n = produce_raw(s, buf, cap);
        s->wire += n;
        return s->failed ? CURL_READFUNC_ABORT : n;
    }
    s->z.next_out = (Bytef *)buf;
    s->z.avail_out = (uInt)cap;
    while (s->z.avail_out == cap && !s->z_done) {
        int rc;
        if (s->z.avail_in == 0 && !s->raw_done) {
            size_t m = produce_raw(s, s->mid, sizeof(s->mid));
            if (s->failed)
                return CURL_READFUNC_ABORT;
            if (m == 0)
                s->raw_done = 1;
            s->z.next_in = (Bytef *)s->mid;
            s->z.avail_in = (uInt)m;
        }
        rc = deflate(&s->z, s->raw_done ? Z_FINISH : Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            s->z_done = 1;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return CURL_READFUNC_ABORT;
    }
    n = cap - s->z.avail_out;
    s->wire += n;
    return n;
}

typedef struct {
    char text[512];
    size_t len;
} reply;

static size_t write_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    reply *r = ud;
    size_t n = size * nitems, room = sizeof(r->text) - 1 - r->len;

    memcpy(r->text + r->len, buf, n < room ? n : room);
    r->len += n < room ? n : room;
    r->text[r->len] = '\0';
    return n;
}

/* The human-readable part of a mod_dav error body, else the body. */
static const char *cause(reply *r)
{
    char *a = strstr(r->text, "<m:human-readable"), *b;

    if (a && (a = strchr(a, '>')) && (b = strstr(a, "</m:human"))) {
        *b = '\0';
        a++;
        while (*a == '\n' || *a == ' ')
            a++;
        for (b = a + strlen(a); b > a && (b[-1] == '\n' || b[-1] == ' ');)
            *--b = '\0';
        return a;
    }
    return r->text;
}

/* One request; 0 when accepted (2xx), 1 when refused, 2 on error. */
static int send_request(CURL *h, const char *url, const char *method,
                        struct curl_slist *hdrs, source *src,
                        curl_off_t known_size)
{
    reply rep = {{0}, 0};
    long code = 0;
    CURLcode rc;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, src);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &rep);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (known_size >= 0)
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, known_size);
    rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "mirrordav push: %s %s: %s\n", method, url,
                curl_easy_strerror(rc));
        return 2;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) {
        fprintf(stderr, "mirrordav push: %s %s: %ld %s\n", method, url, code,
                cause(&rep));
        return 1;
    }
    return 0;
}

static void source_init(source *s, FILE *in, uint64_t len, rs_job_t *job,
                        int gz)
{
    memset(s, 0, sizeof(*s));
    s->in = in;
    s->left = len;
    s->job = job;
    s->gz = gz;
    if (gz)
        deflateInit2(&s->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

static void source_done(source *s)
{
    if (s->gz)
        deflateEnd(&s->z);
    if (s->job)
        rs_job_free(s->job);
}

/* The signature of PATH into a new temporary file (its header is 12
 * bytes: magic, block length, strong sum length; then one entry a block). */
static FILE *signature(const char *path, size_t block_len, size_t strong_len,
                       rs_magic_number magic)
{
    FILE *in = fopen(path, "rb"), *out = tmpfile();
    rs_result r;

    if (!in || !out) {
        fprintf(stderr, "mirrordav push: %s: %s\n", path, strerror(errno));
        if (in)
            fclose(in);
        if (out)
            fclose(out);
        return NULL;
    }
    r = rs_sig_file(in, out, block_len, strong_len, magic, NULL);
    fclose(in);
    if (r != RS_DONE) {
        fprintf(stderr, "mirrordav push: signature of %s: %s\n", path,
                rs_strerror(r));
        fclose(out);
        return NULL;
    }
    return out;
}

static int copy_bytes(FILE *from, long off, FILE *to, uint64_t len)
{
    char buf[IOBUF];

    if (fseek(from, off, SEEK_SET) != 0)
        return -1;
    while (len > 0) {
        size_t n =
            fread(buf, 1, len < sizeof(buf) ? (size_t)len : sizeof(buf), from);
        if (n == 0 || fwrite(buf, 1, n, to) != n)
            return -1;
        len -= n;
    }
    return 0;
}

/* The signature of NEW[0,CUT) + OLD[CUT,..), CUT a multiple of the block
 * length, loaded for a delta. */
static rs_signature_t *combined(FILE *sig_old, FILE *sig_new,
                                uint64_t old_size, uint64_t cut,
                                size_t block_len, size_t entry)
{
    uint64_t head = cut / block_len;
    uint64_t old_blocks = (old_size + block_len - 1) / block_len;
    FILE *t = tmpfile();
    rs_signature_t *sig = NULL;
    int ok;

    if (!t)
        return NULL;
    ok = copy_bytes(sig_new, 0, t, 12 + head * entry) == 0 &&
         (old_blocks <= head ||
          copy_bytes(sig_old, (long)(12 + head * entry), t,
                     (old_blocks - head) * entry) == 0);
    if (ok && fseek(t, 0, SEEK_SET) == 0 &&
        rs_loadsig_file(t, &sig, NULL) == RS_DONE &&
        rs_build_hash_table(sig) == RS_DONE) {
        fclose(t);
        return sig;
    }
    if (sig)
        rs_free_sumset(sig);
    fclose(t);
    return NULL;
}

static void progress(int tty, uint64_t done, uint64_t total, uint64_t wire)
{
    if (tty)
        fprintf(stderr,
                "\r%" PRIu64 "/%" PRIu64 " bytes pushed, %" PRIu64
                " on the wire",
                done, total, wire);
}

int cmd_push(int argc, char **argv)
{
    static const struct option opts[] = {
        {"basis", required_argument, NULL, 'b'},
        {"chunk", required_argument, NULL, 'c'},
        {"gzip", no_argument, NULL, 'z'},
        {NULL, 0, NULL, 0},
    };
    const char *basis = NULL, *local, *url;
    uint64_t chunk = 0, N, L, wire = 0;
    struct stat st, bst;
    int o, gz = 0, rc = 0, tty = isatty(2);
    CURL *h;
    FILE *in;

    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        if (o == 'b')
            basis = optarg;
        else if (o == 'c') {
            chunk = strtoull(optarg, &end, 10);
            if (*end || chunk == 0)
                o = '?';
        }
        else if (o == 'z')
            gz = 1;
        if (o == '?')
            return 2;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: mirrordav push LOCAL URL [--basis OLDLOCAL] "
                        "[--chunk BYTES] [--gzip]\n");
        return 2;
    }
    local = argv[optind];
    url = argv[optind + 1];
    if (stat(local, &st) != 0 || !S_ISREG(st.st_mode) ||
        (basis && (stat(basis, &bst) != 0 || !S_ISREG(bst.st_mode)))) {
        fprintf(stderr, "mirrordav push: %s: not a readable file\n",
                basis && stat(local, &st) == 0 ? basis : local);
        return 2;
    }
    N = (uint64_t)st.st_size;
    if (!(in = fopen(local, "rb"))) {
        fprintf(stderr, "mirrordav push: %s: %s\n", local, strerror(errno));
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    h = curl_easy_init();
    if (!basis) {
        /* No basis: the whole file, with PUT. */
        struct curl_slist *hd = curl_slist_append(NULL, "Expect:");
        source src;
        if (gz)
            hd = curl_slist_append(hd, "Content-Encoding: gzip");
        source_init(&src, in, N, NULL, gz);
        rc = send_request(h, url, "PUT", hd, &src, gz ? -1 : (curl_off_t)N);
        wire = src.wire;
        source_done(&src);
        curl_slist_free_all(hd);
    }
    else {
        rs_magic_number magic = RS_RK_BLAKE2_SIG_MAGIC;
        size_t block_len = 0, strong_len = 0, entry;
        FILE *sig_old = NULL, *sig_new = NULL;
        uint64_t S = 0;

        L = (uint64_t)bst.st_size;
        rs_sig_args(L > N ? L : N, &magic, &block_len, &strong_len);
        entry = 4 + strong_len;
        if (chunk) {
            /* A multiple of the block length, so that the server's file
             * between requests is whole blocks of each version. */
            if (chunk < block_len)
                chunk = block_len;
            chunk -= chunk % block_len;
        }
        else
            chunk = N ? N : 1;
        sig_old = signature(basis, block_len, strong_len, magic);
        sig_new =
            chunk < N ? signature(local, block_len, strong_len, magic) : NULL;
        if (!sig_old || (chunk < N && !sig_new))
            rc = 2;
        do {
            uint64_t E1 = S + chunk < N ? S + chunk : N; /* E + 1 */
            int last = E1 == N;
            uint64_t T = last ? N : (L > E1 ? L : E1);
            char range[128];
            struct curl_slist *hd;
            rs_signature_t *sig;
            source src;

            if (rc)
                break;
            sig = combined(sig_old, sig_new ? sig_new : sig_old, L, S,
                           block_len, entry);
            if (!sig) {
                fprintf(stderr, "mirrordav push: cannot load a signature\n");
                rc = 2;
                break;
            }
            if (E1 == S)
                snprintf(range, sizeof(range), "Content-Range: bytes 0--1/0");
            else
                snprintf(range, sizeof(range),
                         "Content-Range: bytes %" PRIu64 "-%" PRIu64
                         "/%" PRIu64,
                         S, E1 - 1, T);
            hd = curl_slist_append(NULL, "Expect:");
            hd = curl_slist_append(hd, range);
            if (last)
                hd = curl_slist_append(hd, "FileTruncate: true");
            if (gz)
                hd = curl_slist_append(hd, "Content-Encoding: gzip");
            fseek(in, (long)S, SEEK_SET);
            source_init(&src, in, E1 - S, rs_delta_begin(sig), gz);
            rc = send_request(h, url, "PATCH-APPLY", hd, &src, -1);
            wire += src.wire;
            source_done(&src);
            rs_free_sumset(sig);
            curl_slist_free_all(hd);
            S = E1;
            progress(tty, S, N, wire);
            if (last)
                break;
        } while (1);
        if (sig_old)
            fclose(sig_old);
        if (sig_new)
            fclose(sig_new);
    }
    if (tty)
        fputc('\n', stderr);
    if (rc == 0)
        printf("%s: %" PRIu64 " bytes pushed, %" PRIu64 " on the wire\n",
               local, N, wire);
    curl_easy_cleanup(h);
    curl_global_cleanup();
    fclose(in);
    return rc;
}
