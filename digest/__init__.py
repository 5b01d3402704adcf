"""paperdigest: turns the daily flood of new research papers into a short, personal digest."""

__version__ = "0.1.0"
