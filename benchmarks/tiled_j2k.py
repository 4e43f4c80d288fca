"""Independently tiled JPEG 2000 over the lossy link: moved to :mod:`edgeae.ground.tiled_j2k` (session 39), where
``edgeae downlink simulate --compare j2k-tiled`` and ``edgeae downlink plan`` use it too; this module re-exports it
for the link benchmark's callers."""

from __future__ import annotations

from edgeae.ground.tiled_j2k import FILL as FILL
from edgeae.ground.tiled_j2k import MIN_TILE as MIN_TILE
from edgeae.ground.tiled_j2k import TILE as TILE
from edgeae.ground.tiled_j2k import TiledResult as TiledResult
from edgeae.ground.tiled_j2k import at_wire_bytes as at_wire_bytes
from edgeae.ground.tiled_j2k import encode_tiles as encode_tiles
from edgeae.ground.tiled_j2k import over_link_tiled as over_link_tiled
from edgeae.ground.tiled_j2k import rebuild as rebuild
from edgeae.ground.tiled_j2k import send_order as send_order
from edgeae.ground.tiled_j2k import strip_comments as strip_comments
from edgeae.ground.tiled_j2k import tile_at_bytes as tile_at_bytes
from edgeae.ground.tiled_j2k import tile_boxes as tile_boxes
from edgeae.ground.tiled_j2k import tile_packets as tile_packets
