"""Loader worker processes when the main process stops them."""
import sys
import threading


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
