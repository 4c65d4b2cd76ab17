"""probepilot across machines: ZeroMQ transport with msgpack headers (DESIGN.md §5).

- :mod:`~probepilot.bus.wire`: the message format (a msgpack header plus raw array buffers) and
  its strict decoder.
- :mod:`~probepilot.bus.codec`: model types (frames, scan settings, errors ...) to and from what
  the wire carries.
- :mod:`~probepilot.bus.host`: ``probepilot serve``, a driver hosted for remote clients.
- :mod:`~probepilot.bus.publisher`: a run's event stream for watchers on other machines.
- :mod:`~probepilot.bus.watcher`: :class:`~probepilot.bus.watcher.RemoteLink`, the watcher side
  (a :class:`~probepilot.link.RunLink`, so the dashboard works remotely unchanged), and
  :func:`~probepilot.bus.watcher.send_command` (``probepilot send``).
- :mod:`~probepilot.bus.address`: tcp addresses, checked without ZeroMQ (the config reads them).
- :mod:`~probepilot.bus.keys`: CurveZMQ keys and the allow-list of clients.

The remote driver proxy itself is a plugin (``drivers/probepilot_remote``), registered like any
other driver. Nothing here is imported by ``import probepilot``: the embedded single-process
default never loads ZeroMQ.
"""
