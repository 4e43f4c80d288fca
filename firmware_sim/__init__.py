"""edgeae.firmware_sim: the flight-like runtime. Depends on numpy and one interpreter; never imports torch.

Installed as ``edgeae.firmware_sim`` (the folder sits at the repository top). Modules, one concept each: ``mission``
/ ``mission_sections`` (TOML mission files, their checked sections), ``frames`` / ``validate`` / ``reader_wrappers``
(camera frames in strips, checks), ``boot`` (what a boot sets up before its first frame), ``loop`` (the frame loop),
``frame_intake`` / ``frame_run`` / ``frame_work`` / ``strip_scoring`` / ``onboard_recon`` / ``frame_outcome`` (a
frame's entry, its run, its strips, their scoring, its onboard reconstruction, its products and record),
``run_finish`` (a frame's finish, the pass opportunity, the run's end), ``stops`` (interruptions, storage failures,
the downlink pass), ``run_summary``, ``state`` (the mission state kept in ``--out``), ``onboard`` (the models a boot
loads), ``score`` / ``score_engine`` / ``topk`` (patch scoring, its worker threads, the top-k keeper), ``budget`` /
``memory_meter`` / ``heap`` / ``cpu`` (memory/time budgets and degradation ladder, RSS measured per frame, the
allocator policy, CPU features), ``report`` / ``report_inputs`` / ``report_charts`` / ``report_gallery`` /
``report_gallery_index`` / ``report_packets`` / ``report_html`` (the run's HTML report, its gallery's index of the
pass files, the patches read from them), ``queue`` / ``queue_files`` / ``queue_items`` / ``queue_ledger`` /
``atomic_files`` / ``sparse_stream`` (persistent downlink queue, its item files and index checked, its records, the
finished items compacted into totals, crash-safe writes, CCSDS packets of the neutral ``edgeae.wire``), ``guard`` /
``faults`` (model integrity, fault injection), ``telemetry`` / ``telemetry_lines``
(the summary and frame accounting, the JSON lines), ``bench`` / ``bench_limits`` / ``bench_machine`` /
``bench_model`` (board benchmark, its limits, machine record and model file), ``cli`` / ``cli_preflight`` /
``cli_overrides`` / ``cli_commands`` / ``cli_outputs`` / ``cli_advice`` / ``cli_dispatch`` / ``cli_console``
(``firmware-sim``), ``runtime`` /
``artifact_file`` / ``interpreters`` (artifact loader), ``testing`` (tiny artifacts for tests). Of ``edgeae`` it
imports only the numpy-only modules listed in ``docs/firmware_sim.md`` ("What the flight runtime imports"; a test
checks it). See ``docs/firmware_sim.md``.
"""

import os as _os

# onnxruntime's telemetry off before it can be imported (edgeae/__init__.py says why), also where this folder is
# imported by its top-level name (tests, scripts run from the repository root); a value the user set is kept
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
