"""The lowest layer: settings and paths, image and file I/O, console output, metrics, experiment tracking."""
