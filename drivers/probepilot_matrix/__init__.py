"""probepilot's driver for Scienta Omicron MATRIX (``driver = "matrix"``).

MATRIX is driven through its remote-access library (``RemoteAccess_API.dll`` in the MATRIX
SDK): properties of the experiment's elements are read and written by name, functions are called
by name, and data (scan lines, spectra) arrive as events of observed entities.

* :mod:`~probepilot_matrix.transport` is the boundary: the :class:`MatrixTransport` protocol,
  the library's return codes and how they become probepilot errors.
* :mod:`~probepilot_matrix.dll` loads the real library with ctypes (Windows, MATRIX running).
* :mod:`~probepilot_matrix.simulated` is a simulated MATRIX behind the same interface, backed
  by probepilot's simulated microscope.
* :mod:`~probepilot_matrix.driver` maps the driver contract onto MATRIX objects, identically
  for both transports; :mod:`~probepilot_matrix.names` lists every MATRIX name it uses and
  where that name comes from (what must be verified on a real installation).
"""
