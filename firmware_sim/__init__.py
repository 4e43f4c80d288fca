"""edgeae.firmware_sim: the flight-like runtime. Depends on numpy and one interpreter; never imports torch.

Installed as ``edgeae.firmware_sim`` (the folder sits at the repository top). Modules, one concept each:
``mission`` / ``mission_sections`` (TOML mission files, their checked sections), ``frames`` / ``validate``
(camera frames in strips, checks), ``loop`` (the frame loop), ``frame_intake`` / ``frame_work`` /
``strip_scoring`` / ``frame_outcome`` (a frame's entry, its strips, their scoring, its products and record),
``run_summary``, ``score`` / ``score_engine`` / ``topk`` (patch scoring, its worker threads, the top-k keeper),
``budget`` (memory/time budgets, degradation ladder), ``report`` / ``report_inputs`` / ``report_charts`` /
``report_html`` (the run's HTML report), ``queue`` / ``sparse_stream`` (persistent downlink queue, CCSDS
packets), ``guard`` / ``faults`` (model integrity, fault injection), ``telemetry``, ``bench`` (board benchmark),
``cli`` / ``cli_overrides`` / ``cli_outputs`` (``firmware-sim``), ``runtime`` / ``artifact_file`` /
``interpreters`` (artifact loader) and ``wire`` (downlink products and packets). See ``docs/firmware_sim.md``.
"""
