"""Mixtures: examples-proportional rates with caps, templating at export, group split, dedup, manifests."""

from dataforge.export.mixture import Mixture, load_mixture
from dataforge.export.rates import allocate
from dataforge.export.run import ExportResult, export, export_frames

__all__ = ["ExportResult", "Mixture", "allocate", "export", "export_frames", "load_mixture"]
