"""The PNG helpers the simulator's preview uses; they live in the core
(:mod:`probepilot.store.png`), re-exported here for code that imported them from the sim."""

from probepilot.store.png import colourise, levelled, read_png_size, write_png

__all__ = ["colourise", "levelled", "read_png_size", "write_png"]
