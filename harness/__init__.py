"""lipbench: verification and benchmarks for Lipschitz constraints on GAN discriminators."""
__version__ = "0.1.0"
