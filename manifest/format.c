/*
 * The manifest's text format: escaping, the record CRC and the collation
 * order.  See manifest.h and SPEC section 7.
 */
#include <string.h>
#include <zlib.h>

#include "manifest/manifest.h"

static int needs_escape(unsigned char c)
{
    return c < 0x20 || c == '%' || c == ',' || c == '=';
}

size_t manifest_escape(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (needs_escape(c)) {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
        else
            out[n++] = (char)c;
    }
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') /* written upper case; read either */
        return c - 'a' + 10;
    return -1;
}

int manifest_unescape(char *s, size_t len, size_t *outlen)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;

            if (i + 2 >= len)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -1; /* bad digit, or %00: no NUL in a C string */
            s[n++] = (char)(hi << 4 | lo);
            i += 2;
        }
        else
            s[n++] = s[i];
    }
    s[n] = '\0';
    if (outlen)
        *outlen = n;
    return 0;
}

uint32_t manifest_line_crc(const char *line, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);

    crc = crc32(crc, (const Bytef *)line, (uInt)(len - 8));
    return (uint32_t)crc32(crc, (const Bytef *)"00000000", 8);
}

/* Component by component: the first that differs decides, in byte order
 * of the names. */
int manifest_compare(const char *a, const char *b)
{
    for (;;) {
        size_t la, lb, n;
        int c;

        /* A name whose components are all used up is an ancestor of the
         * other (or the same entry): post-order puts it last. */
        if (!*a || !*b)
            return (*a ? -1 : 0) + (*b ? 1 : 0);
        la = strcspn(a, "/");
        lb = strcspn(b, "/");
        n = la < lb ? la : lb;
        c = memcmp(a, b, n);
        if (c)
            return c;
        if (la != lb)
            return la < lb ? -1 : 1;
        a += la;
        b += lb;
        if (*a == '/')
            a++;
        if (*b == '/')
            b++;
    }
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && !strcmp(s + n - m, suffix);
}

int manifest_is_manifest_file(const char *base)
{
    return has_suffix(base, MANIFEST_SUFFIX) ||
           has_suffix(base, MANIFEST_SUFFIX ".verified");
}
