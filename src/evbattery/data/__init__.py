"""Datasets: the folder contract, importers, the synthetic generator, cutouts and loaders."""
