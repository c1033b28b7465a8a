/*
 * putload: many small HTTP/1.1 PUTs over keep-alive connections, N threads.
 *
 * Part of mod_mirrordav's bench/ (see bench/run).  Plain sockets, no deps.
 *
 *   putload -p PORT [-H 127.0.0.1] [-c 8] [-n 10000] [-s 4096]
 *           [-P /dav/small/] [-D NDIRS] [-t TIMEOUT_S]
 *
 * Request i (0 <= i < n) goes to  PREFIX [dNNN/] fNNNNNN  (distinct names; with
 * -D the files are spread over NDIRS sub-collections d000..), sent by thread
 * i % c.  Each thread keeps one connection open and reconnects only if the
 * server closes it.  Any final status other than 200/201/204 is a failure.
 *
 * Output, one line on stdout:
 *   requests=N ok=K fail=F elapsed=S rps=R p50_ms=.. p99_ms=.. s200=.. s201=.. s204=.. other=..
 * Exit status 0 if every request got 200/201/204, 1 otherwise, 2 on usage or
 * timeout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port = 0, conns = 8, total = 10000, size = 4096, ndirs = 0;
static int timeout_s = 300;
static const char *prefix = "/dav/small/";

static double *lat;                /* per-request latency, seconds */
static pthread_barrier_t barrier;

struct tstate {
    int id;
    long status[600];
    long fail_io;
    char *body;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int do_connect(void)
{
    struct sockaddr_in sa;
    struct timeval tv = { 60, 0 };
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= w;
        }
    }
    return 0;
}

/* A tiny buffered reader over the socket. */
struct rbuf {
    int fd;
    char buf[16384];
    size_t beg, end;
};

static int rb_fill(struct rbuf *rb)
{
    ssize_t r;
    if (rb->beg > 0 && rb->beg == rb->end)
        rb->beg = rb->end = 0;
    if (rb->end == sizeof rb->buf) {
        if (rb->beg == 0)
            return -1;  /* line too long */
        memmove(rb->buf, rb->buf + rb->beg, rb->end - rb->beg);
        rb->end -= rb->beg;
        rb->beg = 0;
    }
    do
        r = read(rb->fd, rb->buf + rb->end, sizeof rb->buf - rb->end);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return -1;
    rb->end += r;
    return 0;
}

/* Reads one CRLF-terminated line into out (NUL-terminated, without CRLF). */
static int rb_line(struct rbuf *rb, char *out, size_t outsz)
{
    for (;;) {
        char *nl = memchr(rb->buf + rb->beg, '\n', rb->end - rb->beg);
        if (nl) {
            size_t len = nl - (rb->buf + rb->beg);
            size_t cp = len;
            if (cp > 0 && rb->buf[rb->beg + cp - 1] == '\r')
                cp--;
            if (cp >= outsz)
                cp = outsz - 1;
            memcpy(out, rb->buf + rb->beg, cp);
            out[cp] = 0;
            rb->beg += len + 1;
            return 0;
        }
        if (rb_fill(rb) < 0)
            return -1;
    }
}

static int rb_skip(struct rbuf *rb, long long n)
{
    while (n > 0) {
        size_t avail = rb->end - rb->beg;
        if (avail == 0) {
            if (rb_fill(rb) < 0)
                return -1;
            continue;
        }
        if ((long long)avail > n)
            avail = n;
        rb->beg += avail;
        n -= avail;
    }
    return 0;
}

/* Reads one response; returns its status, or -1 on I/O error.  *close_after is
 * set when the server will close the connection. */
static int read_response(struct rbuf *rb, int *close_after)
{
    char line[8192];
    int status;
    for (;;) {
        long long clen = -1;
        int chunked = 0;
        if (rb_line(rb, line, sizeof line) < 0)
            return -1;
        if (strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12)
            return -1;
        status = atoi(line + 9);
        *close_after = (line[7] == '0');
        for (;;) {
            if (rb_line(rb, line, sizeof line) < 0)
                return -1;
            if (!line[0])
                break;
            if (!strncasecmp(line, "Content-Length:", 15))
                clen = atoll(line + 15);
            else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line + 18, "chunked"))
                chunked = 1;
            else if (!strncasecmp(line, "Connection:", 11)) {
                if (strcasestr(line + 11, "close"))
                    *close_after = 1;
                else if (strcasestr(line + 11, "keep-alive"))
                    *close_after = 0;
            }
        }
        if (status >= 100 && status < 200)
            continue;  /* interim response */
        if (status == 204 || status == 304)
            return status;
        if (chunked) {
            for (;;) {
                long long n;
                if (rb_line(rb, line, sizeof line) < 0)
                    return -1;
                n = strtoll(line, NULL, 16);
                if (n == 0) {
                    do  /* trailers */
                        if (rb_line(rb, line, sizeof line) < 0)
                            return -1;
                    while (line[0]);
                    break;
                }
                if (rb_skip(rb, n) < 0 || rb_line(rb, line, sizeof line) < 0)
                    return -1;
            }
        } else if (clen >= 0) {
            if (rb_skip(rb, clen) < 0)
                return -1;
        } else {
            /* body delimited by close: drain */
            while (rb_fill(rb) == 0)
                rb->beg = rb->end;
            *close_after = 1;
        }
        return status;
    }
}

static void *worker(void *arg)
{
    struct tstate *ts = arg;
    struct rbuf *rb = calloc(1, sizeof *rb);
    char hdr[1024], path[512];
    int fd = -1;
    rb->fd = -1;
    pthread_barrier_wait(&barrier);
    for (int i = ts->id; i < total; i += conns) {
        int tries = 0, status = -1, close_after = 0;
        double t0 = now();
        if (ndirs > 0)
            snprintf(path, sizeof path, "%sd%03d/f%06d", prefix, i % ndirs, i);
        else
            snprintf(path, sizeof path, "%sf%06d", prefix, i);
        /* make each body distinct */
        snprintf(ts->body, size > 16 ? 16 : size, "%015d", i);
        int hl = snprintf(hdr, sizeof hdr,
                          "PUT %s HTTP/1.1\r\nHost: %s:%d\r\n"
                          "Content-Type: application/octet-stream\r\n"
                          "Content-Length: %d\r\n\r\n",
                          path, host, port, size);
        while (tries < 2) {
            struct iovec iov[2] = { { hdr, hl }, { ts->body, size } };
            int fresh = 0;
            if (fd < 0) {
                fd = do_connect();
                if (fd < 0)
                    break;
                rb->fd = fd;
                rb->beg = rb->end = 0;
                fresh = 1;
            }
            tries++;
            if (write_all(fd, iov, 2) == 0 && (status = read_response(rb, &close_after)) > 0) {
                if (close_after) {
                    close(fd);
                    fd = -1;
                }
                break;
            }
            /* I/O error: the server may have closed an idle keep-alive
             * connection; retry once on a fresh one. */
            close(fd);
            fd = -1;
            status = -1;
            if (fresh)
                break;
        }
        lat[i] = now() - t0;
        if (status < 0)
            ts->fail_io++;
        else
            ts->status[status < 600 ? status : 599]++;
    }
    if (fd >= 0)
        close(fd);
    free(rb);
    return NULL;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "putload: timed out\n";
    if (write(2, msg, sizeof msg - 1) < 0) {}
    _exit(2);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "H:p:c:n:s:P:D:t:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'n': total = atoi(optarg); break;
        case 's': size = atoi(optarg); break;
        case 'P': prefix = optarg; break;
        case 'D': ndirs = atoi(optarg); break;
        case 't': timeout_s = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: putload -p PORT [-H host] [-c conns] [-n total] "
                            "[-s size] [-P prefix] [-D ndirs] [-t timeout_s]\n");
            return 2;
        }
    }
    if (port <= 0 || conns <= 0 || total <= 0 || size < 0) {
        fprintf(stderr, "putload: bad arguments (need -p PORT)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm(timeout_s);

    lat = calloc(total, sizeof *lat);
    pthread_t *th = calloc(conns, sizeof *th);
    struct tstate *ts = calloc(conns, sizeof *ts);
    pthread_barrier_init(&barrier, NULL, conns + 1);
    for (int t = 0; t < conns; t++) {
        ts[t].id = t;
        ts[t].body = malloc(size + 16);
        for (int k = 0; k < size; k++)
            ts[t].body[k] = 'a' + (k * 7 + t) % 26;
        if (pthread_create(&th[t], NULL, worker, &ts[t]) != 0) {
            perror("pthread_create");
            return 2;
        }
    }
    pthread_barrier_wait(&barrier);
    double t0 = now();
    for (int t = 0; t < conns; t++)
        pthread_join(th[t], NULL);
    double el = now() - t0;

    long st[600] = { 0 }, io = 0;
    for (int t = 0; t < conns; t++) {
        for (int k = 0; k < 600; k++)
            st[k] += ts[t].status[k];
        io += ts[t].fail_io;
    }
    long ok = st[200] + st[201] + st[204];
    long other = total - ok - io;
    qsort(lat, total, sizeof *lat, cmpd);
    printf("requests=%d ok=%ld fail=%ld elapsed=%.4f rps=%.1f p50_ms=%.3f p99_ms=%.3f "
           "s200=%ld s201=%ld s204=%ld other=%ld io_errors=%ld",
           total, ok, total - ok, el, total / el, lat[total / 2] * 1e3,
           lat[(int)(total * 0.99)] * 1e3, st[200], st[201], st[204], other, io);
    if (other > 0) {
        printf(" statuses=");
        for (int k = 0; k < 600; k++)
            if (st[k] && k != 200 && k != 201 && k != 204)
                printf("%d:%ld,", k, st[k]);
    }
    printf("\n");
    return ok == total ? 0 : 1;
}
