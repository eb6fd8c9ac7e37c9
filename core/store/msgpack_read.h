/* core/store/msgpack_read.h: the msgpack the compiled fold reads and writes.
 *
 * `enc_int` writes an integer exactly as msgspec does (the shortest form;
 * unsigned formats for non-negative values), so spliced bytes match what
 * was signed. The reader takes every valid encoding of nil, booleans,
 * integers, floats, str, bin and arrays of them (`dec_value`) and skips any
 * value (`skip_value`); anything else is refused (NULL / 0) and the row goes
 * to the Python path, which raises or folds it as it always has.
 * Included by native_fold.c only. */

#ifndef VIDDA_MSGPACK_READ_H
#define VIDDA_MSGPACK_READ_H

#define MAX_DEPTH 8

static size_t
enc_int(unsigned char *o, long long v)
{
    int i;
    if (v >= 0) {
        unsigned long long u = (unsigned long long)v;
        if (u <= 0x7f) { o[0] = (unsigned char)u; return 1; }
        if (u <= 0xff) { o[0] = 0xcc; o[1] = (unsigned char)u; return 2; }
        if (u <= 0xffff) { o[0] = 0xcd; o[1] = (unsigned char)(u >> 8); o[2] = (unsigned char)u; return 3; }
        if (u <= 0xffffffffULL) {
            o[0] = 0xce;
            for (i = 0; i < 4; i++) o[1 + i] = (unsigned char)(u >> (24 - 8 * i));
            return 5;
        }
        o[0] = 0xcf;
        for (i = 0; i < 8; i++) o[1 + i] = (unsigned char)(u >> (56 - 8 * i));
        return 9;
    }
    if (v >= -32) { o[0] = (unsigned char)(v & 0xff); return 1; }
    if (v >= -128) { o[0] = 0xd0; o[1] = (unsigned char)(v & 0xff); return 2; }
    if (v >= -32768) {
        o[0] = 0xd1; o[1] = (unsigned char)((v >> 8) & 0xff); o[2] = (unsigned char)(v & 0xff);
        return 3;
    }
    if (v >= -2147483648LL) {
        o[0] = 0xd2;
        for (i = 0; i < 4; i++) o[1 + i] = (unsigned char)((v >> (24 - 8 * i)) & 0xff);
        return 5;
    }
    o[0] = 0xd3;
    for (i = 0; i < 8; i++) o[1 + i] = (unsigned char)((v >> (56 - 8 * i)) & 0xff);
    return 9;
}

static unsigned long long
be(const unsigned char *p, int n)
{
    unsigned long long v = 0;
    int i;
    for (i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Length of a str or bin header at p (returns header size, sets *len), 0 if not one. */
static int
str_header(const unsigned char *p, const unsigned char *end, Py_ssize_t *len)
{
    if (p >= end) return 0;
    unsigned char c = *p;
    if (c >= 0xa0 && c <= 0xbf) { *len = c & 0x1f; return 1; }
    if (c == 0xd9 && end - p >= 2) { *len = p[1]; return 2; }
    if (c == 0xda && end - p >= 3) { *len = (Py_ssize_t)be(p + 1, 2); return 3; }
    if (c == 0xdb && end - p >= 5) { *len = (Py_ssize_t)be(p + 1, 4); return 5; }
    return 0;
}

static int
bin_header(const unsigned char *p, const unsigned char *end, Py_ssize_t *len)
{
    if (p >= end) return 0;
    unsigned char c = *p;
    if (c == 0xc4 && end - p >= 2) { *len = p[1]; return 2; }
    if (c == 0xc5 && end - p >= 3) { *len = (Py_ssize_t)be(p + 1, 2); return 3; }
    if (c == 0xc6 && end - p >= 5) { *len = (Py_ssize_t)be(p + 1, 4); return 5; }
    return 0;
}

/* Decode one value of the supported kinds; NULL (any exception cleared) for
 * anything else, which sends the row to the Python path. */
static PyObject *
dec_value(const unsigned char **pp, const unsigned char *end, int depth)
{
    const unsigned char *p = *pp;
    Py_ssize_t len;
    int h;
    if (p >= end || depth > MAX_DEPTH) return NULL;
    unsigned char c = *p;
    PyObject *out = NULL;
    if (c <= 0x7f) { *pp = p + 1; return PyLong_FromLong(c); }
    if (c >= 0xe0) { *pp = p + 1; return PyLong_FromLong((signed char)c); }
    if (c == 0xc0) { *pp = p + 1; Py_RETURN_NONE; }
    if (c == 0xc2) { *pp = p + 1; Py_RETURN_FALSE; }
    if (c == 0xc3) { *pp = p + 1; Py_RETURN_TRUE; }
    if ((h = str_header(p, end, &len))) {
        if (end - p - h < len) return NULL;
        out = PyUnicode_DecodeUTF8((const char *)p + h, len, NULL);
        if (out == NULL) { PyErr_Clear(); return NULL; }
        *pp = p + h + len;
        return out;
    }
    if ((h = bin_header(p, end, &len))) {
        if (end - p - h < len) return NULL;
        *pp = p + h + len;
        return PyBytes_FromStringAndSize((const char *)p + h, len);
    }
    switch (c) {
    case 0xcc: if (end - p < 2) return NULL; *pp = p + 2; return PyLong_FromUnsignedLongLong(p[1]);
    case 0xcd: if (end - p < 3) return NULL; *pp = p + 3; return PyLong_FromUnsignedLongLong(be(p + 1, 2));
    case 0xce: if (end - p < 5) return NULL; *pp = p + 5; return PyLong_FromUnsignedLongLong(be(p + 1, 4));
    case 0xcf: if (end - p < 9) return NULL; *pp = p + 9; return PyLong_FromUnsignedLongLong(be(p + 1, 8));
    case 0xd0: if (end - p < 2) return NULL; *pp = p + 2; return PyLong_FromLongLong((signed char)p[1]);
    case 0xd1: if (end - p < 3) return NULL; *pp = p + 3; return PyLong_FromLongLong((short)be(p + 1, 2));
    case 0xd2: if (end - p < 5) return NULL; *pp = p + 5; return PyLong_FromLongLong((int)be(p + 1, 4));
    case 0xd3: if (end - p < 9) return NULL; *pp = p + 9; return PyLong_FromLongLong((long long)be(p + 1, 8));
    case 0xca: {
        if (end - p < 5) return NULL;
        unsigned int u = (unsigned int)be(p + 1, 4);
        float f;
        memcpy(&f, &u, 4);
        *pp = p + 5;
        return PyFloat_FromDouble((double)f);
    }
    case 0xcb: {
        if (end - p < 9) return NULL;
        unsigned long long u = be(p + 1, 8);
        double d;
        memcpy(&d, &u, 8);
        *pp = p + 9;
        return PyFloat_FromDouble(d);
    }
    default: break;
    }
    Py_ssize_t n;
    if (c >= 0x90 && c <= 0x9f) { n = c & 0x0f; p += 1; }
    else if (c == 0xdc && end - p >= 3) { n = (Py_ssize_t)be(p + 1, 2); p += 3; }
    else if (c == 0xdd && end - p >= 5) { n = (Py_ssize_t)be(p + 1, 4); p += 5; }
    else return NULL; /* maps, ext, reserved: the Python path */
    if (n > end - p) return NULL; /* each item takes at least one byte */
    out = PyList_New(n);
    if (out == NULL) { PyErr_Clear(); return NULL; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = dec_value(&p, end, depth + 1);
        if (item == NULL) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, item);
    }
    *pp = p;
    return out;
}

/* Skip one value of any kind; 0 if it is malformed. */
static int
skip_value(const unsigned char **pp, const unsigned char *end, int depth)
{
    const unsigned char *p = *pp;
    Py_ssize_t len, n = 0;
    int h;
    if (p >= end || depth > 64) return 0;
    unsigned char c = *p;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) { *pp = p + 1; return 1; }
    if ((h = str_header(p, end, &len)) || (h = bin_header(p, end, &len))) {
        if (end - p - h < len) return 0;
        *pp = p + h + len;
        return 1;
    }
    switch (c) {
    case 0xcc: case 0xd0: len = 1; break;
    case 0xcd: case 0xd1: len = 2; break;
    case 0xce: case 0xd2: case 0xca: len = 4; break;
    case 0xcf: case 0xd3: case 0xcb: len = 8; break;
    default: len = -1;
    }
    if (len >= 0) {
        if (end - p < 1 + len) return 0;
        *pp = p + 1 + len;
        return 1;
    }
    int pairs = 0;
    if (c >= 0x90 && c <= 0x9f) { n = c & 0x0f; p += 1; }
    else if (c >= 0x80 && c <= 0x8f) { n = c & 0x0f; p += 1; pairs = 1; }
    else if (c == 0xdc && end - p >= 3) { n = (Py_ssize_t)be(p + 1, 2); p += 3; }
    else if (c == 0xdd && end - p >= 5) { n = (Py_ssize_t)be(p + 1, 4); p += 5; }
    else if (c == 0xde && end - p >= 3) { n = (Py_ssize_t)be(p + 1, 2); p += 3; pairs = 1; }
    else if (c == 0xdf && end - p >= 5) { n = (Py_ssize_t)be(p + 1, 4); p += 5; pairs = 1; }
    else return 0; /* ext and reserved bytes */
    if (pairs) n *= 2;
    if (n > end - p) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!skip_value(&p, end, depth + 1)) return 0;
    *pp = p;
    return 1;
}

#endif /* VIDDA_MSGPACK_READ_H */
