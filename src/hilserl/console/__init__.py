"""The browser console for the person in the loop (`hilserl train --console`).

`hub.ConsoleHub` is the only thing the control loop and the web server share: the loop puts the latest numbers,
frames and events in and takes pending commands out, never waiting on a browser. `server.ConsoleServer` serves the
page and the live feed from its own thread and event loop; `session.Console` is what the training loop is handed.
"""

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


class ConsoleError(ValueError):
    """A console setting that cannot be used (bind address without a token, port taken); the message says which."""


from hilserl.console.hub import ConsoleHub  # noqa: E402

__all__ = ["ConsoleError", "ConsoleHub", "DEFAULT_HOST", "DEFAULT_PORT"]
