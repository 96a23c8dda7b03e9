"""Renderers: report model in, files out. Nothing here computes an analysis."""
