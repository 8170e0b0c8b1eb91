"""Loader worker processes: what they need from the system, and quiet stops."""
import os
import sys
import tempfile
import threading

# Workers hand tensors to the main process over Unix sockets that multiprocessing creates at
# <temporary folder>/pymp-XXXXXXXX/listener-XXXXXXXX; Linux caps a socket path at 107 bytes.
# Past that a worker fails to send, and the loader waits for it forever.
SOCKET_PATH_MAX = 107
SOCKET_SUFFIX = len('/pymp-xxxxxxxx/listener-xxxxxxxx')


class WorkerTempDirError(RuntimeError):
    """The temporary folder is too long a path for loader workers' sockets."""


def worker_tempdir_problem(what, num_workers):
    """One line when ``num_workers`` > 0 loader workers of ``what`` (a config key) cannot
    work with this process's temporary folder, else None."""
    if not num_workers or not sys.platform.startswith('linux'):
        return None
    folder = tempfile.gettempdir()
    limit = SOCKET_PATH_MAX - SOCKET_SUFFIX
    if len(os.fsencode(folder)) <= limit:
        return None
    return (f'{what}: the temporary folder {folder} is {len(os.fsencode(folder))} bytes long; '
            f'loader workers exchange data over Unix sockets inside it, which allows at most '
            f'{limit}: set TMPDIR to a shorter folder (e.g. TMPDIR=/tmp) or {what}=0')


def check_worker_tempdir(what, num_workers):
    """Raise WorkerTempDirError (see worker_tempdir_problem) before any worker starts."""
    problem = worker_tempdir_problem(what, num_workers)
    if problem:
        raise WorkerTempDirError(problem)


def silence_orphaned_threads():
    """A worker's helper threads (torch's descriptor sharing: multiprocessing's
    resource_sharer, which reports through ``sys.excepthook``) lose their connection when the
    main process stops the workers on Ctrl-C; their connection errors would print tracebacks
    under the main process's one-line message. Other errors still print."""
    quiet = (ConnectionError, EOFError)
    previous_sys, previous_thread = sys.excepthook, threading.excepthook

    def sys_hook(exc_type, exc, tb):
        if not issubclass(exc_type, quiet):
            previous_sys(exc_type, exc, tb)

    def thread_hook(args):
        if not issubclass(args.exc_type, quiet):
            previous_thread(args)

    sys.excepthook, threading.excepthook = sys_hook, thread_hook
