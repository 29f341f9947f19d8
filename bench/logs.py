"""Figure 7: reading a job's 50 MiB of stdout through the API, page by page, and what serving it
costs the runtime process in memory."""
from __future__ import annotations

import threading
import time
from typing import Any

from .api import Api
from .processes import Runtime

LINE_BYTES = 1024  # 1023 characters and a newline: the log shipper makes one event per line
TOTAL_BYTES = 50 * 1024 * 1024


def command(total: int = TOTAL_BYTES, line: int = LINE_BYTES) -> str:
    # Not run through a shell by the service: bash -c gives the pipe.
    return f"bash -c 'yes $(printf %0{line - 1}d 0) | head -c {total}'"


class RssSampler:
    """Samples the runtime's resident set every few ms, next to the kernel's own peak (VmHWM)."""

    def __init__(self, runtime: Runtime, interval: float = 0.01) -> None:
        self._runtime, self._interval = runtime, interval
        self._stop = threading.Event()
        self.peak_kib = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self._runtime.rss_kib())
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


def read_output(runtime: Runtime, total: int = TOTAL_BYTES) -> dict[str, Any]:
    api = Api(runtime.api)
    wrote_at = time.monotonic()
    accepted = api.post_job("logs", {"image": "ubuntu", "command": command(total)})
    execution, _ = api.wait_final(accepted["executionUrl"], timeout=300, interval=0.2)
    if execution["status"] != "done":
        raise RuntimeError(f"the output job ended {execution['status']}: {execution.get('error')}")
    job_seconds = time.monotonic() - wrote_at

    hwm_reset = runtime.reset_peak_rss()
    before_kib = runtime.rss_kib()
    url: str | None = f"{accepted['jobUrl']}/stdout"
    received = pages = 0
    first_byte_ms = None
    page_bytes: list[int] = []
    with RssSampler(runtime) as sampler:
        started = time.perf_counter()
        while url:
            with api.http.get(url, stream=True, timeout=300) as response:
                response.raise_for_status()
                size = 0
                for chunk in response.iter_content(chunk_size=65536):
                    if first_byte_ms is None and chunk:
                        first_byte_ms = (time.perf_counter() - started) * 1000
                    size += len(chunk)
                received += size
                page_bytes.append(size)
                pages += 1
                url = response.links.get("next", {}).get("url")
        total_ms = (time.perf_counter() - started) * 1000
    peak_kib = max(sampler.peak_kib, runtime.rss_kib("VmHWM") if hwm_reset else 0)
    return {"bytesWritten": total, "bytesReceived": received, "pages": pages, "pageBytes": page_bytes,
            "firstByteMs": first_byte_ms, "totalMs": total_ms, "jobSeconds": job_seconds,
            "rssBeforeMiB": before_kib / 1024, "rssPeakMiB": peak_kib / 1024,
            "growthMiB": (peak_kib - before_kib) / 1024, "peakFrom": "VmHWM reset before serving" if hwm_reset
            else "sampled VmRSS every 10 ms"}
