"""dataforge: declarative dataset construction for instruction tuning."""

__version__ = "0.1.0"
