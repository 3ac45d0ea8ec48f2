"""xarray backend benchmarks (results in RESULTS.md, section "## xarray backend").

Cases (all on the local disk, page cache warm, dask threaded scheduler with 2 workers
unless said otherwise; times are medians of ``--reps`` interleaved repetitions, with the
minimum and the process CPU time where given):

1. ``chunks={}``: ``xr.open_dataset(p, engine="xarray_om", chunks={}).load()`` (one
   dask task per OM chunk) against a bare dask array with one task per OM chunk whose
   task opens the file by path and reads its chunk (``OmFile(path).root[slices]``),
   and, for scale, a bare dask array sharing one opened ``OmFile``.
2. ``chunks="auto"`` load throughput against omfiles' raw whole read
   (``OmFileReader(p)[...]``) of the same file, the tasks alone, dask's final
   concatenation alone, and the floor of any backend: the same dask blocks filled
   with a constant, loaded the same way.
3. ``open_mfdataset`` over 24 time-chunked files (``combine="by_coords"``): open times
   for omfiles' backend and ours with the same keywords (``chunks``, ``parallel``), load
   times with the tasks alone (no final concatenation) and the numpy floor of that
   concatenation.
4. ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``: whole
   ``.sum()`` against the threaded scheduler (2 threads) on a 250 MB file, a 1 GB file
   (37 tasks) and one task per OM chunk (per-task overhead), with the pickled sizes of
   the dataset and the graph, and two controls without files (``sin(ones).sum()`` on
   the small file's blocks, and big_auto's blocks filled with a constant and summed).

Usage::

    python benchmarks/bench_backend.py [--reps 5] [--quick] [--markdown] [--cases 1,2,3,4]

Set BENCH_TMP to choose where the files are written (default: the system temp dir).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore", message="Found 2 entrypoints")
warnings.filterwarnings("ignore", message="The xarray engine name 'om'")

T0 = 1_700_000_000


def smooth(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Temperature-like (ny, nx, nt) float32 field, rounded to 0.05 like OM int16 data."""
    rng = np.random.default_rng(seed)
    ny, nx, nt = shape
    out = np.empty(shape, np.float32)
    x = np.arange(nx, dtype=np.float32)[:, None]
    t = np.arange(nt, dtype=np.float32)[None, :]
    for j in range(ny):
        row = 15 + 10 * np.sin(j / 40) + 8 * np.cos(x / 55) + 3 * np.sin(t / 6 + seed)
        out[j] = row + rng.normal(0, 0.3, (nx, nt)).astype(np.float32)
    return np.round(out * 20) / 20


def write_file(
    path: str, shape: tuple[int, int, int], chunks: list[int], *, seed=0, t_start=T0
) -> None:
    """A data_run-like file: unnamed root array with a ``time`` child and ``coordinates``."""
    import omfiles

    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    w = omfiles.OmFileWriter(tmp)
    nt = shape[-1]
    times = t_start + 3600 * np.arange(nt, dtype=np.int64)
    kids = [
        w.write_array(times, chunks=[nt], compression="pfor_delta_2d", name="time"),
        w.write_scalar("lat lon time", name="coordinates"),
        w.write_scalar("°C", name="unit"),
    ]
    root = w.write_array(
        smooth(shape, seed),
        chunks=chunks,
        scale_factor=20.0,
        compression="pfor_delta_2d_int16",
        name="",
        children=kids,
    )
    w.close(root)
    os.replace(tmp, path)


class Timings:
    """Wall and process-CPU times per label, over interleaved repetitions.

    The machine may be shared: the report gives the median (typical) and the
    minimum (least disturbed run) of the wall time, and the median CPU time
    (all threads of this process), which shows the work done independently of
    waiting.
    """

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def run(self, label: str, fn) -> object:
        c = time.process_time()
        t = time.perf_counter()
        out = fn()
        self.wall.setdefault(label, []).append(time.perf_counter() - t)
        self.cpu.setdefault(label, []).append(time.process_time() - c)
        return out

    def best(self, label: str) -> tuple[float, float]:
        """(median wall, median CPU) of ``label``."""
        return float(np.median(self.wall[label])), float(np.median(self.cpu[label]))

    def stats(self, label: str) -> dict[str, float]:
        return {
            "wall": float(np.median(self.wall[label])),
            "wall_min": min(self.wall[label]),
            "cpu": float(np.median(self.cpu[label])),
            "n": len(self.wall[label]),
        }


def _read_block_by_path(path: str, key: tuple) -> np.ndarray:
    from xarray_om.format.reader import OmFile

    with OmFile(path) as f:
        return f.root.read(key)


def _read_block_shared(f, key: tuple) -> np.ndarray:
    return f.root.read(key)


def bare_dask_array(path: str, *, shared: bool):
    """A dask array with one task per OM chunk (graph built by hand, no xarray)."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    from xarray_om.format.reader import OmFile

    f = OmFile(path)
    arr = f.root
    name = f"bare-{'shared' if shared else 'path'}-{os.path.basename(path)}"
    grid = arr.chunk_grid
    chunks = tuple(
        tuple(min(c, n - i * c) for i in range(g))
        for n, c, g in zip(arr.shape, arr.chunks, grid, strict=True)
    )
    dsk = {}
    for idx in np.ndindex(*grid):
        key = tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(idx, arr.chunks, arr.shape, strict=True)
        )
        if shared:
            dsk[(name, *idx)] = (_read_block_shared, f, key)
        else:
            dsk[(name, *idx)] = (_read_block_by_path, path, key)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, chunks, dtype=arr.dtype), f


# --------------------------------------------------------------------------- cases


def case_tasks(tmp: str, reps: int, quick: bool) -> dict:
    import dask
    import xarray as xr

    shape = (60, 240, 96) if quick else (120, 480, 96)
    chunks = [1, 10, 96]  # 960 values per chunk: Open-Meteo sized (data_run: ~1000)
    path = os.path.join(tmp, "tasks", "x".join(map(str, shape)), "temperature_2m.om")
    write_file(path, shape, chunks)
    ds = xr.open_dataset(path, engine="xarray_om", chunks={})
    var = ds["temperature_2m"]
    n_tasks = var.data.npartitions
    by_path, f1 = bare_dask_array(path, shared=False)
    shared, f2 = bare_dask_array(path, shared=True)
    np.testing.assert_array_equal(var.values, by_path.compute(scheduler="sync"))
    t = Timings()
    with dask.config.set(scheduler="threads", num_workers=2):
        for _ in range(reps):
            t.run("ours", lambda: var.copy().load())
            t.run("bare_path", by_path.compute)
            t.run("bare_shared", shared.compute)
    ds.close()
    f1.close()
    f2.close()
    return {
        "n_tasks": n_tasks,
        "shape": shape,
        "chunks": chunks,
        "t": {k: t.best(k) for k in ("ours", "bare_path", "bare_shared")},
    }


def case_auto(tmp: str, reps: int, quick: bool) -> dict:
    import dask
    import omfiles
    import xarray as xr

    shape = (181, 720, 240) if quick else (361, 720, 240)
    chunks = [1, 12, 240]  # data/ layout: max(6, 3072 / T)
    path = os.path.join(tmp, "auto", "x".join(map(str, shape)), "temperature_2m.om")
    write_file(path, shape, chunks, seed=1)

    def omfiles_read():
        r = omfiles.OmFileReader(path)
        try:
            return r[...]
        finally:
            r.close()

    import dask.array.core
    import dask.threaded

    ds = xr.open_dataset(path, engine="xarray_om", chunks="auto")
    var = ds["temperature_2m"]
    np.testing.assert_array_equal(var.values, omfiles_read())
    arr = var.data
    graph, keys = dict(arr.__dask_graph__()), arr.__dask_keys__()
    # The floor of any backend: a dask array with the same blocks whose tasks only
    # allocate and fill them (no file, no decoding), loaded the same way.
    import dask.array as da

    floor = da.map_blocks(
        _constant_block,
        dtype=np.float32,
        chunks=arr.chunks,
        meta=np.empty((0,) * arr.ndim, np.float32),
    )
    t = Timings()
    with dask.config.set(scheduler="threads", num_workers=2):
        for _ in range(reps):
            t.run("omfiles_raw", omfiles_read)
            t.run("ours_auto", lambda: var.copy().load())
            # The tasks alone (decoded blocks, no final concatenation) and what
            # dask's final concatenation of such blocks costs by itself.
            blocks = t.run("tasks", lambda: dask.threaded.get(graph, keys, num_workers=2))
            t.run("concat", lambda b=blocks: dask.array.core.concatenate3(b))
            del blocks
            t.run("floor", floor.compute)
    ds.close()
    return {
        "shape": shape,
        "chunks": chunks,
        "dask_chunks": [len(c) for c in var.chunks],
        "mb": int(np.prod(shape)) * 4 / 1e6,
        "t": {k: t.best(k) for k in ("omfiles_raw", "ours_auto", "tasks", "concat", "floor")},
    }


def _concat_floor(shape: tuple[int, int, int], n: int, t: Timings) -> None:
    """What any backend's load of ``n`` time blocks pays after decoding: numpy alone.

    dask's ``load()`` ends with one ``concatenate3`` of the blocks into a fresh
    array (a strided copy along the last axis, single-threaded); the decoded
    blocks are fresh allocations too (first-touch page faults).
    """
    blocks = [np.full(shape, i, np.float32) for i in range(n)]
    t.run("floor concat", lambda: np.concatenate(blocks, axis=-1))

    def fresh_blocks():
        out = []
        for _ in range(n):
            b = np.empty(shape, np.float32)
            b.fill(1.0)
            out.append(b)
        return out

    t.run("floor alloc", fresh_blocks)


def case_mfdataset(tmp: str, reps: int, quick: bool) -> dict:
    import dask
    import dask.threaded
    import xarray as xr
    from omfiles.xarray import OmXarrayEntrypoint

    ny, nx, nt = (90, 180, 24) if quick else (180, 360, 24)
    chunks = [1, 42, nt]  # data_run: [1, 1024 / nTime, nTime]
    paths = []
    for i in range(24):
        p = os.path.join(tmp, "mf", f"{ny}x{nx}", f"day_{i:02d}", "temperature_2m.om")
        write_file(p, (ny, nx, nt), chunks, seed=i, t_start=T0 + 3600 * nt * i)
        paths.append(p)

    omf = dict(engine=OmXarrayEntrypoint)
    ours = dict(engine="xarray_om")
    variants = {
        # omfiles declares no preferred chunks: its default chunks={} is one
        # dask chunk per file, what chunks="auto" gives ours on these files.
        "omfiles": omf,
        "omfiles_auto": dict(omf, chunks="auto"),
        "omfiles_parallel": dict(omf, parallel=True),
        "omfiles_auto_parallel": dict(omf, chunks="auto", parallel=True),
        "ours_auto": dict(ours, chunks="auto"),
        "ours_auto_parallel": dict(ours, chunks="auto", parallel=True),
        # One dask chunk per file, as omfiles' default gives, without dask's auto sizing.
        "ours_-1": dict(ours, chunks=-1),
        "ours_-1_parallel": dict(ours, chunks=-1, parallel=True),
        "ours_chunks_{}": ours,
    }
    loads = ("omfiles", "ours_auto", "ours_chunks_{}")
    t = Timings()
    values, ntasks = {}, {}
    with dask.config.set(scheduler="threads", num_workers=2):
        # Opening alone first (3x the repetitions, interleaved, nothing else in
        # between): per-file costs of ~1 ms are easily blurred by the loads.
        for _ in range(3 * reps):
            for name, kw in variants.items():
                ds = t.run(f"open {name}", lambda kw=kw: xr.open_mfdataset(paths, **kw))
                ntasks[name] = next(iter(ds.data_vars.values())).data.npartitions
                ds.close()
        for rep in range(reps):
            for name in loads:
                if name == "ours_chunks_{}" and rep >= 1:
                    continue  # tens of thousands of tiny tasks: one repetition is enough
                ds = xr.open_mfdataset(paths, **variants[name])
                var = next(iter(ds.data_vars.values()))
                arr = var.data
                graph, keys = dict(arr.__dask_graph__()), arr.__dask_keys__()
                # The tasks alone (no final concatenation): the backend's share.
                t.run(
                    f"tasks {name}",
                    lambda g=graph, k=keys: dask.threaded.get(g, k, num_workers=2),
                )
                t.run(f"load {name}", ds.load)
                if rep == 0:
                    values[name] = var.values
                ds.close()
            _concat_floor((ny, nx, nt), 24, t)
    for name in loads:
        np.testing.assert_array_equal(values[name], values["omfiles"])
    return {
        "files": 24,
        "file_shape": (ny, nx, nt),
        "chunks": chunks,
        "mb": 24 * ny * nx * nt * 4 / 1e6,
        "variants": list(variants),
        "loads": loads,
        "ntasks": ntasks,
        "t": {k: t.stats(k) for k in t.wall},
    }


def _pickled_sizes(ds, total) -> tuple[int, int]:
    """Bytes of the pickled dataset and of the pickled task graph of ``total``."""
    import pickle

    return len(pickle.dumps(ds)), len(pickle.dumps(dict(total.__dask_graph__())))


def _cluster_cpu(client) -> float:
    """Process CPU seconds used so far by the workers, the scheduler and this process.

    LocalCluster runs its scheduler in this process (counted once).
    """
    workers = client.run(time.process_time)
    own = time.process_time()
    if client.run_on_scheduler(os.getpid) != os.getpid():
        own += client.run_on_scheduler(time.process_time)
    return sum(workers.values()) + own


def _cluster_pair(client, t: Timings, label: str, collection, reps: int):
    import dask

    client.compute(collection).result()  # warm the workers (imports, file open)
    r_cluster = r_threads = None
    for _ in range(reps):
        c0 = _cluster_cpu(client)
        r_cluster = t.run(f"{label} cluster", lambda: client.compute(collection).result())
        # CPU of every process of the cluster (the wall time on a shared 2-core
        # machine mostly measures who else runs).
        t.cpu[f"{label} cluster"][-1] = _cluster_cpu(client) - c0
        with dask.config.set(scheduler="threads", num_workers=2):
            r_threads = t.run(f"{label} threads", collection.compute)
    return r_cluster, r_threads


def _constant_block(block_info=None) -> np.ndarray:
    return np.full(block_info[None]["chunk-shape"], 1, np.float32)


def _block_cpu(block) -> float:
    """Process CPU seconds to compute one dask block here (sync scheduler)."""
    c = time.process_time()
    block.compute(scheduler="sync")
    return time.process_time() - c


def _local_cluster():
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    return cluster, distributed.Client(cluster, set_as_default=False)


def case_cluster(tmp: str, reps: int, quick: bool) -> dict:
    import xarray as xr

    small = (181, 720, 240) if quick else (361, 720, 240)
    small_path = os.path.join(tmp, "auto", "x".join(map(str, small)), "temperature_2m.om")
    write_file(small_path, small, [1, 12, 240], seed=1)
    # Realistic size: a global 0.25 degree grid, 10 days hourly (1 GB float32).
    big = (361, 720, 240) if quick else (721, 1440, 240)
    big_path = os.path.join(tmp, "cluster", "x".join(map(str, big)), "temperature_2m.om")
    write_file(big_path, big, [1, 12, 240], seed=2)
    tasks_shape = (60, 240, 96)  # 1,440 tasks of one OM chunk: per-task overhead
    tasks_path = os.path.join(tmp, "tasks", "x".join(map(str, tasks_shape)), "temperature_2m.om")
    write_file(tasks_path, tasks_shape, [1, 10, 96])

    t = Timings()
    out: dict = {}
    runs = (
        ("small", small_path, {"lat": 46, "lon": -1, "time": -1}),  # ~32 MB blocks
        ("big", big_path, {"lat": 20, "lon": -1, "time": -1}),  # ~28 MB blocks
        ("big_auto", big_path, "auto"),  # dask's default block size (128 MiB)
        ("tasks", tasks_path, {}),
    )
    cluster, client = _local_cluster()
    try:
        for label, path, chunks in runs:
            ds = xr.open_dataset(path, engine="xarray_om", chunks=chunks)
            var = ds["temperature_2m"]
            total = var.sum()
            ds_bytes, graph_bytes = _pickled_sizes(ds, total)
            r_cluster, r_threads = _cluster_pair(client, t, label, total, reps)
            assert float(r_cluster) == float(r_threads), (label, r_cluster, r_threads)
            out[label] = {
                "shape": var.shape,
                "n_tasks": var.data.npartitions,
                "mb": var.size * 4 / 1e6,
                "dataset_pickle": ds_bytes,
                "graph_pickle": graph_bytes,
            }
            if label == "big_auto":
                # The same blocks without a file (filled with a constant, then summed):
                # what the cluster makes of this graph's shape by itself.
                import dask.array as da

                blocks = da.map_blocks(
                    _constant_block,
                    dtype=np.float32,
                    chunks=var.data.chunks,
                    meta=np.empty((0,) * var.ndim, np.float32),
                )
                _cluster_pair(client, t, "big_auto_blocks", blocks.sum(), reps)
            if label == "big":
                # One block's read + sum: CPU on a worker against in this process.
                block = var.data.blocks[0, 0, 0].sum()
                for _ in range(reps):
                    t.wall.setdefault("block worker", []).append(0.0)
                    t.cpu.setdefault("block worker", []).append(
                        client.submit(_block_cpu, block, pure=False).result()
                    )
                    t.wall.setdefault("block local", []).append(0.0)
                    t.cpu.setdefault("block local", []).append(_block_cpu(block))
            ds.close()
        # Control without OM files: the same block structure, CPU-bound numpy
        # work (ufuncs release the GIL), to separate the cluster's own overhead
        # on this machine from the backend's.
        import dask.array as da

        x = da.sin(da.ones(small, chunks=(46, -1, -1), dtype=np.float32)).sum()
        _cluster_pair(client, t, "control", x, reps)
    finally:
        client.close()
        cluster.close()
    out["t"] = {k: t.stats(k) for k in t.wall}
    return out


# --------------------------------------------------------------------------- report


def report(results: dict, markdown: bool) -> str:
    lines = []
    if "1" in results:
        r = results["1"]
        n = r["n_tasks"]
        lines.append(
            f"1. chunks={{}}: {r['shape']} float32, OM chunks {r['chunks']} -> {n} tasks "
            "(threads, 2 workers)"
        )
        for k, label in (
            ("ours", "xr.open_dataset(chunks={}).load()"),
            ("bare_path", "bare dask, task opens file by path"),
            ("bare_shared", "bare dask, one shared OmFile"),
        ):
            wall, cpu = r["t"][k]
            lines.append(
                f"   {label:<38} {wall:7.3f} s wall {wall / n * 1e6:6.0f} us/task   "
                f"{cpu:7.3f} s CPU {cpu / n * 1e6:6.0f} us/task"
            )
        lines.append(
            f"   per-task overhead vs bare-by-path: {r['t']['bare_path'][0] / r['t']['ours'][0]:.2f}x"
            " faster (wall)"
        )
    if "2" in results:
        r = results["2"]
        lines.append(
            f'2. chunks="auto": {r["shape"]} float32 ({r["mb"]:.0f} MB), OM chunks '
            f"{r['chunks']}, dask blocks per dim {r['dask_chunks']}"
        )
        for k, label in (("omfiles_raw", "omfiles OmFileReader[...]"), ("ours_auto", "ours")):
            wall, cpu = r["t"][k]
            lines.append(
                f"   {label:<38} {wall:7.3f} s wall {r['mb'] / wall:6.0f} MB/s   {cpu:7.3f} s CPU"
            )
        ratio = r["t"]["omfiles_raw"][0] / r["t"]["ours_auto"][0]
        lines.append(f"   throughput ours / omfiles: {ratio:.2f}x (wall)")
        if "tasks" in r["t"]:
            tasks, concat = r["t"]["tasks"][0], r["t"]["concat"][0]
            lines.append(
                f"   of which: tasks alone {tasks:.3f} s, dask's final concatenation of the "
                f"blocks alone {concat:.3f} s -> with tasks taking no time at most "
                f"{r['t']['omfiles_raw'][0] / concat:.2f}x"
            )
        if "floor" in r["t"]:
            floor = r["t"]["floor"][0]
            lines.append(
                f"   floor: the same blocks filled with a constant (no file, no decoding) and "
                f"loaded the same way {floor:.3f} s -> any backend at most "
                f"{r['t']['omfiles_raw'][0] / floor:.2f}x"
            )
    if "3" in results:
        r = results["3"]
        tt = r["t"]

        def ms(label: str) -> str:
            s = tt[label]
            return f"{s['wall'] * 1e3:6.1f} ms (min {s['wall_min'] * 1e3:6.1f}, CPU {s['cpu'] * 1e3:6.1f})"

        lines.append(
            f"3. open_mfdataset over {r['files']} files {r['file_shape']} float32 "
            f"({r['mb']:.0f} MB; OM chunks {r['chunks']}), combine='by_coords', threads (2 workers); "
            "median wall (min, median CPU)"
        )
        for k in r["variants"]:
            lines.append(f"   open {k:<22} {ms('open ' + k)} {r['ntasks'][k]:6d} tasks")
        for a, b in (
            ("ours_-1", "omfiles"),
            ("ours_-1_parallel", "omfiles_parallel"),
            ("ours_auto", "omfiles"),
            ("ours_auto", "omfiles_auto"),
            ("ours_auto_parallel", "omfiles_parallel"),
            ("ours_auto_parallel", "omfiles_auto_parallel"),
        ):
            ratio = tt[f"open {b}"]["wall"] / tt[f"open {a}"]["wall"]
            cpu = tt[f"open {b}"]["cpu"] / tt[f"open {a}"]["cpu"]
            lines.append(f"   open {a} vs {b}: {ratio:.2f}x faster (wall), {cpu:.2f}x (CPU)")
        for k in r["loads"]:
            lines.append(f"   load {k:<22} {ms('load ' + k)}")
            lines.append(f"     tasks only, no concat {ms('tasks ' + k)}")
        lines.append(f"   floor: np.concatenate of 24 ready blocks  {ms('floor concat')}")
        lines.append(f"   floor: allocate+touch 24 blocks (1 thr)   {ms('floor alloc')}")
        lo, ls = tt["load omfiles"], tt["load ours_auto"]
        tasks = tt["tasks ours_auto"]
        # What load() costs besides the tasks (the final concatenation), measured on
        # ours; it is the same for any backend: the best possible ratio.
        rest_wall, rest_cpu = ls["wall"] - tasks["wall"], ls["cpu"] - tasks["cpu"]
        lines.append(
            f"   load ours_auto vs omfiles: {lo['wall'] / ls['wall']:.2f}x (wall), "
            f"{lo['cpu'] / ls['cpu']:.2f}x (CPU); with tasks taking no time at all at most "
            f"{lo['wall'] / rest_wall:.2f}x (wall), {lo['cpu'] / rest_cpu:.2f}x (CPU)"
        )
    if "4" in results:
        r = results["4"]
        tt = r["t"]
        lines.append(
            "4. .sum() on LocalCluster(2 processes, 1 thread each) vs threads(2); median wall (min)"
        )
        labels = ("small", "big", "big_auto", "big_auto_blocks", "tasks", "control")
        for label in labels:
            if f"{label} cluster" not in tt:
                continue
            c, th = tt[f"{label} cluster"], tt[f"{label} threads"]
            if label == "control":
                desc = "control: sin(ones).sum(), small's blocks, no file"
            elif label == "big_auto_blocks":
                desc = "control: big_auto's blocks filled with a constant, summed, no file"
            else:
                d = r[label]
                desc = (
                    f"{label}: {d['shape']} ({d['mb']:.0f} MB) {d['n_tasks']} tasks, "
                    f"pickled dataset {d['dataset_pickle'] / 1e3:.1f} kB, "
                    f"graph {d['graph_pickle'] / 1e3:.1f} kB"
                )
            lines.append(f"   {desc}")
            lines.append(
                f"      cluster {c['wall']:.3f} s (min {c['wall_min']:.3f})  threads "
                f"{th['wall']:.3f} s (min {th['wall_min']:.3f})  -> cluster/threads speed "
                f"{th['wall'] / c['wall']:.2f}x (min {th['wall_min'] / c['wall_min']:.2f}x)"
            )
            lines.append(
                f"      CPU, all processes: cluster {c['cpu']:.3f} s, threads {th['cpu']:.3f} s "
                f"-> {th['cpu'] / c['cpu']:.2f}x"
            )
            if label == "big":
                lines.append(
                    f"      one block (read + sum) CPU: on a worker {tt['block worker']['cpu'] * 1e3:.1f} ms, "
                    f"in this process {tt['block local']['cpu'] * 1e3:.1f} ms"
                )
            if label == "tasks":
                n = r[label]["n_tasks"]
                lines.append(
                    f"      per task: cluster {c['wall'] / n * 1e6:.0f} us wall "
                    f"{c['cpu'] / n * 1e6:.0f} us CPU, threads {th['wall'] / n * 1e6:.0f} us wall "
                    f"{th['cpu'] / n * 1e6:.0f} us CPU"
                )
    text = "\n".join(lines)
    return f"```\n{text}\n```" if markdown else text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller files")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--cases", default="1,2,3,4")
    args = ap.parse_args(argv)
    tmp = os.path.join(os.environ.get("BENCH_TMP", tempfile.gettempdir()), "xarray_om_bench")
    os.makedirs(tmp, exist_ok=True)
    cases = {
        "1": case_tasks,
        "2": case_auto,
        "3": case_mfdataset,
        "4": case_cluster,
    }
    results = {}
    for c in args.cases.split(","):
        c = c.strip()
        t = time.perf_counter()
        results[c] = cases[c](tmp, args.reps, args.quick)
        print(f"[case {c} done in {time.perf_counter() - t:.1f} s]", file=sys.stderr)
    print(report(results, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
