"""A pre-signed (SigV4 query string) URL of a route of a deployment whose API uses IAM
authorization, to open in a browser, typically a live log page (docs/deploy.md#access):

    .venv/bin/python -m infra.presign https://<api>.execute-api.<region>.amazonaws.com/api/tasks/t/jobs/<j>/stream

Signed with your AWS credentials (the usual chain: environment, profile, SSO ...), which need
execute-api:Invoke on the route. The page it opens carries its own short-lived token for the
websocket, so the URL is needed only to load the page.
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import Any

EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def region_of(url: str, default: str | None = None) -> str:
    from urllib.parse import urlsplit

    found = EXECUTE_API_HOST.match(urlsplit(url).hostname or "")
    if found:
        return found.group(1)
    if default:
        return default
    raise ValueError(f"cannot tell the region of {url}: pass --region (custom domains do not say it)")


def presign(url: str, region: str, credentials: Any, expires: int = 3600) -> str:
    """`url` with the query parameters of a GET signed for execute-api, valid `expires` seconds."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(credentials, "execute-api", region, expires=expires).add_auth(request)
    return request.url


def main(argv: list[str] | None = None) -> int:
    import botocore.session

    parser = argparse.ArgumentParser(description="Pre-sign a GET of a fastlane route (IAM authorization).")
    parser.add_argument("url")
    parser.add_argument("--region", help="the API's region, when the URL is on a custom domain")
    parser.add_argument("--expires", type=int, default=3600, help="seconds the URL stays valid (default 3600)")
    args = parser.parse_args(argv)
    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        print("no AWS credentials found", file=sys.stderr)
        return 2
    region = region_of(args.url, args.region or session.get_config_variable("region"))
    print(presign(args.url, region, credentials.get_frozen_credentials(), args.expires))
    return 0


if __name__ == "__main__":
    sys.exit(main())
