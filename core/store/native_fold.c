/* core.store.native_fold: `Numbers.fold` for the common rows, compiled.
 *
 * Theory of operation
 * -------------------
 * A rebuild (and time travel, and opening a plan) folds stored rows
 * (plan_no, device_no, seq, hlc, type_no, data) into a PlanState. Per row
 * the Python path (core/store/rows.py `Numbers.fold`) splices the signed
 * bytes back together, hashes them for the event id, checks the chain link
 * (`ChainCheck`), decodes the body as plain msgpack and merges the fields
 * (`plan_state.evolve_stored`). This file does the same work for the rows
 * that make up almost all of a log -- compact rows of plain edit types
 * whose bodies hold only strings, numbers, booleans, nil, bytes and lists of
 * them -- and hands every other row, unchanged, to a Python callback
 * (`slow(row, eid)`) that runs the Python path for it. It never decides
 * anything the Python path would decide differently: where a row is not
 * plainly one of the common shapes it goes to the callback before any state
 * is touched (tests/core/test_native_fold.py folds the same random logs both
 * ways and compares the canonical bytes).
 *
 * The state is changed only through the same Python objects the Python
 * fold uses (dicts, sets and the msgspec structs EntityState, FieldState and
 * Head, whose classes are passed in), so a checkpoint, a view or a later
 * Python fold cannot tell which path built it.
 *
 * Chain checking: links are followed in C per chain (plan_no, device_no)
 * and written back to the ChainCheck (`newest`, `set_newest`, `note_break`)
 * at the end of the call and before any row the callback must check itself.
 *
 * Errors: a number the caller's tables do not know raises KeyError (the
 * caller reloads its numbers and folds again; the fold is idempotent).
 * Anything raised by a callback propagates. state.events is brought up to
 * date on every exit.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <openssl/evp.h>
#include <string.h>

#define HASH_LEN 32
#define SIG_LEN 64
#define MAX_KEYS 64
#define RECIPE_SLOTS 256

static PyObject *s_plan, *s_entities, *s_applied, *s_events, *s_created, *s_fields,
    *s_heads, *s_unpacked, *s_replaced, *s_newest, *s_note_break, *s_set_newest;
static EVP_MD *sha256_md;
static const unsigned char ZERO[HASH_LEN];

/* The slot offset of an object field of a struct class (a member
 * descriptor), or -1 with an exception. */
static Py_ssize_t
member_offset(PyObject *cls, PyObject *name)
{
    PyObject *d = PyObject_GetAttr(cls, name);
    if (d == NULL) return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) off = m->offset;
    }
    Py_DECREF(d);
    if (off < 0) PyErr_Format(PyExc_TypeError, "%R.%U is not a writable object slot", cls, name);
    return off;
}

/* A field of a struct of exactly `cls` (new reference), read from its slot. */
static PyObject *
slot_get(PyObject *obj, PyObject *cls, Py_ssize_t off, PyObject *name)
{
    if (Py_TYPE(obj) == (PyTypeObject *)cls) {
        PyObject *v = *(PyObject **)((char *)obj + off);
        if (v != NULL) { Py_INCREF(v); return v; }
    }
    return PyObject_GetAttr(obj, name);
}

#include "msgpack_read.h"

/* --- what the fold needs per type and per chain ------------------------------------ */

typedef struct {
    PyObject *tuple;            /* the Python recipe (owned) or NULL: not loaded */
    int plain;                  /* 0: every row of the type goes to the callback */
    PyObject *kind;             /* str */
    const char *id_key; Py_ssize_t id_len; /* NULL: the plan itself */
    int creates, has_replaces;
    Py_ssize_t nkeys;
    PyObject *keys;             /* tuple of bytes: struct field names, UTF-8 */
    PyObject *fields;           /* tuple of str: entity field names */
    PyObject *defaults;         /* tuple of (index, factory) */
    PyObject *type_enc;         /* bytes: msgpack of the tag (owned) */
} Recipe;

typedef struct {
    long long plan_no, device_no;
    PyObject *head, *author, *chain; /* owned */
    int known;                  /* link state loaded from the ChainCheck */
    int dirty;                  /* newer than what the ChainCheck holds */
    long long seq;
    unsigned char id[HASH_LEN];
    PyObject *row;              /* borrowed from the rows list: the newest row seen */
    long long hlc;
    PyObject *type_enc;         /* owned; the newest row's type encoding */
} Chain;

typedef struct {
    PyObject *state, *check, *numbers_head, *devices, *types, *recipes, *recipe_of, *slow;
    PyObject *entity_cls, *field_cls, *head_cls;
    /* where EntityState.created/.fields and FieldState.heads/.unpacked live
     * in the struct (msgspec structs keep fields as object slots) */
    Py_ssize_t off_created, off_fields, off_heads, off_unpacked;
    PyObject *plan, *entities, *applied;
    Recipe slots[RECIPE_SLOTS];
    Chain *chains; Py_ssize_t nchains, cap;
    Py_ssize_t last_chain;
    unsigned char *buf; size_t bufcap;
    EVP_MD_CTX *md;
    long long folded;
} Ctx;

static void
recipe_clear(Recipe *r)
{
    Py_CLEAR(r->tuple);
    Py_CLEAR(r->type_enc);
    r->plain = 0;
}

/* Load the recipe of type_no into r: (kind, id_key, creates, keys, fields,
 * defaults, has_replaces) or None from `recipe_of(type_no)`, cached in the
 * `recipes` dict; the type's encoded tag from `types`. -1 with an exception. */
static int
recipe_load(Ctx *cx, PyObject *type_no, Recipe *r)
{
    PyObject *enc = PyDict_GetItemWithError(cx->types, type_no);
    if (enc == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, type_no);
        return -1;
    }
    if (!PyBytes_Check(enc)) { PyErr_SetString(PyExc_TypeError, "type encoding must be bytes"); return -1; }
    PyObject *t = PyDict_GetItemWithError(cx->recipes, type_no);
    if (t == NULL) {
        if (PyErr_Occurred()) return -1;
        t = PyObject_CallOneArg(cx->recipe_of, type_no); /* fills `recipes` */
        if (t == NULL) return -1;
    } else {
        Py_INCREF(t);
    }
    r->tuple = t;
    Py_INCREF(enc);
    r->type_enc = enc;
    r->plain = 0;
    if (t == Py_None) return 0;
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 7) {
        PyErr_SetString(PyExc_TypeError, "bad native recipe");
        return -1;
    }
    PyObject *id_key = PyTuple_GET_ITEM(t, 1);
    r->kind = PyTuple_GET_ITEM(t, 0);
    if (id_key == Py_None) { r->id_key = NULL; r->id_len = 0; }
    else {
        if (!PyBytes_Check(id_key)) { PyErr_SetString(PyExc_TypeError, "bad native recipe"); return -1; }
        r->id_key = PyBytes_AS_STRING(id_key);
        r->id_len = PyBytes_GET_SIZE(id_key);
    }
    r->creates = PyObject_IsTrue(PyTuple_GET_ITEM(t, 2));
    r->keys = PyTuple_GET_ITEM(t, 3);
    r->fields = PyTuple_GET_ITEM(t, 4);
    r->defaults = PyTuple_GET_ITEM(t, 5);
    r->has_replaces = PyObject_IsTrue(PyTuple_GET_ITEM(t, 6));
    if (!PyTuple_Check(r->keys) || !PyTuple_Check(r->fields) || !PyTuple_Check(r->defaults)
        || PyTuple_GET_SIZE(r->keys) != PyTuple_GET_SIZE(r->fields)) {
        PyErr_SetString(PyExc_TypeError, "bad native recipe");
        return -1;
    }
    r->nkeys = PyTuple_GET_SIZE(r->keys);
    for (Py_ssize_t i = 0; i < r->nkeys; i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(r->keys, i))) {
            PyErr_SetString(PyExc_TypeError, "bad native recipe");
            return -1;
        }
    r->plain = r->nkeys <= MAX_KEYS;
    return 0;
}

static Chain *
chain_of(Ctx *cx, long long plan_no, long long device_no, PyObject *plan_obj, PyObject *dev_obj)
{
    Py_ssize_t i = cx->last_chain;
    if (i < cx->nchains && cx->chains[i].plan_no == plan_no && cx->chains[i].device_no == device_no)
        return &cx->chains[i];
    for (i = 0; i < cx->nchains; i++)
        if (cx->chains[i].plan_no == plan_no && cx->chains[i].device_no == device_no) {
            cx->last_chain = i;
            return &cx->chains[i];
        }
    if (cx->nchains == cx->cap) {
        Py_ssize_t cap = cx->cap ? cx->cap * 2 : 16;
        Chain *grown = PyMem_Realloc(cx->chains, (size_t)cap * sizeof(Chain));
        if (grown == NULL) { PyErr_NoMemory(); return NULL; }
        cx->chains = grown;
        cx->cap = cap;
    }
    /* the order of Python's lookups, so a missing number raises the same KeyError */
    PyObject *head = PyObject_CallFunctionObjArgs(cx->numbers_head, plan_obj, dev_obj, NULL);
    if (head == NULL) return NULL;
    if (!PyBytes_Check(head)) { Py_DECREF(head); PyErr_SetString(PyExc_TypeError, "head must be bytes"); return NULL; }
    PyObject *author = PyDict_GetItemWithError(cx->devices, dev_obj);
    if (author == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, dev_obj);
        Py_DECREF(head);
        return NULL;
    }
    PyObject *chain = PyTuple_Pack(2, plan_obj, dev_obj);
    if (chain == NULL) { Py_DECREF(head); return NULL; }
    Chain *c = &cx->chains[cx->nchains];
    memset(c, 0, sizeof(Chain));
    c->plan_no = plan_no;
    c->device_no = device_no;
    c->head = head;
    Py_INCREF(author);
    c->author = author;
    c->chain = chain;
    cx->last_chain = cx->nchains++;
    return c;
}

/* The signed bytes of a compact row into cx->buf; their length, or -1. */
static Py_ssize_t
splice(Ctx *cx, PyObject *head, long long seq, const unsigned char *data, Py_ssize_t dlen,
       long long hlc, PyObject *type_enc)
{
    Py_ssize_t hlen = PyBytes_GET_SIZE(head), tlen = PyBytes_GET_SIZE(type_enc);
    size_t need = (size_t)(hlen + 9 + 2 + 9 + tlen + dlen);
    if (need > cx->bufcap) {
        size_t cap = need < 4096 ? 4096 : need * 2;
        unsigned char *grown = PyMem_Realloc(cx->buf, cap);
        if (grown == NULL) { PyErr_NoMemory(); return -1; }
        cx->buf = grown;
        cx->bufcap = cap;
    }
    unsigned char *o = cx->buf;
    memcpy(o, PyBytes_AS_STRING(head), (size_t)hlen); o += hlen;
    o += enc_int(o, seq);
    *o++ = 0xc4; *o++ = 0x20;
    memcpy(o, data, HASH_LEN); o += HASH_LEN;
    o += enc_int(o, hlc);
    memcpy(o, PyBytes_AS_STRING(type_enc), (size_t)tlen); o += tlen;
    memcpy(o, data + HASH_LEN, (size_t)(dlen - HASH_LEN)); o += dlen - HASH_LEN;
    return o - cx->buf;
}

static int
sha256(Ctx *cx, const unsigned char *p, size_t n, unsigned char *out)
{
    unsigned int len = 0;
    if (!EVP_DigestInit_ex(cx->md, sha256_md, NULL) || !EVP_DigestUpdate(cx->md, p, n)
        || !EVP_DigestFinal_ex(cx->md, out, &len)) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
        return -1;
    }
    return 0;
}

/* Write every chain's newest event back to the ChainCheck and forget the
 * link state (it is read again from the ChainCheck when next needed). */
static int
flush_chains(Ctx *cx)
{
    for (Py_ssize_t i = 0; i < cx->nchains; i++) {
        Chain *c = &cx->chains[i];
        if (c->dirty) {
            PyObject *data_obj = PySequence_Fast_GET_ITEM(c->row, 5);
            Py_buffer view;
            if (PyObject_GetBuffer(data_obj, &view, PyBUF_SIMPLE) < 0) return -1;
            Py_ssize_t n = splice(cx, c->head, c->seq, view.buf, view.len, c->hlc, c->type_enc);
            PyBuffer_Release(&view);
            if (n < 0) return -1;
            PyObject *raw = PyBytes_FromStringAndSize((const char *)cx->buf, n);
            if (raw == NULL) return -1;
            PyObject *eid = PyBytes_FromStringAndSize((const char *)c->id, HASH_LEN);
            PyObject *seq = PyLong_FromLongLong(c->seq);
            PyObject *res = NULL;
            if (eid && seq)
                res = PyObject_CallMethodObjArgs(cx->check, s_set_newest, c->chain, seq, eid, raw,
                                                 c->author, NULL);
            Py_DECREF(raw);
            Py_XDECREF(eid);
            Py_XDECREF(seq);
            if (res == NULL) return -1;
            Py_DECREF(res);
            c->dirty = 0;
        }
        c->known = 0;
    }
    return 0;
}

/* Follow one link: load what the ChainCheck knows of the chain, note a
 * break, and remember this event as the chain's newest. */
static int
see_link(Ctx *cx, Chain *c, PyObject *row, long long seq, const unsigned char *prev,
         const unsigned char *eid, long long hlc, PyObject *type_enc)
{
    if (!c->known) {
        PyObject *t = PyObject_CallMethodOneArg(cx->check, s_newest, c->chain);
        if (t == NULL) return -1;
        if (t == Py_None) { c->seq = 0; memcpy(c->id, ZERO, HASH_LEN); }
        else {
            PyObject *s = PyTuple_Check(t) && PyTuple_GET_SIZE(t) == 2 ? PyTuple_GET_ITEM(t, 0) : NULL;
            PyObject *i = s ? PyTuple_GET_ITEM(t, 1) : NULL;
            if (s == NULL || !PyBytes_Check(i) || PyBytes_GET_SIZE(i) != HASH_LEN) {
                Py_DECREF(t);
                PyErr_SetString(PyExc_TypeError, "ChainCheck.newest: (seq, id) expected");
                return -1;
            }
            c->seq = PyLong_AsLongLong(s);
            memcpy(c->id, PyBytes_AS_STRING(i), HASH_LEN);
        }
        Py_DECREF(t);
        if (PyErr_Occurred()) return -1;
        c->known = 1;
    }
    long long expected = c->seq + 1;
    if (seq != expected || memcmp(prev, c->id, HASH_LEN) != 0) {
        PyObject *seq_o = PyLong_FromLongLong(seq), *exp_o = PyLong_FromLongLong(expected);
        PyObject *eid_o = PyBytes_FromStringAndSize((const char *)eid, HASH_LEN);
        PyObject *res = NULL;
        if (seq_o && exp_o && eid_o)
            res = PyObject_CallMethodObjArgs(cx->check, s_note_break, c->chain, seq_o, eid_o, exp_o, NULL);
        Py_XDECREF(seq_o);
        Py_XDECREF(exp_o);
        Py_XDECREF(eid_o);
        if (res == NULL) return -1;
        Py_DECREF(res);
    }
    c->seq = seq;
    memcpy(c->id, eid, HASH_LEN);
    c->row = row;
    c->hlc = hlc;
    Py_INCREF(type_enc);
    Py_XSETREF(c->type_enc, type_enc);
    c->dirty = 1;
    return 0;
}

/* --- the merge: plan_state._set_fields and evolve_stored's entity handling --------- */

typedef struct { const unsigned char *k; Py_ssize_t klen; const unsigned char *v, *vend; } Span;

/* 1: folded; 0: not a plain row (nothing touched; the callback takes it); -1: error. */
static int
fold_plain(Ctx *cx, Recipe *r, PyObject *eid, const unsigned char *body, Py_ssize_t blen,
           PyObject *hlc, PyObject *author)
{
    const unsigned char *p = body, *end = body + blen;
    Py_ssize_t n, nspans = 0;
    Span spans[MAX_KEYS];
    if (p >= end) return 0;
    unsigned char c = *p;
    if (c >= 0x80 && c <= 0x8f) { n = c & 0x0f; p += 1; }
    else if (c == 0xde && end - p >= 3) { n = (Py_ssize_t)be(p + 1, 2); p += 3; }
    else if (c == 0xdf && end - p >= 5) { n = (Py_ssize_t)be(p + 1, 4); p += 5; }
    else return 0;
    if (n > MAX_KEYS) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t klen;
        int h = str_header(p, end, &klen);
        if (!h || end - p - h < klen) return 0;
        const unsigned char *k = p + h;
        p = k + klen;
        const unsigned char *v = p;
        if (!skip_value(&p, end, 0)) return 0;
        Py_ssize_t j;
        for (j = 0; j < nspans; j++) /* a repeated key: the last value, at the first place */
            if (spans[j].klen == klen && memcmp(spans[j].k, k, (size_t)klen) == 0) break;
        spans[j].k = k; spans[j].klen = klen; spans[j].v = v; spans[j].vend = p;
        if (j == nspans) nspans++;
    }
    if (p != end) return 0; /* trailing bytes: msgspec refuses them */

    PyObject *ent_id = NULL, *replaces = NULL;
    PyObject *values[MAX_KEYS];
    char present[MAX_KEYS];
    int result = 0;
    memset(present, 0, sizeof(present));
    for (Py_ssize_t i = 0; i < r->nkeys; i++) values[i] = NULL;
    for (Py_ssize_t s = 0; s < nspans; s++) {
        const unsigned char *v;
        if (r->id_key && spans[s].klen == r->id_len && memcmp(spans[s].k, r->id_key, (size_t)r->id_len) == 0) {
            v = spans[s].v;
            ent_id = dec_value(&v, spans[s].vend, 0);
            if (ent_id == NULL || PyList_Check(ent_id)) goto done; /* unhashable: Python's TypeError */
        }
        if (r->has_replaces && spans[s].klen == 8 && memcmp(spans[s].k, "replaces", 8) == 0) {
            v = spans[s].v;
            replaces = dec_value(&v, spans[s].vend, 0);
            if (replaces == NULL) goto done;
            if (replaces != Py_None) {
                if (!PyList_Check(replaces)) goto done;
                for (Py_ssize_t j = 0; j < PyList_GET_SIZE(replaces); j++)
                    if (!PyBytes_Check(PyList_GET_ITEM(replaces, j))) goto done;
            }
        }
        for (Py_ssize_t i = 0; i < r->nkeys; i++) {
            PyObject *key = PyTuple_GET_ITEM(r->keys, i);
            if (PyBytes_GET_SIZE(key) == spans[s].klen
                && memcmp(PyBytes_AS_STRING(key), spans[s].k, (size_t)spans[s].klen) == 0) {
                v = spans[s].v;
                values[i] = dec_value(&v, spans[s].vend, 0);
                if (values[i] == NULL) goto done;
                present[i] = 1;
                break;
            }
        }
    }
    if (r->id_key && ent_id == NULL) goto done; /* Python's KeyError, from the callback */
    for (Py_ssize_t d = 0; d < PyTuple_GET_SIZE(r->defaults); d++) {
        PyObject *pair = PyTuple_GET_ITEM(r->defaults, d);
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        if (i < 0 || i >= r->nkeys) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "default"); result = -1; goto done; }
        if (!present[i]) {
            values[i] = PyObject_CallNoArgs(PyTuple_GET_ITEM(pair, 1));
            if (values[i] == NULL) { result = -1; goto done; }
            present[i] = 2;
        }
    }

    /* Everything decoded: now change the state, as evolve_stored does. */
    result = -1;
    int seen = PySet_Contains(cx->applied, eid);
    if (seen < 0) goto done;
    if (seen) { result = 1; goto done; }
    if (PySet_Add(cx->applied, eid) < 0) goto done;
    cx->folded++;
    PyObject *key = PyTuple_Pack(2, r->kind, r->id_key ? ent_id : cx->plan);
    if (key == NULL) goto done;
    PyObject *ent = PyDict_GetItemWithError(cx->entities, key);
    if (ent == NULL) {
        if (PyErr_Occurred()) { Py_DECREF(key); goto done; }
        PyObject *fields = PyDict_New(), *removals = PyDict_New(), *seen_set = PySet_New(NULL);
        if (fields && removals && seen_set)
            ent = PyObject_CallFunctionObjArgs(cx->entity_cls, r->kind, PyTuple_GET_ITEM(key, 1),
                                               Py_None, fields, removals, seen_set, NULL);
        Py_XDECREF(fields); Py_XDECREF(removals); Py_XDECREF(seen_set);
        if (ent == NULL || PyDict_SetItem(cx->entities, key, ent) < 0) {
            Py_XDECREF(ent); Py_DECREF(key); goto done;
        }
        Py_DECREF(ent); /* the dict holds it */
    }
    Py_DECREF(key);
    if (r->creates) {
        PyObject *created = slot_get(ent, cx->entity_cls, cx->off_created, s_created);
        if (created == NULL) goto done;
        int older = created == Py_None ? 1 : PyObject_RichCompareBool(eid, created, Py_LT);
        Py_DECREF(created);
        if (older < 0 || (older && PyObject_SetAttr(ent, s_created, eid) < 0)) goto done;
    }
    PyObject *fields = slot_get(ent, cx->entity_cls, cx->off_fields, s_fields);
    if (fields == NULL) goto done;
    int has_replaces = replaces != NULL && replaces != Py_None && PyList_GET_SIZE(replaces) > 0;
    for (Py_ssize_t s = 0; s < nspans + r->nkeys; s++) {
        /* the body's order, then the defaults: `data.items()` in Python */
        Py_ssize_t i = -1;
        if (s < nspans) {
            for (Py_ssize_t k = 0; k < r->nkeys; k++) {
                PyObject *kb = PyTuple_GET_ITEM(r->keys, k);
                if (present[k] == 1 && PyBytes_GET_SIZE(kb) == spans[s].klen
                    && memcmp(PyBytes_AS_STRING(kb), spans[s].k, (size_t)spans[s].klen) == 0) { i = k; break; }
            }
        } else if (present[s - nspans] == 2) {
            i = s - nspans;
        }
        if (i < 0) continue;
        PyObject *name = PyTuple_GET_ITEM(r->fields, i);
        PyObject *fs = PyDict_GetItemWithError(fields, name);
        if (fs == NULL) {
            if (PyErr_Occurred()) { Py_DECREF(fields); goto done; }
            PyObject *h = PyDict_New(), *e = PyBytes_FromStringAndSize(NULL, 0), *rs = PySet_New(NULL);
            if (h && e && rs) fs = PyObject_CallFunctionObjArgs(cx->field_cls, h, e, rs, NULL);
            Py_XDECREF(h); Py_XDECREF(e); Py_XDECREF(rs);
            if (fs == NULL || PyDict_SetItem(fields, name, fs) < 0) { Py_XDECREF(fs); Py_DECREF(fields); goto done; }
            Py_DECREF(fs);
        }
        PyObject *replaced = slot_get(fs, cx->field_cls, cx->off_unpacked, s_unpacked);
        if (replaced == Py_None) { Py_DECREF(replaced); replaced = PyObject_GetAttr(fs, s_replaced); }
        if (replaced == NULL) { Py_DECREF(fields); goto done; }
        PyObject *heads = slot_get(fs, cx->field_cls, cx->off_heads, s_heads);
        if (heads == NULL) { Py_DECREF(replaced); Py_DECREF(fields); goto done; }
        int ok = 1;
        if (has_replaces) {
            for (Py_ssize_t j = 0; ok && j < PyList_GET_SIZE(replaces); j++) {
                PyObject *rid = PyList_GET_ITEM(replaces, j);
                /* heads.pop(rid, None): often not a head of this field (an
                 * edit of another field), and a KeyError is dear to raise */
                int is_head = PyDict_Contains(heads, rid);
                if (is_head < 0 || (is_head && PyDict_DelItem(heads, rid) < 0)) ok = 0;
                if (ok && PySet_Add(replaced, rid) < 0) ok = 0;
            }
        }
        if (ok) {
            int gone = PySet_Contains(replaced, eid);
            if (gone < 0) ok = 0;
            else if (!gone) {
                PyObject *args[3] = {hlc, author, values[i]};
                PyObject *head = PyObject_Vectorcall(cx->head_cls, args, 3, NULL);
                if (head == NULL || PyDict_SetItem(heads, eid, head) < 0) ok = 0;
                Py_XDECREF(head);
            }
        }
        Py_DECREF(heads);
        Py_DECREF(replaced);
        if (!ok) { Py_DECREF(fields); goto done; }
    }
    Py_DECREF(fields);
    result = 1;
done:
    Py_XDECREF(ent_id);
    Py_XDECREF(replaces);
    for (Py_ssize_t i = 0; i < r->nkeys; i++) Py_XDECREF(values[i]);
    if (result == 0 && PyErr_Occurred()) PyErr_Clear();
    return result;
}

/* --- fold(state, rows, numbers_head, devices, types, recipes, recipe_of, slow, check,
 *         entity_cls, field_cls, head_cls) ------------------------------------------ */

static PyObject *
fold_rows(Ctx *cx, PyObject *rows)
{
    Py_ssize_t nrows = PySequence_Fast_GET_SIZE(rows);
    PyObject **items = PySequence_Fast_ITEMS(rows);
    for (Py_ssize_t ri = 0; ri < nrows; ri++) {
        PyObject *row = items[ri];
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 6 || !PyLong_CheckExact(PyTuple_GET_ITEM(row, 0))
            || !PyLong_CheckExact(PyTuple_GET_ITEM(row, 1)) || !PyLong_CheckExact(PyTuple_GET_ITEM(row, 2))
            || !PyLong_CheckExact(PyTuple_GET_ITEM(row, 3)) || !PyLong_CheckExact(PyTuple_GET_ITEM(row, 4))) {
            /* stored whole (type_no NULL), not a row tuple, or a column of
             * another type (a damaged file): the callback checks and folds
             * it, or raises what Python raises */
            if (cx->check != Py_None && flush_chains(cx) < 0) return NULL;
            PyObject *res = PyObject_CallFunctionObjArgs(cx->slow, row, Py_None, NULL);
            if (res == NULL) return NULL;
            Py_DECREF(res);
            continue;
        }
        PyObject *plan_o = PyTuple_GET_ITEM(row, 0), *dev_o = PyTuple_GET_ITEM(row, 1);
        PyObject *seq_o = PyTuple_GET_ITEM(row, 2), *hlc_o = PyTuple_GET_ITEM(row, 3);
        PyObject *type_o = PyTuple_GET_ITEM(row, 4), *data_o = PyTuple_GET_ITEM(row, 5);
        long long plan_no = PyLong_AsLongLong(plan_o), device_no = PyLong_AsLongLong(dev_o);
        long long seq = PyLong_AsLongLong(seq_o), hlc = PyLong_AsLongLong(hlc_o);
        long type_no = PyLong_AsLong(type_o);
        if (PyErr_Occurred()) return NULL;
        Chain *c = chain_of(cx, plan_no, device_no, plan_o, dev_o);
        if (c == NULL) return NULL;
        Recipe tmp = {0}, *r = (type_no >= 0 && type_no < RECIPE_SLOTS) ? &cx->slots[type_no] : &tmp;
        if (r->type_enc == NULL && recipe_load(cx, type_o, r) < 0) { recipe_clear(&tmp); return NULL; }
        Py_buffer view;
        const unsigned char *data;
        Py_ssize_t dlen;
        int release = 0;
        if (PyBytes_Check(data_o)) { data = (const unsigned char *)PyBytes_AS_STRING(data_o); dlen = PyBytes_GET_SIZE(data_o); }
        else {
            if (PyObject_GetBuffer(data_o, &view, PyBUF_SIMPLE) < 0) { recipe_clear(&tmp); return NULL; }
            data = view.buf; dlen = view.len; release = 1;
        }
        PyObject *eid = NULL;
        int rc = -1;
        unsigned char id[HASH_LEN];
        if (dlen < HASH_LEN) {
            /* too short to splice: Python's own path raises what it raises */
            if (cx->check != Py_None && flush_chains(cx) < 0) goto next;
            PyObject *res = PyObject_CallFunctionObjArgs(cx->slow, row, Py_None, NULL);
            rc = res == NULL ? -1 : 0;
            Py_XDECREF(res);
            goto next;
        }
        Py_ssize_t n = splice(cx, c->head, seq, data, dlen, hlc, r->type_enc);
        if (n < 0 || sha256(cx, cx->buf, (size_t)n, id) < 0) goto next;
        if (cx->check != Py_None && see_link(cx, c, row, seq, data, id, hlc, r->type_enc) < 0) goto next;
        eid = PyBytes_FromStringAndSize((const char *)id, HASH_LEN);
        if (eid == NULL) goto next;
        int folded = 0;
        if (r->plain && dlen >= HASH_LEN + SIG_LEN) {
            folded = fold_plain(cx, r, eid, data + HASH_LEN, dlen - HASH_LEN - SIG_LEN, hlc_o, c->author);
            if (folded < 0) goto next;
        }
        if (!folded) {
            PyObject *res = PyObject_CallFunctionObjArgs(cx->slow, row, eid, NULL);
            if (res == NULL) goto next;
            Py_DECREF(res);
        }
        rc = 0;
    next:
        Py_XDECREF(eid);
        if (release) PyBuffer_Release(&view);
        recipe_clear(&tmp);
        if (rc < 0) return NULL;
    }
    if (cx->check != Py_None && flush_chains(cx) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *
native_fold(PyObject *self, PyObject *args)
{
    Ctx cx;
    memset(&cx, 0, sizeof(cx));
    PyObject *rows;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOO:fold", &cx.state, &rows, &cx.numbers_head,
                          &cx.devices, &cx.types, &cx.recipes, &cx.recipe_of, &cx.slow,
                          &cx.check, &cx.entity_cls, &cx.field_cls, &cx.head_cls))
        return NULL;
    if (!PyDict_Check(cx.devices) || !PyDict_Check(cx.types) || !PyDict_Check(cx.recipes)) {
        PyErr_SetString(PyExc_TypeError, "devices, types and recipes must be dicts");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(rows, "rows must be a sequence");
    if (seq == NULL) return NULL;
    PyObject *result = NULL;
    cx.plan = PyObject_GetAttr(cx.state, s_plan);
    cx.entities = PyObject_GetAttr(cx.state, s_entities);
    cx.applied = PyObject_GetAttr(cx.state, s_applied);
    cx.md = EVP_MD_CTX_new();
    if (cx.plan && cx.entities && cx.applied && cx.md
        && (cx.off_created = member_offset(cx.entity_cls, s_created)) >= 0
        && (cx.off_fields = member_offset(cx.entity_cls, s_fields)) >= 0
        && (cx.off_heads = member_offset(cx.field_cls, s_heads)) >= 0
        && (cx.off_unpacked = member_offset(cx.field_cls, s_unpacked)) >= 0) {
        if (!PyDict_Check(cx.entities) || !PySet_Check(cx.applied))
            PyErr_SetString(PyExc_TypeError, "state.entities must be a dict, state.applied a set");
        else {
            result = fold_rows(&cx, seq);
            if (result == NULL && cx.check != Py_None) {
                /* as in Python, the ChainCheck holds every row seen before the
                 * error (a rebuild names a damaged event by its signature) */
                PyObject *et, *ev, *etb;
                PyErr_Fetch(&et, &ev, &etb);
                if (flush_chains(&cx) < 0) PyErr_Clear();
                PyErr_Restore(et, ev, etb);
            }
        }
    } else if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    /* state.events counts the events this call folded, on every exit */
    if (cx.folded) {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        PyObject *events = PyObject_GetAttr(cx.state, s_events), *sum = NULL, *add = PyLong_FromLongLong(cx.folded);
        if (events && add) sum = PyNumber_Add(events, add);
        if (sum == NULL || PyObject_SetAttr(cx.state, s_events, sum) < 0) Py_CLEAR(result);
        Py_XDECREF(events); Py_XDECREF(add); Py_XDECREF(sum);
        if (et) { Py_CLEAR(result); PyErr_Restore(et, ev, etb); }
    }
    for (Py_ssize_t i = 0; i < RECIPE_SLOTS; i++) recipe_clear(&cx.slots[i]);
    for (Py_ssize_t i = 0; i < cx.nchains; i++) {
        Py_XDECREF(cx.chains[i].head);
        Py_XDECREF(cx.chains[i].author);
        Py_XDECREF(cx.chains[i].chain);
        Py_XDECREF(cx.chains[i].type_enc);
    }
    PyMem_Free(cx.chains);
    PyMem_Free(cx.buf);
    if (cx.md) EVP_MD_CTX_free(cx.md);
    Py_XDECREF(cx.plan);
    Py_XDECREF(cx.entities);
    Py_XDECREF(cx.applied);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"fold", native_fold, METH_VARARGS,
     "fold(state, rows, head, devices, types, recipes, recipe_of, slow, check, "
     "entity_cls, field_cls, head_cls): fold stored rows into state (see "
     "core/store/rows.py Numbers.fold, which calls it)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "native_fold",
    .m_doc = "Numbers.fold for the common rows, compiled (core/store/native_fold.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit_native_fold(void)
{
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_plan, "plan");
    INTERN(s_entities, "entities");
    INTERN(s_applied, "applied");
    INTERN(s_events, "events");
    INTERN(s_created, "created");
    INTERN(s_fields, "fields");
    INTERN(s_heads, "heads");
    INTERN(s_unpacked, "unpacked");
    INTERN(s_replaced, "replaced");
    INTERN(s_newest, "newest");
    INTERN(s_note_break, "note_break");
    INTERN(s_set_newest, "set_newest");
#undef INTERN
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA-256");
        return NULL;
    }
    return PyModule_Create(&module);
}
