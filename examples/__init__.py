"""Examples of third-party lipbench extensions (not part of the installed package)."""
