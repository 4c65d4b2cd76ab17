"""An example probepilot driver plugin: random frames, the whole driver contract's mandatory
part, and an honest ``NotSupportedError`` for everything else."""

__version__ = "0.1.0"
