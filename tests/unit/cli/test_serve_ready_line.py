"""The tile servers print their ready line only once SIGINT and SIGTERM stop them cleanly: a script
or test that waits for the line and then signals must never meet the default action (SIGTERM
killed the server with -15, an inherited ignored SIGINT left it serving; seen on a loaded machine)."""

import signal

from looking_glass.cli import serve


class _Server:
    stopped = False

    def stop(self):
        self.stopped = True


class _ReadyCheck:
    """A stdout that records, when the ready line is written, which handlers are installed, then
    delivers the signal a waiting script would send."""

    def __init__(self):
        self.handlers = None

    def write(self, text):
        if "Ctrl-C" in text and self.handlers is None:
            self.handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            signal.raise_signal(signal.SIGTERM)
        return len(text)

    def flush(self):
        pass


def test_handlers_are_installed_before_the_ready_line(monkeypatch):
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out, server, stopped = _ReadyCheck(), _Server(), []
    monkeypatch.setattr("sys.stdout", out)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job inherits it
        signal.signal(signal.SIGTERM, lambda *_: stopped.append("default action"))
        serve._serve_until_interrupted(server, "serving x (Ctrl-C to stop)", lambda: stopped.append("on_stop"))
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    assert out.handlers == {signal.SIGINT: serve._stop_on_signal, signal.SIGTERM: serve._stop_on_signal}
    assert server.stopped and stopped == ["on_stop"]
