"""probepilot's terminal dashboard (Textual): watch and steer a run, locally or over SSH.

``probepilot run`` opens it (``--headless`` runs without it). It composes the panels every loaded
plugin registers through ``probepilot_register_panels`` (its own built-in panels register the
same way) and talks to the run only through the run's :class:`~probepilot.link.RunLink`.
"""
