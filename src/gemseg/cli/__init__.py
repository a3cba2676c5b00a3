"""Command-line interface (``gem``)."""
