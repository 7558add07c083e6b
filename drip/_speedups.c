/* drip's compiled parts, each the twin of a Python reference that stays (``drip._compiled``
 * loads this module; ``DRIP_PURE_PYTHON=1`` or a failed build: the Python everywhere).
 *
 * 1. The common case of a sync ``@metered`` call: a call inside a run, fixed quantity.
 *
 * ``MeteredFunction`` is what ``drip._metered._wrap.wrap_function`` returns when this module
 * is built (``DRIP_PURE_PYTHON=1`` or a failed build: the Python wrapper of ``_wrap``). It does
 * what the Python fast path there does, line for line, without a Python frame of its own:
 *
 *     customer, run, parent = SCOPE.get()
 *     if run is None or run._fast is None:       -> general(spec, fn, args, kwargs)
 *     seq = next(SEQ); token = SCOPE.set((customer, run, seq))
 *     span = None if otel.CV is None else otel.CV.get().get(otel.KEY)
 *     t0 = perf_counter_ns(); result = fn(*args, **kwargs); t1 = perf_counter_ns()
 *     SCOPE.reset(token)
 *     raised                  -> on_raise(spec, customer, run, parent, seq, span, t0, t1, exc)
 *     handles (current_event) -> on_handles(spec, customer, run, parent, seq, span, t0, t1, result)
 *     else the fast record (FAST, head, tail, parent, seq, t0, t1, span_id) into run._lane
 *     (``q += record`` below ``lane.soft``, else ``lane.append(record)``: drip._recorder.Lane)
 *
 * Everything that is not this common case calls back into the Python of ``_wrap``/``_call``,
 * so the rules live in one place; ``bind`` hands those callables and shared objects in once.
 * The object has a ``__dict__`` (``functools.update_wrapper`` fills it), binds as a method like
 * a function, is weak-referenceable and pickles by qualified name, as a function does.
 * ``begin`` / ``end`` / ``raised`` are the same steps (``call_begin``, ``call_returned``,
 * ``call_raised``) for the Python coroutine wrapper, which must stay a coroutine function
 * (frameworks ask ``inspect.iscoroutinefunction``).
 *
 * 2. ``pack``: the sequence numbers and times of a slice of fast records as the int64 columns
 * of the ``packed`` wire item (``drip.models.pack_columns`` on the worker, without three
 * slices and three ``array`` conversions).
 *
 * 3. ``encode_request`` / ``encode_requests``: a web request's run start, event or run end
 * record (or a slice of them) as JSON items, byte for byte what ``drip._records``'s
 * ``encode_request_*`` write; None for any record it does not know the shape of (the Python
 * encoders take it).
 *
 * 4. A web request's run, opened and finished (``_speedups_web.c``).
 */
#include "_speedups.h"

#include <limits.h>
#include <string.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyObject *fn;
    PyObject *spec;
    PyObject *tail;
    PyObject *dict;
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
} Metered;

/* handed in once by ``bind`` (strong references, kept for the life of the process) */
PyObject *SCOPE;              /* drip.context.SCOPE */
PyObject *SEQ;                /* drip._records.SEQ, an itertools.count */
PyObject *OTEL;               /* drip.otel's module dict: CV and KEY are read on every call */
static PyObject *HANDLES;     /* drip._metered._call.handles, a dict */
static PyObject *FAST;        /* drip._records.FAST */
static PyObject *GENERAL;     /* general_sync(spec, fn, args, kwargs) */
static PyObject *ON_RAISE;    /* (spec, customer, run, parent, seq, span, t0, t1, exc) */
static PyObject *ON_HANDLES;  /* (spec, customer, run, parent, seq, span, t0, t1, result) */
static PyObject *SPAN_ID;     /* span object -> its id (drip.otel.LAST / span_id) */
static PyObject *PERF;        /* time.perf_counter_ns, where the clock is not read here */
PyInterpreterState *BOUND_INTERP;  /* the interpreter whose objects these are */

PyObject *s_q, *s_soft, *s_append, *s_CV;
static PyObject *s_lane, *s_fast, *s_KEY, *s_get;
static PyObject *dict_get;    /* dict.get: a context whose class keeps it is read as a dict */
static PyTypeObject *plain_get_type;  /* the last context class found to keep dict.get */

/* time.perf_counter_ns(), the same clock: CLOCK_MONOTONIC on Linux (CPython's choice there),
 * PyTime_PerfCounterRaw from 3.13, else the Python function itself */
PyObject *
perf_ns(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_PerfCounterRaw(&t) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong((long long)t);
#elif defined(__linux__)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return PyObject_CallNoArgs(PERF);
    }
    return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec);
#else
    return PyObject_CallNoArgs(PERF);
#endif
}

/* the current OpenTelemetry span object (new reference; None when there is none) */
PyObject *
current_span(void)
{
    PyObject *cv = PyDict_GetItemWithError(OTEL, s_CV);
    if (cv == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (cv == Py_None) {
        Py_RETURN_NONE;
    }
    PyObject *key = PyDict_GetItemWithError(OTEL, s_KEY);
    if (key == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    Py_INCREF(key);
    PyObject *ctx;
    if (PyContextVar_CheckExact(cv)) {
        if (PyContextVar_Get(cv, NULL, &ctx) < 0) {
            Py_DECREF(key);
            return NULL;
        }
        if (ctx == NULL) {  /* no value and no default: as ``get()`` would, raise LookupError */
            Py_DECREF(key);
            PyErr_SetObject(PyExc_LookupError, cv);
            return NULL;
        }
    }
    else {
        ctx = PyObject_CallMethodNoArgs(cv, s_get);
        if (ctx == NULL) {
            Py_DECREF(key);
            return NULL;
        }
    }
    PyObject *span;
    int plain = PyDict_CheckExact(ctx) || Py_TYPE(ctx) == plain_get_type;
    if (!plain && PyDict_Check(ctx)) {
        PyObject *found = PyObject_GetAttr((PyObject *)Py_TYPE(ctx), s_get);
        if (found == NULL) {
            Py_DECREF(ctx);
            Py_DECREF(key);
            return NULL;
        }
        plain = found == dict_get;
        Py_DECREF(found);
        if (plain) {
            plain_get_type = Py_TYPE(ctx);  /* a class object lives as long as its instances */
        }
    }
    if (plain) {
        span = PyDict_GetItemWithError(ctx, key);
        if (span == NULL && PyErr_Occurred()) {
            Py_DECREF(ctx);
            Py_DECREF(key);
            return NULL;
        }
        span = span == NULL ? Py_None : span;
        Py_INCREF(span);
    }
    else {
        span = PyObject_CallMethodOneArg(ctx, s_get, key);
    }
    Py_DECREF(ctx);
    Py_DECREF(key);
    return span;
}

/* the call's arguments as (args, kwargs), for the Python callbacks */
static PyObject *
general(Metered *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *tuple = PyTuple_New(nargs);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    PyObject *kwargs = PyDict_New();
    if (kwargs == NULL) {
        Py_DECREF(tuple);
        return NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            Py_DECREF(tuple);
            Py_DECREF(kwargs);
            return NULL;
        }
    }
    PyObject *result = PyObject_CallFunctionObjArgs(GENERAL, self->spec, self->fn, tuple,
                                                    kwargs, NULL);
    Py_DECREF(tuple);
    Py_DECREF(kwargs);
    return result;
}

/* the fast record into the run's lane; 0, or -1 with an exception set */
static int
record(PyObject *tail, PyObject *run, PyObject *head, PyObject *parent, PyObject *seq,
       PyObject *t0, PyObject *t1, PyObject *span)
{
    PyObject *lane = PyObject_GetAttr(run, s_lane);
    if (lane == NULL) {
        return -1;
    }
    PyObject *q = PyObject_GetAttr(lane, s_q);
    PyObject *soft_obj = q == NULL ? NULL : PyObject_GetAttr(lane, s_soft);
    if (soft_obj == NULL) {
        Py_XDECREF(q);
        Py_DECREF(lane);
        return -1;
    }
    Py_ssize_t soft = PyLong_AsSsize_t(soft_obj);
    Py_DECREF(soft_obj);
    int rc = -1;
    if (soft == -1 && PyErr_Occurred()) {
        goto done;
    }
    PyObject *items[8] = {FAST, head, tail, parent, seq, t0, t1, span};
    Py_ssize_t n = PyList_CheckExact(q) ? PyList_GET_SIZE(q) : PyObject_Length(q);
    if (n < 0) {
        goto done;
    }
    if (n < soft && PyList_CheckExact(q)) {
        for (int i = 0; i < 8; i++) {
            if (PyList_Append(q, items[i]) < 0) {
                goto done;
            }
        }
        rc = 0;
        goto done;
    }
    PyObject *rec = PyTuple_New(8);
    if (rec == NULL) {
        goto done;
    }
    for (int i = 0; i < 8; i++) {
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(rec, i, items[i]);
    }
    PyObject *out;
    if (n < soft) {
        out = PyNumber_InPlaceAdd(q, rec);
    }
    else {
        out = PyObject_CallMethodOneArg(lane, s_append, rec);
    }
    Py_DECREF(rec);
    if (out != NULL) {
        Py_DECREF(out);
        rc = 0;
    }
done:
    Py_DECREF(q);
    Py_DECREF(lane);
    return rc;
}

/* One metered call in a run, between its start and its end: what the sync wrapper keeps on
 * the C stack and the coroutine wrapper keeps in ``begin``'s state tuple. ``scope`` is the
 * (customer, run, parent) that was current; the rest as ``_wrap``'s Python names them. */
typedef struct {
    PyObject *scope, *head, *seq, *token, *span, *t0;
} Call;

#define CUSTOMER(c) PyTuple_GET_ITEM((c)->scope, 0)
#define RUN(c) PyTuple_GET_ITEM((c)->scope, 1)
#define PARENT(c) PyTuple_GET_ITEM((c)->scope, 2)

static void
call_clear(Call *c)
{
    Py_CLEAR(c->t0);
    Py_CLEAR(c->span);
    Py_CLEAR(c->token);
    Py_CLEAR(c->seq);
    Py_CLEAR(c->head);
    Py_CLEAR(c->scope);
}

/* The steps before the call: 1 begun (``c`` holds its references), 0 the general path
 * (outside a run, or the run's first call: nothing held), -1 an exception (nothing held) */
static int
call_begin(Call *c)
{
    *c = (Call){NULL, NULL, NULL, NULL, NULL, NULL};
    if (PyContextVar_Get(SCOPE, NULL, &c->scope) < 0) {
        return -1;
    }
    if (c->scope == NULL || !PyTuple_CheckExact(c->scope) ||
        PyTuple_GET_SIZE(c->scope) != 3 || RUN(c) == Py_None) {
        call_clear(c);
        return 0;
    }
    c->head = PyObject_GetAttr(RUN(c), s_fast);
    if (c->head == NULL || c->head == Py_None) {  /* None: the general path opens it */
        int rc = c->head == NULL ? -1 : 0;
        call_clear(c);
        return rc;
    }
    PyObject *inner = NULL;
    if ((c->seq = PyIter_Next(SEQ)) == NULL ||
        (inner = PyTuple_Pack(3, CUSTOMER(c), RUN(c), c->seq)) == NULL ||
        (c->token = PyContextVar_Set(SCOPE, inner)) == NULL) {
        Py_XDECREF(inner);
        call_clear(c);
        return -1;
    }
    Py_DECREF(inner);
    if ((c->span = current_span()) == NULL || (c->t0 = perf_ns()) == NULL) {
        PyContextVar_Reset(SCOPE, c->token);
        call_clear(c);
        return -1;
    }
    return 1;
}

/* The steps after the call returned ``result``: the clock, the context reset, then the fast
 * record, or ``on_handles`` while ``current_event()`` handles exist; 0, or -1 */
static int
call_returned(const Call *c, PyObject *spec, PyObject *tail, PyObject *result)
{
    PyObject *t1 = perf_ns();
    if (t1 == NULL) {  /* the context is restored all the same */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyContextVar_Reset(SCOPE, c->token);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return -1;
    }
    if (PyContextVar_Reset(SCOPE, c->token) < 0) {
        Py_DECREF(t1);
        return -1;
    }
    int rc;
    if (PyDict_GET_SIZE(HANDLES)) {
        PyObject *done = PyObject_CallFunctionObjArgs(ON_HANDLES, spec, CUSTOMER(c), RUN(c),
                                                      PARENT(c), c->seq, c->span, c->t0, t1,
                                                      result, NULL);
        rc = done == NULL ? -1 : 0;
        Py_XDECREF(done);
    }
    else if (c->span != Py_None) {
        PyObject *ident = PyObject_CallOneArg(SPAN_ID, c->span);
        rc = ident == NULL ? -1
                           : record(tail, RUN(c), c->head, PARENT(c), c->seq, c->t0, t1, ident);
        Py_XDECREF(ident);
    }
    else {
        rc = record(tail, RUN(c), c->head, PARENT(c), c->seq, c->t0, t1, Py_None);
    }
    Py_DECREF(t1);
    return rc;
}

/* The steps after the call raised ``exc``: the clock, the context reset, ``on_raise``.
 * Never fails and leaves the exception state as it found it: recording must not replace the
 * application's exception (at the recursion limit there is no room even to report it). */
static void
call_raised(const Call *c, PyObject *spec, PyObject *exc)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *t1 = perf_ns();
    PyErr_Clear();
    if (PyContextVar_Reset(SCOPE, c->token) == 0 && t1 != NULL) {
        PyObject *done = PyObject_CallFunctionObjArgs(ON_RAISE, spec, CUSTOMER(c), RUN(c),
                                                      PARENT(c), c->seq, c->span, c->t0, t1,
                                                      exc, NULL);
        if (done == NULL && !PyErr_ExceptionMatches(PyExc_RecursionError)) {
            PyErr_WriteUnraisable(ON_RAISE);
        }
        Py_XDECREF(done);
    }
    Py_XDECREF(t1);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

static PyObject *
metered_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Metered *self = (Metered *)op;
    Call c;
    int begun = call_begin(&c);
    if (begun <= 0) {
        return begun < 0 ? NULL : general(self, args, nargsf, kwnames);
    }
    PyObject *result = PyObject_Vectorcall(self->fn, args, nargsf, kwnames);
    if (result == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL) {
            PyException_SetTraceback(value, tb);
        }
        PyErr_Restore(type, value, tb);
        if (value != NULL) {
            call_raised(&c, self->spec, value);
        }
    }
    else if (call_returned(&c, self->spec, self->tail, result) < 0) {
        Py_CLEAR(result);
    }
    call_clear(&c);
    return result;
}

/* ``begin()``: for the Python coroutine wrapper, ``call_begin`` as one C call. None when the
 * call takes the general path, else the state ``end`` and ``raised`` take */
static PyObject *
begin(PyObject *module, PyObject *unused)
{
    Call c;
    int begun = call_begin(&c);
    if (begun <= 0) {
        return begun < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *state = PyTuple_Pack(6, c.scope, c.head, c.seq, c.token, c.span, c.t0);
    if (state == NULL) {
        PyContextVar_Reset(SCOPE, c.token);
    }
    call_clear(&c);
    return state;
}

/* ``begin``'s state as a ``Call`` of borrowed references; 0, or -1 (a TypeError) */
static int
call_of(PyObject *state, Call *c)
{
    if (!PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 6) {
        PyErr_SetString(PyExc_TypeError, "the state must come from begin()");
        return -1;
    }
    PyObject *const *st = &PyTuple_GET_ITEM(state, 0);
    *c = (Call){st[0], st[1], st[2], st[3], st[4], st[5]};
    return 0;
}

/* ``end(state, spec, tail, result)``: ``call_returned`` for a coroutine that returned */
static PyObject *
end(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Call c;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "end(state, spec, tail, result)");
        return NULL;
    }
    if (call_of(args[0], &c) < 0 || call_returned(&c, args[1], args[2], args[3]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ``raised(state, spec, exc)``: ``call_raised`` for a coroutine that raised ``exc`` */
static PyObject *
raised(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Call c;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "raised(state, spec, exc)");
        return NULL;
    }
    if (call_of(args[0], &c) < 0) {
        return NULL;
    }
    call_raised(&c, args[1], args[2]);
    Py_RETURN_NONE;
}

/* ``pack(flat, width, at_seq, at_t0, at_t1, base)``: little-endian int64 bytes: the ``at_seq``
 * element of each ``width``-element record of the list ``flat``, then ``at_t0`` + base, then
 * ``at_t1`` + base; a value that is not an int or does not fit is a ValueError / OverflowError */
static PyObject *
pack(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "pack(flat: list, width, at_seq, at_t0, at_t1, base)");
        return NULL;
    }
    Py_ssize_t at[3], width = PyLong_AsSsize_t(args[1]);
    for (int c = 0; c < 3; c++) {
        at[c] = PyLong_AsSsize_t(args[2 + c]);
    }
    long long base = PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *flat = args[0];
    Py_ssize_t size = PyList_GET_SIZE(flat);
    if (width <= 0 || size % width || at[0] < 0 || at[0] >= width || at[1] < 0 ||
        at[1] >= width || at[2] < 0 || at[2] >= width) {
        PyErr_SetString(PyExc_ValueError, "pack: a list of whole records, offsets inside one");
        return NULL;
    }
    Py_ssize_t n = size / width;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 24 * n);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *bytes = (unsigned char *)PyBytes_AS_STRING(out);
    for (int c = 0; c < 3; c++) {
        long long add = c == 0 ? 0 : base;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PyList_GET_ITEM(flat, i * width + at[c]);
            if (!PyLong_Check(item)) {
                PyErr_Format(PyExc_ValueError, "pack: record %zd holds %R, not an int", i, item);
                Py_DECREF(out);
                return NULL;
            }
            long long v = PyLong_AsLongLong(item);
            int over = (add > 0 && v > LLONG_MAX - add) || (add < 0 && v < LLONG_MIN - add);
            if ((v == -1 && PyErr_Occurred()) || over) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_OverflowError, "pack: a time beyond int64");
                }
                Py_DECREF(out);
                return NULL;
            }
            unsigned long long u = (unsigned long long)(v + add);
            unsigned char *p = bytes + 8 * (c * n + i);
            for (int b = 0; b < 8; b++) {
                p[b] = (unsigned char)(u >> (8 * b));
            }
        }
    }
    return out;
}

/* -- 3. request records ------------------------------------------------------------------ */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
    int heap;  /* data is PyMem's (else the caller's first buffer) */
} Buf;

static int
buf_add(Buf *b, const char *text, Py_ssize_t n)
{
    if (b->len + n > b->cap) {
        Py_ssize_t cap = (b->len + n) * 2 + 64;
        char *data = b->heap ? PyMem_Realloc(b->data, (size_t)cap) : PyMem_Malloc((size_t)cap);
        if (data == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (!b->heap) {
            memcpy(data, b->data, (size_t)b->len);
        }
        b->data = data;
        b->cap = cap;
        b->heap = 1;
    }
    memcpy(b->data + b->len, text, (size_t)n);
    b->len += n;
    return 0;
}

static int
buf_cstr(Buf *b, const char *text)
{
    return buf_add(b, text, (Py_ssize_t)strlen(text));
}

/* a str as it is (its UTF-8); -1 if it is not a str */
static int
buf_str(Buf *b, PyObject *text)
{
    Py_ssize_t n;
    const char *data = PyUnicode_Check(text) ? PyUnicode_AsUTF8AndSize(text, &n) : NULL;
    if (data == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "encode_request: a part is not a str");
        }
        return -1;
    }
    return buf_add(b, data, n);
}

/* ``dumps(value)`` (drip._records.dumps): a plain printable ASCII str without quote or
 * backslash is written between quotes here, as the JSON encoder would; anything else asks it */
static int
buf_json(Buf *b, PyObject *value, PyObject *dumps)
{
    if (PyUnicode_Check(value) && PyUnicode_IS_ASCII(value)) {
        const unsigned char *data = PyUnicode_1BYTE_DATA(value);
        Py_ssize_t n = PyUnicode_GET_LENGTH(value), i = 0;
        while (i < n && data[i] >= 0x20 && data[i] <= 0x7e && data[i] != '"' && data[i] != '\\') {
            i++;
        }
        if (i == n) {
            return buf_add(b, "\"", 1) < 0 || buf_add(b, (const char *)data, n) < 0 ||
                           buf_add(b, "\"", 1) < 0
                       ? -1
                       : 0;
        }
    }
    PyObject *text = PyObject_CallOneArg(dumps, value);
    if (text == NULL) {
        return -1;
    }
    int rc = buf_str(b, text);
    Py_DECREF(text);
    return rc;
}

/* ``Clock.iso(t)``: "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" of ``t + offset`` ns, -1 on a bad time */
static int
buf_iso(Buf *b, long long t, long long offset)
{
    static long long last_sec = LLONG_MIN;
    static char last_text[64];
    long long v, sec, ns;
    if ((offset > 0 && t > LLONG_MAX - offset) || (offset < 0 && t < LLONG_MIN - offset)) {
        return -1;
    }
    v = t + offset;
    sec = v / 1000000000LL;
    ns = v % 1000000000LL;
    if (ns < 0) {
        sec -= 1;
        ns += 1000000000LL;
    }
    if (sec != last_sec) {
        time_t when = (time_t)sec;
        struct tm tm;
#ifdef _WIN32
        if (gmtime_s(&tm, &when) != 0) {
            return -1;
        }
#else
        if (gmtime_r(&when, &tm) == NULL) {
            return -1;
        }
#endif
        if (strftime(last_text, sizeof(last_text), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
            return -1;
        }
        last_sec = sec;
    }
    char text[96];
    int n = snprintf(text, sizeof(text), "%s.%06lldZ", last_text, ns / 1000);
    return n < 0 || n >= (int)sizeof(text) ? -1 : buf_add(b, text, n);
}

/* "<kind>_<prefix><seq & mask as 10 hex digits>" */
static int
buf_id(Buf *b, const char *kind, PyObject *prefix, unsigned long long seq,
       unsigned long long mask)
{
    char digits[32];
    snprintf(digits, sizeof(digits), "%010llx", seq & mask);
    return buf_cstr(b, kind) < 0 || buf_str(b, prefix) < 0 || buf_cstr(b, digits) < 0 ? -1 : 0;
}

/* '<key><dumps(value)>' unless value is None; -1 with an exception set */
static int
buf_optional(Buf *b, const char *key, PyObject *value, PyObject *dumps)
{
    if (value == Py_None) {
        return 0;
    }
    return buf_cstr(b, key) < 0 || buf_json(b, value, dumps) < 0 ? -1 : 0;
}

/* '<key>"<iso time>"}': the end of every request item; -1 with an exception set, -2 for a
 * time the C clock cannot write (the Python encoder then writes the record) */
static int
buf_closing_time(Buf *b, const char *key, long long t, long long offset)
{
    if (buf_cstr(b, key) < 0) {
        return -1;
    }
    if (buf_iso(b, t, offset) < 0) {
        return PyErr_Occurred() ? -1 : -2;
    }
    return buf_cstr(b, "\"}");
}

/* an int field as a C value; 0 when it is not a plain int in range (the record goes to Python) */
static int
as_ll(PyObject *value, long long *out)
{
    if (!PyLong_CheckExact(value)) {
        return 0;
    }
    int over;
    *out = PyLong_AsLongLongAndOverflow(value, &over);
    if (over || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static int
parts_of(PyObject *parts, PyObject **out)
{
    if (!PyTuple_CheckExact(parts) || PyTuple_GET_SIZE(parts) != 4) {
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        out[i] = PyTuple_GET_ITEM(parts, i);
        if (!PyUnicode_CheckExact(out[i])) {
            return 0;
        }
    }
    return 1;
}

/* one request record (its 8 elements at ``r``) as its JSON item; None (a new reference) for
 * a record of another shape, NULL with an exception set */
static PyObject *
encode_one(PyObject *const *r, long long offset, PyObject *prefix, unsigned long long mask,
           PyObject *dumps, PyObject *external_id)
{
    long long seq, t, duration, kind;
    if (!as_ll(r[0], &kind) || !as_ll(r[1], &seq) || seq < 0) {
        Py_RETURN_NONE;
    }
    PyObject *parts[4];
    char first[512];  /* a request's item fits: no allocation unless it does not */
    Buf b = {first, 0, sizeof(first), 0};
    int rc = -1;
    if (kind == 1) {  /* (START, seq, customer_id, parts, external_run_id, correlation, t0, _) */
        if (!parts_of(r[3], parts) || !as_ll(r[6], &t) || !PyUnicode_Check(r[2])) {
            Py_RETURN_NONE;
        }
        int external = (PyObject *)Py_TYPE(r[2]) == external_id;
        if (buf_cstr(&b, "{\"type\":\"run.start\",\"id\":\"") < 0 ||
            buf_id(&b, "run_", prefix, (unsigned long long)seq, mask) < 0 ||
            buf_cstr(&b, external ? "\",\"externalCustomerId\":" : "\",\"customerId\":") < 0 ||
            buf_json(&b, r[2], dumps) < 0 || buf_str(&b, parts[0]) < 0 ||
            buf_optional(&b, ",\"externalRunId\":", r[4], dumps) < 0 ||
            buf_optional(&b, ",\"correlationId\":", r[5], dumps) < 0) {
            goto done;
        }
        rc = buf_closing_time(&b, ",\"startedAt\":\"", t, offset);
    }
    else if (kind == 2) {  /* (EVENT, seq, parts, correlation, t, status, duration_us, span) */
        long long status = 0;
        unsigned long long span = 0;
        if (!parts_of(r[2], parts) || !as_ll(r[4], &t) || !as_ll(r[6], &duration) ||
            (r[5] != Py_None && !as_ll(r[5], &status)) ||
            duration > (1LL << 53) || duration < -(1LL << 53)) {
            Py_RETURN_NONE;
        }
        if (r[7] != Py_None) {  /* a span id: 64 bits, unsigned */
            if (!PyLong_CheckExact(r[7])) {
                Py_RETURN_NONE;
            }
            span = PyLong_AsUnsignedLongLong(r[7]);
            if (span == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
        }
        if (buf_cstr(&b, "{\"type\":\"event\",\"id\":\"") < 0 ||
            buf_id(&b, "evt_", prefix, (unsigned long long)seq, mask) < 0 ||
            buf_cstr(&b, "\",\"runId\":\"") < 0 ||
            buf_id(&b, "run_", prefix, (unsigned long long)seq, mask) < 0 ||
            buf_cstr(&b, "\"") < 0 || buf_optional(&b, ",\"correlationId\":", r[3], dumps) < 0 ||
            buf_str(&b, parts[1]) < 0) {
            goto done;
        }
        char text[64];
        if (r[7] != Py_None) {
            snprintf(text, sizeof(text), ",\"spanId\":\"%016llx\"", span);
            if (buf_cstr(&b, text) < 0) {
                goto done;
            }
        }
        if (r[5] == Py_None) {
            snprintf(text, sizeof(text), ",\"metadata\":{\"status_code\":null");
        }
        else {
            snprintf(text, sizeof(text), ",\"metadata\":{\"status_code\":%lld", status);
        }
        /* float.__repr__: the shortest text that reads back as the same double */
        char *ms_text = PyOS_double_to_string((double)duration / 1000.0, 'r', 0,
                                              Py_DTSF_ADD_DOT_0, NULL);
        if (ms_text == NULL) {
            goto done;
        }
        int bad = buf_cstr(&b, text) < 0 || buf_str(&b, parts[2]) < 0 ||
                  buf_cstr(&b, ms_text) < 0 || buf_str(&b, parts[3]) < 0;
        PyMem_Free(ms_text);
        if (bad) {
            goto done;
        }
        rc = buf_closing_time(&b, ",\"timestamp\":\"", t, offset);
    }
    else if (kind == 3) {  /* (END, seq, status, error_code, error_message, t, _, _) */
        if (!PyUnicode_CheckExact(r[2]) || !as_ll(r[5], &t)) {
            Py_RETURN_NONE;
        }
        if (buf_cstr(&b, "{\"type\":\"run.end\",\"runId\":\"") < 0 ||
            buf_id(&b, "run_", prefix, (unsigned long long)seq, mask) < 0 ||
            buf_cstr(&b, "\",\"status\":\"") < 0 || buf_str(&b, r[2]) < 0 ||
            buf_cstr(&b, "\"") < 0 || buf_optional(&b, ",\"errorCode\":", r[3], dumps) < 0 ||
            buf_optional(&b, ",\"errorMessage\":", r[4], dumps) < 0) {
            goto done;
        }
        rc = buf_closing_time(&b, ",\"endedAt\":\"", t, offset);
    }
    else {
        Py_RETURN_NONE;
    }
done:
    if (rc == -2) {  /* a time the C clock cannot write: the Python encoder decides */
        if (b.heap) {
            PyMem_Free(b.data);
        }
        Py_RETURN_NONE;
    }
    if (rc < 0) {
        if (b.heap) {
            PyMem_Free(b.data);
        }
        return NULL;
    }
    PyObject *out = PyUnicode_FromStringAndSize(b.data, b.len);
    if (b.heap) {
        PyMem_Free(b.data);
    }
    return out;
}

static int
encoding_args(PyObject *const *args, long long *offset, unsigned long long *mask)
{
    if (!PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "the id prefix must be a str");
        return -1;
    }
    *offset = PyLong_AsLongLong(args[1]);
    *mask = PyLong_AsUnsignedLongLong(args[2]);
    return PyErr_Occurred() ? -1 : 0;
}

/* ``encode_request(rec, prefix, offset, mask, dumps, external_id)``: the record's JSON item,
 * or None (not a request record of a known shape: the Python encoder writes it) */
static PyObject *
encode_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    long long offset;
    unsigned long long mask;
    if (nargs != 6 || !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_request(rec, prefix, offset, mask, dumps, external_id)");
        return NULL;
    }
    if (encoding_args(args + 1, &offset, &mask) < 0) {
        return NULL;
    }
    return encode_one(&PyTuple_GET_ITEM(args[0], 0), offset, args[1], mask, args[4], args[5]);
}

/* ``encode_requests(flat, prefix, offset, mask, dumps, external_id)``: the JSON items of the
 * request records held flat (8 elements each) in the list ``flat``, or None when one of them
 * is of another shape (the caller then takes them one by one) */
static PyObject *
encode_requests(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    long long offset;
    unsigned long long mask;
    if (nargs != 6 || !PyList_CheckExact(args[0]) || PyList_GET_SIZE(args[0]) % 8) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_requests(flat, prefix, offset, mask, dumps, external_id)");
        return NULL;
    }
    if (encoding_args(args + 1, &offset, &mask) < 0) {
        return NULL;
    }
    PyObject *flat = args[0];
    Py_ssize_t n = PyList_GET_SIZE(flat) / 8;
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* the list is the worker's own slice: nothing else changes it while this runs */
        if (PyList_GET_SIZE(flat) != 8 * n) {
            PyErr_SetString(PyExc_RuntimeError, "encode_requests: the list changed");
            Py_DECREF(out);
            return NULL;
        }
        PyObject *text = encode_one(&PyList_GET_ITEM(flat, 8 * i), offset, args[1], mask,
                                    args[4], args[5]);
        if (text == NULL || text == Py_None) {
            Py_DECREF(out);
            return text;
        }
        PyList_SET_ITEM(out, i, text);
    }
    return out;
}

static PyObject *
metered_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *fn, *spec, *tail;
    static char *names[] = {"fn", "spec", "tail", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:MeteredFunction", names, &fn, &spec,
                                     &tail)) {
        return NULL;
    }
    if (SCOPE == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "drip._speedups.bind() was not called");
        return NULL;
    }
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "MeteredFunction needs a callable");
        return NULL;
    }
    Metered *self = (Metered *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->fn = Py_NewRef(fn);
    self->spec = Py_NewRef(spec);
    self->tail = Py_NewRef(tail);
    self->vectorcall = metered_vectorcall;
    return (PyObject *)self;
}

static int
metered_traverse(Metered *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->fn);
    Py_VISIT(self->spec);
    Py_VISIT(self->tail);
    Py_VISIT(self->dict);
    return 0;
}

static int
metered_clear(Metered *self)
{
    Py_CLEAR(self->fn);
    Py_CLEAR(self->spec);
    Py_CLEAR(self->tail);
    Py_CLEAR(self->dict);
    return 0;
}

static void
metered_dealloc(Metered *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    metered_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* bound like a function: ``instance.method`` is a bound method of this object */
static PyObject *
metered_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
metered_repr(Metered *self)
{
    PyObject *name = PyObject_GetAttrString((PyObject *)self, "__qualname__");
    if (name == NULL) {
        PyErr_Clear();
        return PyUnicode_FromFormat("<metered function at %p>", self);
    }
    PyObject *text = PyUnicode_FromFormat("<metered function %S at %p>", name, self);
    Py_DECREF(name);
    return text;
}

/* pickled by reference, as functions are: ``module.qualname`` must be this object */
static PyObject *
metered_reduce(PyObject *self, PyObject *unused)
{
    return PyObject_GetAttrString(self, "__qualname__");
}

static PyObject *
metered_get_fn(Metered *self, void *closure)
{
    return Py_NewRef(self->fn);
}

static PyObject *
metered_get_spec(Metered *self, void *closure)
{
    return Py_NewRef(self->spec);
}

static PyMethodDef metered_methods[] = {
    {"__reduce__", metered_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef metered_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_drip_fn", (getter)metered_get_fn, NULL, "the undecorated callable", NULL},
    {"_drip_spec", (getter)metered_get_spec, NULL, "what the decorator was given", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef metered_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Metered, weakreflist), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(Metered, dict), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Metered, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot metered_slots[] = {
    {Py_tp_new, metered_new},
    {Py_tp_dealloc, metered_dealloc},
    {Py_tp_traverse, metered_traverse},
    {Py_tp_clear, metered_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, metered_descr_get},
    {Py_tp_repr, metered_repr},
    {Py_tp_methods, metered_methods},
    {Py_tp_getset, metered_getset},
    {Py_tp_members, metered_members},
    {Py_tp_doc, "A sync function metered by drip (see drip._metered._wrap.wrap_function)."},
    {0, NULL},
};

static PyType_Spec metered_spec = {
    .name = "drip._speedups.MeteredFunction",
    .basicsize = sizeof(Metered),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = metered_slots,
};

static PyObject *
bind(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"scope", "seq", "otel", "handles", "fast", "general", "on_raise",
                            "on_handles", "span_id", "perf", NULL};
    PyObject *scope, *seq, *otel, *handles, *fast, *gen, *raise, *hand, *span_id, *perf;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!O!OOOOOO:bind", names,
                                     &PyContextVar_Type, &scope, &seq, &PyDict_Type, &otel,
                                     &PyDict_Type, &handles, &fast, &gen, &raise, &hand,
                                     &span_id, &perf)) {
        return NULL;
    }
    /* the objects are one interpreter's: a second interpreter (mod_wsgi's sub-interpreters)
     * shares this module's globals, so it must take the Python path */
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (BOUND_INTERP != NULL && BOUND_INTERP != interp) {
        PyErr_SetString(PyExc_ImportError,
                        "drip._speedups is bound to another interpreter: use the Python path");
        return NULL;
    }
    BOUND_INTERP = interp;
    Py_XSETREF(SCOPE, Py_NewRef(scope));
    Py_XSETREF(SEQ, Py_NewRef(seq));
    Py_XSETREF(OTEL, Py_NewRef(otel));
    Py_XSETREF(HANDLES, Py_NewRef(handles));
    Py_XSETREF(FAST, Py_NewRef(fast));
    Py_XSETREF(GENERAL, Py_NewRef(gen));
    Py_XSETREF(ON_RAISE, Py_NewRef(raise));
    Py_XSETREF(ON_HANDLES, Py_NewRef(hand));
    Py_XSETREF(SPAN_ID, Py_NewRef(span_id));
    Py_XSETREF(PERF, Py_NewRef(perf));
    Py_RETURN_NONE;
}

static PyObject *
clock_ns(PyObject *module, PyObject *unused)
{
    if (PERF == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "drip._speedups.bind() was not called");
        return NULL;
    }
    return perf_ns();
}

static PyMethodDef module_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))bind, METH_VARARGS | METH_KEYWORDS,
     "Hand in what the compiled call shares with the Python of drip (once, at import)."},
    {"begin", begin, METH_NOARGS,
     "The steps before a metered coroutine's call: its state, or None (the general path)."},
    {"end", (PyCFunction)(void (*)(void))end, METH_FASTCALL,
     "end(state, spec, tail, result): the steps after a metered coroutine's call returned."},
    {"raised", (PyCFunction)(void (*)(void))raised, METH_FASTCALL,
     "raised(state, spec, exc): the steps after a metered coroutine's call raised exc."},
    {"encode_request", (PyCFunction)(void (*)(void))encode_request, METH_FASTCALL,
     "encode_request(rec, prefix, offset, mask, dumps, external_id): a request record's JSON."},
    {"encode_requests", (PyCFunction)(void (*)(void))encode_requests, METH_FASTCALL,
     "encode_requests(flat, prefix, offset, mask, dumps, external_id): request records' JSON."},
    {"pack", (PyCFunction)(void (*)(void))pack, METH_FASTCALL,
     "pack(flat, width, at_seq, at_t0, at_t1, base): int64 columns of fast records."},
    {"clock_ns", clock_ns, METH_NOARGS,
     "The clock the compiled call reads: time.perf_counter_ns's (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "drip._speedups",
    "drip's compiled parts: the common case of a metered call, and the packed columns.", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    s_fast = PyUnicode_InternFromString("_fast");
    s_lane = PyUnicode_InternFromString("_lane");
    s_q = PyUnicode_InternFromString("q");
    s_soft = PyUnicode_InternFromString("soft");
    s_append = PyUnicode_InternFromString("append");
    s_CV = PyUnicode_InternFromString("CV");
    s_KEY = PyUnicode_InternFromString("KEY");
    s_get = PyUnicode_InternFromString("get");
    if (!s_fast || !s_lane || !s_q || !s_soft || !s_append || !s_CV || !s_KEY || !s_get) {
        return NULL;
    }
    dict_get = PyObject_GetAttr((PyObject *)&PyDict_Type, s_get);
    if (dict_get == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    PyObject *type = PyType_FromSpec(&metered_spec);
    if (type == NULL || PyModule_AddObject(module, "MeteredFunction", type) < 0) {
        Py_XDECREF(type);
        Py_DECREF(module);
        return NULL;
    }
    if (web_init(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
