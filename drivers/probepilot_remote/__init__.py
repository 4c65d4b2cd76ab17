"""The remote driver: a driver hosted by ``probepilot serve`` on another machine, used as if it
were local (``driver = "remote"``)."""
