"""Scan an image archive for anomalous patches: streaming, resumable, on local cores or on Ray.

Entry point: :func:`edgeae.scan.run.scan_archive` (``edgeae scan`` on the command line). Modules:
``archive`` (walk folders, manifests, globs), ``config`` (the scan's settings), ``pipeline`` (tile in strips and
score; shared by both engines), ``accumulator`` (an image's scored chunks joined into its result),
``scoring`` (model -> patch scorer), ``state`` (results folder, manifest, resume), ``local`` and
``ray_engine`` (engines; ``ray_connect``: joining a Ray cluster; ``errors``: what ends a scan on either engine),
``report`` (merged results, top-k gallery, throughput and LRO NAC estimate),
``synth`` (a synthetic archive from the real orbital images). Nothing heavy is imported here.
"""
