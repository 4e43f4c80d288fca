"""edgeae.firmware_sim: the flight-like runtime. Depends on numpy and one interpreter; never imports torch.

Installed as ``edgeae.firmware_sim`` (the folder sits at the repository top). Modules, one concept each:
``mission`` (TOML mission files), ``frames`` / ``validate`` (camera frames in strips, checks), ``loop`` /
``frame_work`` (the frame loop), ``score`` (patch scoring), ``budget`` (memory/time budgets, degradation
ladder), ``queue`` / ``sparse_stream`` (persistent downlink queue, CCSDS packets), ``guard`` / ``faults``
(model integrity, fault injection), ``telemetry``, ``bench`` (board benchmark), ``cli`` (``firmware-sim``),
``runtime`` (artifact loader) and ``wire`` (downlink products and packets). See ``docs/firmware_sim.md``.
"""
