"""The ``lipbench`` command line."""
