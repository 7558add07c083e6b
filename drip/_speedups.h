/* What the parts of ``drip._speedups`` share: ``_speedups.c`` (the metered call, the wire)
 * defines these and binds them once (``bind``); ``_speedups_web.c`` (a web request's run)
 * reads them. */
#ifndef DRIP_SPEEDUPS_H
#define DRIP_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

extern PyObject *SCOPE;   /* drip.context.SCOPE */
extern PyObject *SEQ;     /* drip._records.SEQ, an itertools.count */
extern PyObject *OTEL;    /* drip.otel's module dict */
extern PyInterpreterState *BOUND_INTERP;

/* interned attribute names: "q", "soft", "append", "CV" */
extern PyObject *s_q, *s_soft, *s_append, *s_CV;

/* time.perf_counter_ns() as an int (new reference), or NULL with an exception */
PyObject *perf_ns(void);
/* the current OpenTelemetry span object (new reference; None when there is none) */
PyObject *current_span(void);

/* adds the web request's functions and types to the module; 0, or -1 with an exception */
int web_init(PyObject *module);

#endif
