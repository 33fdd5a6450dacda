"""The bottom layer: atomic files and hashing, the snapshot format, image grids and I/O, seeded latents.

Nothing here imports another part of ganforge, so train, infer, metrics, the CLI and the studio can all use it.
"""
