"""The performance harness: `make bench` runs `python -m bench` (bench/__main__.py).

    server     one `python -m app` launcher (bench, scripts/soak.py and tests use it)
    proc       one /proc reader: RSS, peak RSS, CPU time of a process (and its children)
    images     the real images measured: 256×256, 520×696, 1024×1024
    inprocess  raw session.run, segment(), segment_bytes() and each stage called directly
    load       HTTP at a given concurrency, start-up to /ready, the memory soak
    anchors    Keras predict on the same weights; the measured matmul peak, FLOPs per pixel
    previous   the served model's segment() beside the model it replaced (1.3.0, out of git)
    report     results → Markdown tables (data only; what they mean: docs/performance.md)
    throughput images three ways, nuclei-client's requests per image, one whole-slide job
"""
