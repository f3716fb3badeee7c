"""Serve the demo from an installed wheel and check it answers (``make dist-check``).

Run with the clean venv's Python from outside the source tree, so that
``flask_gatekeeper`` can only come from the wheel.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import urllib.error
import urllib.request

from werkzeug.serving import make_server


def main(demo_path: str) -> None:
    import flask_gatekeeper

    if "site-packages" not in (flask_gatekeeper.__file__ or ""):
        raise SystemExit(f"flask_gatekeeper imported from {flask_gatekeeper.__file__}, not a wheel")
    spec = importlib.util.spec_from_file_location("demo", demo_path)
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    server = make_server("127.0.0.1", 0, demo.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/global_plus_specific"
    try:
        statuses = []
        for _ in range(2):
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
    finally:
        server.shutdown()
    if statuses != [200, 429]:
        raise SystemExit(f"demo served from the wheel answered {statuses}, expected [200, 429]")
    print(f"wheel OK: flask_gatekeeper {flask_gatekeeper.__version__} served the demo: {statuses}")


if __name__ == "__main__":
    main(sys.argv[1])
