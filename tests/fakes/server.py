"""What every local fake shares: a real werkzeug server on 127.0.0.1 (a free
port), serving the fake's WSGI app `_app` on a daemon thread.

    class FakeThing(LocalServer):
        thread_name = "fake-thing"
        def _app(self, environ, start_response): ...
    fake = FakeThing().start();  fake.address  # http://127.0.0.1:<port>;  fake.stop()
"""
from __future__ import annotations

import threading

from werkzeug.serving import make_server


class LocalServer:
    thread_name = "fake"

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self):
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()
