"""diffrepro: a reproducible benchmark and paper-replication suite for diffusion models."""

__version__ = "0.1.0"
