"""botocore's models parsed once per process, for the local runtime's aws backend and the tests;
never deployed (a Lambda function's process makes its few clients once)."""
from __future__ import annotations

from typing import Any


def share_botocore_models() -> None:
    """Every botocore session reads and parses its own copy of the service models and the
    endpoint rules (JSON files of megabytes), and pynamodb makes a session per thread, so each
    new session paid about 80 ms a client (a fresh emulated account in a test about half a
    second). The files never change while a process runs: one parsed copy for the process,
    handed out as botocore hands its own cached copy to every caller within one session."""
    from botocore import loaders

    if getattr(loaders.Loader, "shared_models", False):
        return
    cache: dict[tuple[Any, ...], Any] = {}

    def shared(method: Any) -> Any:
        def load(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = (method.__name__, tuple(self.search_paths), args, tuple(sorted(kwargs.items())))
            if key not in cache:
                cache[key] = method(self, *args, **kwargs)
            return cache[key]

        return load

    for name in ("list_available_services", "determine_latest_version", "list_api_versions",
                 "load_service_model", "load_data_with_path"):
        setattr(loaders.Loader, name, shared(getattr(loaders.Loader, name)))
    loaders.Loader.shared_models = True  # type: ignore[attr-defined]

