"""The downlink wire format: products as CCSDS space packets (spec: ``docs/wire-format.md``).

Numpy + ``spacepackets`` only, so the flight side can import it. ``products`` holds the dataclasses,
``packets`` builds packets (``packetise``), ``parse`` checks and decodes one packet, ``stream`` reads and
writes packet files.
"""
