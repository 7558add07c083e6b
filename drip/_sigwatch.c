/* drip._sigwatch: hear a stop signal even when the main thread cannot.
 *
 * Python runs a signal's handler on the main thread, between bytecodes. A signal that comes
 * while the main thread is about to block in C (a `multiprocessing` lock, a pipe read), after
 * its last check and before the system call, only marks the handler to run: the call then
 * blocks as if nothing happened, for good if nothing else wakes it. `Pool.terminate()` meets
 * exactly that: the pool holds its task queue's lock and sends SIGTERM to each worker waiting
 * for that lock. With SIGTERM's default action the kernel ends the process whatever its
 * threads do; with drip's handler (installed to flush first) a worker hit in that window hangs,
 * and the pool's `with` block with it.
 *
 * `watch(fd, signals)` puts a C handler in front of the handler each of those signals has
 * (Python's own, which still runs after it): it writes the signal's number to `fd`, a pipe a
 * drip thread reads (`drip._delivery.sigwatch`), which can flush and end the process without
 * the main thread. It writes only in the process that called `watch` (a fork child that has
 * not watched yet stays silent: the pipe is its parent's). `default(signum)` sets the default
 * action back from any thread (`signal.signal` only works on the main thread).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#ifndef NSIG
#define NSIG 65
#endif

static struct sigaction previous[NSIG];
static volatile sig_atomic_t watch_fd = -1;
static volatile pid_t watch_pid = 0;

static void
on_signal(int signum, siginfo_t *info, void *context)
{
    int saved = errno;
    if (watch_fd >= 0 && getpid() == watch_pid) {
        unsigned char byte = (unsigned char)signum;
        ssize_t written = write(watch_fd, &byte, 1); /* a full pipe: that signal is said */
        (void)written;
    }
    errno = saved;
    struct sigaction *before = &previous[signum];
    if (before->sa_flags & SA_SIGINFO) {
        if (before->sa_sigaction != NULL) {
            before->sa_sigaction(signum, info, context);
        }
    }
    else if (before->sa_handler != SIG_DFL && before->sa_handler != SIG_IGN) {
        before->sa_handler(signum);
    }
}

static int
is_ours(const struct sigaction *action)
{
    return (action->sa_flags & SA_SIGINFO) && action->sa_sigaction == on_signal;
}

/* a signal number from Python: 1..NSIG-1, or -1 with an exception */
static int
signal_number(PyObject *obj)
{
    long signum = PyLong_AsLong(obj);
    if (signum == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (signum <= 0 || signum >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal number out of range: %ld", signum);
        return -1;
    }
    return (int)signum;
}

/* watch(fd, signals): the signals whose handler is now preceded by the write (a list) */
static PyObject *
watch(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *signals;
    if (!PyArg_ParseTuple(args, "iO", &fd, &signals)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(signals, "signals must be a sequence of signal numbers");
    if (seq == NULL) {
        return NULL;
    }
    PyObject *done = PyList_New(0);
    if (done == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    watch_pid = getpid();
    watch_fd = fd;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        int signum = signal_number(item);
        if (signum < 0) {
            goto error;
        }
        struct sigaction now;
        if (sigaction(signum, NULL, &now) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto error;
        }
        if (!is_ours(&now)) {
            if (now.sa_flags & SA_SIGINFO ? now.sa_sigaction == NULL
                                          : (now.sa_handler == SIG_DFL || now.sa_handler == SIG_IGN)) {
                continue; /* no handler to precede: the default action or ignored */
            }
            previous[signum] = now;
            struct sigaction ours = now;
            ours.sa_sigaction = on_signal;
            ours.sa_flags = now.sa_flags | SA_SIGINFO;
            if (sigaction(signum, &ours, NULL) != 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                goto error;
            }
        }
        if (PyList_Append(done, item) < 0) {
            goto error;
        }
    }
    Py_DECREF(seq);
    return done;
error:
    Py_DECREF(seq);
    Py_DECREF(done);
    return NULL;
}

/* default(signum): the signal's default action, set from any thread */
static PyObject *
set_default(PyObject *self, PyObject *arg)
{
    int signum = signal_number(arg);
    if (signum < 0) {
        return NULL;
    }
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    if (sigaction(signum, &action, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* watching(signum): whether the signal's handler is preceded by the write now */
static PyObject *
watching(PyObject *self, PyObject *arg)
{
    int signum = signal_number(arg);
    if (signum < 0) {
        return NULL;
    }
    struct sigaction now;
    if (sigaction(signum, NULL, &now) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyBool_FromLong(is_ours(&now) && watch_pid == getpid());
}

static PyMethodDef methods[] = {
    {"watch", watch, METH_VARARGS,
     "watch(fd, signals): write each signal's number to fd before its handler runs."},
    {"default", set_default, METH_O, "default(signum): the default action, from any thread."},
    {"watching", watching, METH_O, "watching(signum): whether this process watches it now."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "drip._sigwatch",
    "Hear a stop signal on a drip thread when the main thread cannot run its handler.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__sigwatch(void)
{
    return PyModule_Create(&module_def);
}
