"""Training: models, data, losses, optimiser settings and loops."""
