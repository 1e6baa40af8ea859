"""stratabatch-perf: synthetic bursty traffic through every mode and the peers, side by side.

Modules: ``workload`` (seeded requests with ground truth), ``backend`` (the simulated expensive
backend and its cost model), ``modes`` (unbatched, batching without dedup, the embedded
BatchProcessor), ``mpqueue_server`` (the multiprocessing.Queue batching server, the peer),
``modes_engine`` (stratabatch-engine with client processes), ``modes_ray`` (Ray Serve, optional),
``procs`` (client processes), ``harness`` (runs modes, checks every outcome against the ground
truth), ``sweep`` (window_ms x max_size), ``report`` (tables, plot) and ``cli`` (the
``stratabatch-perf`` command). See docs/perf.md.
"""
