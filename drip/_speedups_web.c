/* drip's compiled parts, 4: a web request's run (``drip.integrations._web``), its common case.
 *
 * A metered request opens a run before the handler and ends it after the last body chunk;
 * for a request that costs some 80 us in FastAPI, the Python of that (``RequestMeter.open``,
 * ``begin_deferred``, ``RequestRun.finish``, ``end_alone``: ~25 calls and ~30 attribute
 * stores) was a tenth of the request. Here are the same steps for the request nearly every
 * request is, each the twin of Python that stays the reference:
 *
 * - ``open_request(meter, customer, method, route, request_id)`` is ``RequestMeter.open``
 *   (None for a None customer, as there) when the customer id is a string the meter has
 *   checked before, the (method, route) has its ``Shape`` and no run is open around the request: it fills in a ``RequestRun`` the way
 *   ``begin_deferred`` does and makes it the current run. Anything else, or any error, calls
 *   ``RequestMeter.open`` itself (which checks, logs and answers).
 * - ``finish_request(run, exc)`` is ``RequestRun.finish`` when nothing raised, the status is
 *   an int below 500 (or none), the event's metadata is proven (the shape holds its JSON) and
 *   nothing referred to the run: the ``end_alone`` records, then the context is restored.
 *   Anything else calls ``run.finish(exc)``.
 * - ``RequestSend(run, send)`` is the ASGI middleware's ``send``: it notes the status and the
 *   moment the last body chunk was handed on, and returns ``send(message)``.
 *
 * A ``RequestRun``'s fields are ``__slots__``: ``bind_requests`` finds each one's offset from
 * the class's member descriptors (checking they are plain object slots), so a field is one
 * store, as CPython's own descriptor does it. A class laid out otherwise is refused there,
 * and the Python is used.
 */
#include "_speedups.h"

enum {
    R_ID, R_WORKFLOW, R_CUSTOMER, R_PARENT, R_EXTERNAL, R_CORRELATION, R_METADATA, R_CONTEXT,
    R_RECORDER, R_LANE, R_JSON, R_FAST, R_SEQ, R_PENDING, R_APPEND, R_T0, R_TOKEN, R_FINISHED,
    R_METER, R_SHAPE, R_METHOD, R_ROUTE, R_STATUS, R_ERROR, R_DONE, R_COUNT
};
static const char *const run_fields[R_COUNT] = {
    "_id", "workflow", "customer_id", "parent_run_id", "external_run_id", "correlation_id",
    "metadata", "_context", "_recorder", "_lane", "_json", "_fast", "_seq", "_pending",
    "_append", "_t0", "_token", "_finished", "_meter", "_shape", "method", "route", "status",
    "error", "done_ns",
};
enum { M_CUSTOMERS, M_SHAPES, M_COUNT };
static const char *const meter_fields[M_COUNT] = {"_customers", "_shapes"};

static Py_ssize_t run_at[R_COUNT], meter_at[M_COUNT];

/* handed in once by ``bind_requests`` (strong references) */
static PyTypeObject *RUN_TYPE;    /* RequestRun */
static PyTypeObject *METER_TYPE;  /* RequestMeter */
static PyObject *PY_OPEN;         /* RequestMeter.open */
static PyObject *OVERRIDES;       /* drip._recorder.overrides, a list */
static PyObject *FALLBACK;        /* drip._default.default_recorder */
static PyObject *DEFAULTS;        /* drip._default's module dict */
static PyObject *DISCARD;         /* drip._recorder.DISCARD */
static PyObject *REFRESH;         /* drip.otel.refresh */
static PyObject *SPAN_CONTEXT;    /* drip.otel.span_context */
static PyObject *TRACE_ID_HEX;    /* drip.otel.trace_id_hex */
static PyObject *CHECK_NAME;      /* drip._checks.check_name */
static PyObject *START_FIRST;     /* DeferredRun._start_first, a function */
static PyObject *REPORT;          /* report(exc): logs a request run that could not be recorded */
static PyObject *MARKS[3];        /* REQUEST_START, REQUEST_EVENT, REQUEST_END */
static PyObject *UNMATCHED;       /* the route label of a request no route matched */

static PyObject *s_client, *s_recorder_obj, *s_lane_of, *s_external_run_id, *s_completed,
    *s_finish, *s_span_id, *s_type,
    *s_status, *s_more_body, *s_done_ns, *s_start, *s_body, *s_pathsend, *s_extend;

#define FIELD(obj, at) (*(PyObject **)((char *)(obj) + (at)))

/* ``obj.<field> = value`` (a new reference is taken) */
static void
put(PyObject *obj, Py_ssize_t at, PyObject *value)
{
    PyObject *old = FIELD(obj, at);
    FIELD(obj, at) = Py_NewRef(value);
    Py_XDECREF(old);
}

/* ``obj.<field> = value``, stealing ``value`` */
static void
put_new(PyObject *obj, Py_ssize_t at, PyObject *value)
{
    PyObject *old = FIELD(obj, at);
    FIELD(obj, at) = value;
    Py_XDECREF(old);
}

/* each field's offset in instances of ``type``: a plain object slot of ``type`` or a base */
static int
offsets_of(PyTypeObject *type, const char *const *names, int n, Py_ssize_t *at)
{
    for (int i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)type, names[i]);
        if (d == NULL) {
            return -1;
        }
        int plain = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                    PyType_IsSubtype(type, PyDescr_TYPE(d)) &&
                    ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                    !(((PyMemberDescrObject *)d)->d_member->flags & READONLY);
        if (plain) {
            at[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        }
        Py_DECREF(d);
        if (!plain || at[i] < (Py_ssize_t)sizeof(PyObject) ||
            at[i] + (Py_ssize_t)sizeof(PyObject *) > type->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a plain slot", type->tp_name, names[i]);
            return -1;
        }
    }
    return 0;
}

/* the recorder a run opened now records into: ``begin_deferred``'s ``overrides[-1] if
 * overrides else fallback()``, reading ``default_recorder()``'s answer where it keeps it (the
 * default client's recorder, once made) before calling it */
static PyObject *
recorder_now(void)
{
    Py_ssize_t n = PyList_GET_SIZE(OVERRIDES);
    if (n) {
        return Py_NewRef(PyList_GET_ITEM(OVERRIDES, n - 1));
    }
    PyObject *client = PyDict_GetItemWithError(DEFAULTS, s_client);
    if (client != NULL && client != Py_None) {
        PyObject *made = PyObject_GetAttr(client, s_recorder_obj);
        if (made != NULL && made != Py_None) {
            return made;
        }
        Py_XDECREF(made);
    }
    PyErr_Clear();
    return PyObject_CallNoArgs(FALLBACK);
}

/* ``drip.otel.span_context()``: the current span's SpanContext, None when there is no span
 * (the common case, read here without a Python call) or it is not valid */
static PyObject *
span_context_now(void)
{
    PyObject *span = current_span();
    if (span == NULL || span == Py_None) {
        return span;
    }
    Py_DECREF(span);
    return PyObject_CallNoArgs(SPAN_CONTEXT);
}

/* the run's correlation id: the current span's trace id (``begin_deferred``'s lines) */
static PyObject *
correlation_now(void)
{
    PyObject *cv = PyDict_GetItemWithError(OTEL, s_CV);
    if (cv == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (cv == NULL || cv == Py_None) {
        PyObject *done = PyObject_CallNoArgs(REFRESH);
        if (done == NULL) {
            return NULL;
        }
        Py_DECREF(done);
    }
    PyObject *ctx = span_context_now();
    if (ctx == NULL || ctx == Py_None) {
        return ctx;
    }
    PyObject *hex = PyObject_CallOneArg(TRACE_ID_HEX, ctx);
    Py_DECREF(ctx);
    return hex;
}

/* ``open_request(meter, customer, method, route, request_id)``: see the top of this file */
static PyObject *
open_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *external = NULL, *key = NULL, *shape = NULL, *scope = NULL, *instr = NULL;
    PyObject *lane = NULL, *correlation = NULL, *run = NULL, *seq = NULL, *t0 = NULL;
    PyObject *append = NULL, *inner = NULL, *token = NULL;
    if (RUN_TYPE == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "drip._speedups.bind_requests() was not called");
        return NULL;
    }
    if (nargs != 5) {
        goto python;
    }
    PyObject *meter = args[0], *customer = args[1], *method = args[2], *route = args[3];
    PyObject *request_id = args[4];
    if (customer == Py_None) {
        Py_RETURN_NONE;  /* ``customer_options(None)``: the request is not metered */
    }
    if (route == Py_None || (PyUnicode_CheckExact(route) && PyUnicode_GET_LENGTH(route) == 0)) {
        route = UNMATCHED;  /* ``route or UNMATCHED`` */
    }
    if (Py_TYPE(meter) != METER_TYPE || !PyUnicode_CheckExact(customer) ||
        !PyUnicode_CheckExact(method) || !PyUnicode_CheckExact(route)) {
        goto python;
    }
    PyObject *customers = FIELD(meter, meter_at[M_CUSTOMERS]);
    PyObject *shapes = FIELD(meter, meter_at[M_SHAPES]);
    if (customers == NULL || !PySet_CheckExact(customers) || shapes == NULL ||
        !PyDict_CheckExact(shapes) || PySet_Contains(customers, customer) != 1) {
        goto python;  /* a customer not checked yet: ``open`` checks it */
    }
    if ((key = PyTuple_Pack(2, method, route)) == NULL) {
        goto python;
    }
    shape = Py_XNewRef(PyDict_GetItemWithError(shapes, key));
    if (shape == NULL || !PyTuple_CheckExact(shape) || PyTuple_GET_SIZE(shape) != 2 ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(shape, 0))) {
        goto python;  /* the route's first request: ``open`` finds its shape */
    }
    if (request_id == Py_None ||
        (PyUnicode_CheckExact(request_id) && PyUnicode_GET_LENGTH(request_id) == 0)) {
        external = Py_NewRef(Py_None);
    }
    else if ((external = PyObject_CallFunctionObjArgs(CHECK_NAME, request_id,
                                                      s_external_run_id, NULL)) == NULL) {
        goto python;  /* ``open`` logs what is wrong with it */
    }
    if (PyContextVar_Get(SCOPE, NULL, &scope) < 0 || scope == NULL ||
        !PyTuple_CheckExact(scope) || PyTuple_GET_SIZE(scope) != 3 ||
        PyTuple_GET_ITEM(scope, 1) != Py_None) {
        goto python;  /* inside a run: the request's is its child */
    }
    if ((instr = recorder_now()) == NULL) {
        goto python;
    }
    lane = instr == Py_None ? Py_NewRef(DISCARD) : PyObject_GetAttr(instr, s_lane_of);
    if (lane == NULL || (correlation = correlation_now()) == NULL) {
        goto python;
    }
    if ((run = RUN_TYPE->tp_alloc(RUN_TYPE, 0)) == NULL || (seq = PyIter_Next(SEQ)) == NULL ||
        (append = PyMethod_New(START_FIRST, run)) == NULL || (t0 = perf_ns()) == NULL ||
        (inner = PyTuple_Pack(3, customer, run, Py_None)) == NULL) {
        goto python;
    }
    put(run, run_at[R_ID], Py_None);
    put(run, run_at[R_WORKFLOW], PyTuple_GET_ITEM(shape, 0));
    put(run, run_at[R_CUSTOMER], customer);
    put(run, run_at[R_PARENT], Py_None);
    put(run, run_at[R_EXTERNAL], external);
    put(run, run_at[R_CORRELATION], correlation);
    put(run, run_at[R_METADATA], Py_None);
    put(run, run_at[R_CONTEXT], Py_None);
    put(run, run_at[R_RECORDER], instr);
    put(run, run_at[R_LANE], lane);
    put(run, run_at[R_JSON], Py_None);
    put(run, run_at[R_FAST], Py_None);
    put(run, run_at[R_SEQ], seq);
    put(run, run_at[R_PENDING], Py_True);
    put(run, run_at[R_APPEND], append);  /* a cycle until the run ends, as in the Python */
    put(run, run_at[R_T0], t0);
    put(run, run_at[R_METER], meter);
    put(run, run_at[R_SHAPE], shape);
    put(run, run_at[R_METHOD], method);
    put(run, run_at[R_ROUTE], route);
    put(run, run_at[R_STATUS], Py_None);
    put(run, run_at[R_ERROR], Py_None);
    put(run, run_at[R_DONE], Py_None);
    put(run, run_at[R_FINISHED], Py_False);
    if ((token = PyContextVar_Set(SCOPE, inner)) == NULL) {
        put(run, run_at[R_APPEND], Py_None);  /* break the cycle: this run is dropped */
        goto python;
    }
    put_new(run, run_at[R_TOKEN], token);
    Py_DECREF(external);
    Py_DECREF(key);
    Py_DECREF(shape);
    Py_DECREF(scope);
    Py_DECREF(instr);
    Py_DECREF(lane);
    Py_DECREF(correlation);
    Py_DECREF(seq);
    Py_DECREF(t0);
    Py_DECREF(append);
    Py_DECREF(inner);
    return run;

python:
    PyErr_Clear();
    Py_XDECREF(external);
    Py_XDECREF(key);
    Py_XDECREF(shape);
    Py_XDECREF(scope);
    Py_XDECREF(instr);
    Py_XDECREF(lane);
    Py_XDECREF(correlation);
    Py_XDECREF(seq);
    Py_XDECREF(t0);
    Py_XDECREF(append);
    Py_XDECREF(inner);
    Py_XDECREF(run);
    return PyObject_Vectorcall(PY_OPEN, args, (size_t)nargs, NULL);
}

/* ``x // 1000`` as Python floors it */
static long long
floor_us(long long x)
{
    long long q = x / 1000;
    return (x % 1000 != 0 && x < 0) ? q - 1 : q;
}

/* the request's three records (``end_alone``'s ``rec``) into the run's lane; 0, or -1 */
static int
lane_add(PyObject *lane, PyObject *rec)
{
    PyObject *q = PyObject_GetAttr(lane, s_q);
    PyObject *soft_obj = q == NULL ? NULL : PyObject_GetAttr(lane, s_soft);
    if (soft_obj == NULL) {
        Py_XDECREF(q);
        return -1;
    }
    Py_ssize_t soft = PyLong_AsSsize_t(soft_obj);
    Py_DECREF(soft_obj);
    Py_ssize_t n = soft == -1 && PyErr_Occurred() ? -1 : PyObject_Length(q);
    int rc = -1;
    if (n < 0) {
        goto done;
    }
    if (n < soft) {  /* flat: nothing the GC tracks is left behind */
        PyObject *out = PyList_CheckExact(q) ? (PyList_SetSlice(q, n, n, rec) < 0 ? NULL
                                                                                 : Py_None)
                                             : PyObject_CallMethodOneArg(q, s_extend, rec);
        rc = out == NULL ? -1 : 0;
        if (out != NULL && out != Py_None) {
            Py_DECREF(out);
        }
        goto done;
    }
    for (Py_ssize_t at = 0; at < 24; at += 8) {
        PyObject *part = PyTuple_GetSlice(rec, at, at + 8);
        PyObject *out = part == NULL ? NULL : PyObject_CallMethodOneArg(lane, s_append, part);
        Py_XDECREF(part);
        if (out == NULL) {
            goto done;
        }
        Py_DECREF(out);
    }
    rc = 0;
done:
    Py_DECREF(q);
    return rc;
}

/* the span id an event records now (``end_alone``: ``span and span.span_id``) */
static PyObject *
span_id_now(void)
{
    PyObject *ctx = span_context_now();
    if (ctx == NULL || ctx == Py_None) {
        return ctx;
    }
    PyObject *ident = PyObject_GetAttr(ctx, s_span_id);
    Py_DECREF(ctx);
    return ident;
}

/* ``finish_request(run, exc=None)``: see the top of this file */
static PyObject *
finish_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "finish_request(run, exc=None)");
        return NULL;
    }
    PyObject *run = args[0], *exc = nargs == 2 ? args[1] : Py_None;
    if (Py_TYPE(run) != RUN_TYPE || exc != Py_None || RUN_TYPE == NULL) {
        goto python;
    }
    PyObject *status = FIELD(run, run_at[R_STATUS]), *shape = FIELD(run, run_at[R_SHAPE]);
    PyObject *done = FIELD(run, run_at[R_DONE]), *t0 = FIELD(run, run_at[R_T0]);
    PyObject *lane = FIELD(run, run_at[R_LANE]), *token = FIELD(run, run_at[R_TOKEN]);
    if (FIELD(run, run_at[R_FINISHED]) != Py_False || FIELD(run, run_at[R_PENDING]) != Py_True ||
        status == NULL || shape == NULL || done == NULL || t0 == NULL || lane == NULL ||
        token == NULL || !PyLong_CheckExact(t0)) {
        goto python;
    }
    if (status != Py_None) {
        int overflow;
        long long code = PyLong_CheckExact(status)
                             ? PyLong_AsLongLongAndOverflow(status, &overflow) : 500;
        if (!PyLong_CheckExact(status) || overflow || code >= 500) {
            goto python;  /* a failed run, or a status that takes the full checks */
        }
    }
    PyObject *parts = PyTuple_CheckExact(shape) && PyTuple_GET_SIZE(shape) == 2
                          ? PyTuple_GET_ITEM(shape, 1) : NULL;
    if (parts == NULL || !PyTuple_CheckExact(parts) || PyTuple_GET_SIZE(parts) != 2 ||
        (done != Py_None && !PyLong_CheckExact(done))) {
        goto python;
    }
    PyObject *part = PyTuple_GET_ITEM(parts, done == Py_None && status != Py_None);
    PyObject *fields[4] = {FIELD(run, run_at[R_SEQ]), FIELD(run, run_at[R_CUSTOMER]),
                           FIELD(run, run_at[R_EXTERNAL]), FIELD(run, run_at[R_CORRELATION])};
    for (int i = 0; i < 4; i++) {
        if (fields[i] == NULL) {
            goto python;
        }
    }
    /* from here the run is ended here, whatever happens: a failure is reported, and the
     * context restored all the same */
    Py_INCREF(run);
    put(run, run_at[R_FINISHED], Py_True);
    put(run, run_at[R_PENDING], Py_False);
    PyObject *t = NULL, *ident = NULL, *duration = NULL, *rec = NULL, *append;
    int rc = -1;
    if ((append = PyObject_GetAttr(lane, s_append)) == NULL) {
        goto ended;
    }
    put_new(run, run_at[R_APPEND], append);  /* what comes after (a late thread) names it */
    if ((t = perf_ns()) == NULL || (ident = span_id_now()) == NULL) {
        goto ended;
    }
    long long start = PyLong_AsLongLong(t0);
    long long end = PyLong_AsLongLong(done == Py_None ? t : done);
    if (PyErr_Occurred() || (duration = PyLong_FromLongLong(floor_us(end - start))) == NULL) {
        goto ended;
    }
    PyObject *items[24] = {
        MARKS[0], fields[0], fields[1], part, fields[2], fields[3], t0, Py_None,
        MARKS[1], fields[0], part, fields[3], t, status, duration, ident,
        MARKS[2], fields[0], s_completed, Py_None, Py_None, t, Py_None, Py_None,
    };
    if ((rec = PyTuple_New(24)) == NULL) {
        goto ended;
    }
    for (int i = 0; i < 24; i++) {
        PyTuple_SET_ITEM(rec, i, Py_NewRef(items[i]));
    }
    rc = lane_add(lane, rec);

ended:
    if (rc < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyObject *out = value == NULL ? NULL : PyObject_CallOneArg(REPORT, value);
        Py_XDECREF(out);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        PyErr_Clear();
    }
    if (PyContextVar_Reset(SCOPE, token) < 0) {
        PyErr_Clear();  /* left in another context (``_restore``): that one is not ours */
    }
    Py_XDECREF(rec);
    Py_XDECREF(duration);
    Py_XDECREF(ident);
    Py_XDECREF(t);
    Py_DECREF(run);
    Py_RETURN_NONE;

python:
    return PyObject_CallMethodOneArg(run, s_finish, exc);
}

/* ``RequestSend(run, send)``: the ASGI middleware's ``send`` (see the top of this file) */
typedef struct {
    PyObject_HEAD
    PyObject *run;
    PyObject *send;
    vectorcallfunc vectorcall;
} Watch;

/* ``message[key]``, or ``message.get(key)`` when ``missing_ok`` (new reference; NULL: an
 * exception, or nothing when ``missing_ok``) */
static PyObject *
item(PyObject *message, PyObject *key, int missing_ok)
{
    if (PyDict_CheckExact(message)) {
        PyObject *value = PyDict_GetItemWithError(message, key);
        if (value == NULL && !PyErr_Occurred() && !missing_ok) {
            PyErr_SetObject(PyExc_KeyError, key);
        }
        return Py_XNewRef(value);
    }
    if (!missing_ok) {
        return PyObject_GetItem(message, key);
    }
    PyObject *value = PyObject_CallMethod(message, "get", "O", key);
    if (value == Py_None) {
        Py_CLEAR(value);
    }
    return value;
}

static int
is_text(PyObject *value, PyObject *text)
{
    return value == text || (PyUnicode_Check(value) && PyUnicode_Compare(value, text) == 0);
}

static PyObject *
watch_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Watch *self = (Watch *)op;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "send(message)");
        return NULL;
    }
    PyObject *message = args[0];
    PyObject *kind = item(message, s_type, 0);
    if (kind == NULL) {
        return NULL;
    }
    int rc = 0;
    if (is_text(kind, s_start)) {  /* the status, even if the client has gone */
        PyObject *status = item(message, s_status, 0);
        rc = status == NULL ? -1 : PyObject_SetAttr(self->run, s_status, status);
        Py_XDECREF(status);
    }
    else if (is_text(kind, s_body) || is_text(kind, s_pathsend)) {
        int last = 1;  /* ``http.response.pathsend``: a whole file the server sends */
        if (is_text(kind, s_body)) {
            PyObject *more = item(message, s_more_body, 1);
            last = more == NULL ? (PyErr_Occurred() ? -1 : 1) : !PyObject_IsTrue(more);
            Py_XDECREF(more);
        }
        PyObject *done = last == 1 ? PyObject_GetAttr(self->run, s_done_ns) : NULL;
        if (last < 0 || (last == 1 && done == NULL)) {
            rc = -1;
        }
        else if (done == Py_None) {  /* the last chunk is handed on now */
            PyObject *now = perf_ns();
            rc = now == NULL ? -1 : PyObject_SetAttr(self->run, s_done_ns, now);
            Py_XDECREF(now);
        }
        Py_XDECREF(done);
    }
    Py_DECREF(kind);
    if (rc < 0) {
        return NULL;
    }
    return PyObject_Vectorcall(self->send, args, 1, NULL);
}

static PyObject *
watch_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *run, *send;
    static char *names[] = {"run", "send", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:RequestSend", names, &run, &send)) {
        return NULL;
    }
    Watch *self = (Watch *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->run = Py_NewRef(run);
    self->send = Py_NewRef(send);
    self->vectorcall = watch_vectorcall;
    return (PyObject *)self;
}

static int
watch_traverse(Watch *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->run);
    Py_VISIT(self->send);
    return 0;
}

static int
watch_clear(Watch *self)
{
    Py_CLEAR(self->run);
    Py_CLEAR(self->send);
    return 0;
}

static void
watch_dealloc(Watch *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    watch_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMemberDef watch_members[] = {
    {"run", T_OBJECT_EX, offsetof(Watch, run), READONLY, NULL},
    {"send", T_OBJECT_EX, offsetof(Watch, send), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Watch, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot watch_slots[] = {
    {Py_tp_new, watch_new},
    {Py_tp_dealloc, watch_dealloc},
    {Py_tp_traverse, watch_traverse},
    {Py_tp_clear, watch_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, watch_members},
    {Py_tp_doc, "RequestSend(run, send): an ASGI send that notes the request's status and "
                "when its last body chunk was handed on."},
    {0, NULL},
};

static PyType_Spec watch_spec = {
    .name = "drip._speedups.RequestSend",
    .basicsize = sizeof(Watch),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .slots = watch_slots,
};

static PyObject *
bind_requests(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"run_type", "meter_type", "open", "overrides", "fallback",
                            "defaults", "discard", "refresh", "span_context", "trace_id_hex",
                            "check_name", "start_first", "report", "marks", "unmatched",
                            NULL};
    PyObject *run_type, *meter_type, *open, *overrides, *fallback, *defaults, *discard, *refresh;
    PyObject *span_context, *trace_id_hex, *check_name, *start_first, *report, *marks;
    PyObject *unmatched;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OO!OO!OOOOOOOO!U:bind_requests",
                                     names, &PyType_Type, &run_type, &PyType_Type, &meter_type,
                                     &open, &PyList_Type, &overrides, &fallback, &PyDict_Type,
                                     &defaults, &discard, &refresh,
                                     &span_context, &trace_id_hex, &check_name, &start_first,
                                     &report, &PyTuple_Type, &marks, &unmatched)) {
        return NULL;
    }
    if (SCOPE == NULL || BOUND_INTERP != PyInterpreterState_Get()) {
        PyErr_SetString(PyExc_ImportError,
                        "drip._speedups is not bound in this interpreter: use the Python path");
        return NULL;
    }
    if (PyTuple_GET_SIZE(marks) != 3) {
        PyErr_SetString(PyExc_TypeError, "marks: (REQUEST_START, REQUEST_EVENT, REQUEST_END)");
        return NULL;
    }
    Py_ssize_t run_offsets[R_COUNT], meter_offsets[M_COUNT];
    if (offsets_of((PyTypeObject *)run_type, run_fields, R_COUNT, run_offsets) < 0 ||
        offsets_of((PyTypeObject *)meter_type, meter_fields, M_COUNT, meter_offsets) < 0) {
        return NULL;
    }
    memcpy(run_at, run_offsets, sizeof(run_at));
    memcpy(meter_at, meter_offsets, sizeof(meter_at));
    Py_XSETREF(RUN_TYPE, (PyTypeObject *)Py_NewRef(run_type));
    Py_XSETREF(METER_TYPE, (PyTypeObject *)Py_NewRef(meter_type));
    Py_XSETREF(PY_OPEN, Py_NewRef(open));
    Py_XSETREF(OVERRIDES, Py_NewRef(overrides));
    Py_XSETREF(FALLBACK, Py_NewRef(fallback));
    Py_XSETREF(DEFAULTS, Py_NewRef(defaults));
    Py_XSETREF(DISCARD, Py_NewRef(discard));
    Py_XSETREF(REFRESH, Py_NewRef(refresh));
    Py_XSETREF(SPAN_CONTEXT, Py_NewRef(span_context));
    Py_XSETREF(TRACE_ID_HEX, Py_NewRef(trace_id_hex));
    Py_XSETREF(CHECK_NAME, Py_NewRef(check_name));
    Py_XSETREF(START_FIRST, Py_NewRef(start_first));
    Py_XSETREF(REPORT, Py_NewRef(report));
    Py_XSETREF(UNMATCHED, Py_NewRef(unmatched));
    for (int i = 0; i < 3; i++) {
        Py_XSETREF(MARKS[i], Py_NewRef(PyTuple_GET_ITEM(marks, i)));
    }
    Py_RETURN_NONE;
}

static PyMethodDef web_methods[] = {
    {"bind_requests", (PyCFunction)(void (*)(void))bind_requests, METH_VARARGS | METH_KEYWORDS,
     "Hand in what a web request's compiled run shares with drip.integrations._web (once)."},
    {"open_request", (PyCFunction)(void (*)(void))open_request, METH_FASTCALL,
     "open_request(meter, customer, method, route, request_id): RequestMeter.open, compiled."},
    {"finish_request", (PyCFunction)(void (*)(void))finish_request, METH_FASTCALL,
     "finish_request(run, exc=None): the request run's finish, compiled."},
    {NULL, NULL, 0, NULL},
};

int
web_init(PyObject *module)
{
    struct {
        PyObject **name;
        const char *text;
    } texts[] = {
        {&s_client, "_client"}, {&s_recorder_obj, "_recorder_obj"}, {&s_lane_of, "lane"},
        {&s_external_run_id, "external_run_id"},
        {&s_completed, "COMPLETED"}, {&s_finish, "finish"}, {&s_span_id, "span_id"},
        {&s_type, "type"}, {&s_status, "status"}, {&s_more_body, "more_body"},
        {&s_done_ns, "done_ns"}, {&s_start, "http.response.start"},
        {&s_body, "http.response.body"}, {&s_pathsend, "http.response.pathsend"},
        {&s_extend, "extend"},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if ((*texts[i].name = PyUnicode_InternFromString(texts[i].text)) == NULL) {
            return -1;
        }
    }
    if (PyModule_AddFunctions(module, web_methods) < 0) {
        return -1;
    }
    PyObject *type = PyType_FromSpec(&watch_spec);
    if (type == NULL || PyModule_AddObject(module, "RequestSend", type) < 0) {
        Py_XDECREF(type);
        return -1;
    }
    return 0;
}
