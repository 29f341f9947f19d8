"""How each request is authenticated: nothing (the local runtime), HTTP Basic, an API Gateway API
key (x-api-key), or AWS Signature Version 4 for an IAM-authorized deployment (service
execute-api, credentials from botocore's chain: a profile, the environment, SSO, an instance role)."""
from __future__ import annotations

import base64
from typing import Any

from .config import Settings, region_of
from .errors import AUTH, USAGE, CliError

SIGV4_SERVICE = "execute-api"


class Auth:
    """Adds a request's credentials to its headers."""

    mode = "none"

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """The headers to send: `headers` and the credentials (for SigV4, a signature of the
        method, the URL, these headers and the body)."""
        return dict(headers)

    def websocket_headers(self) -> dict[str, str]:
        """Headers for the live-log websocket's handshake (only Basic credentials open it; the
        other modes use a stream token, docs/live-logs.md#authorisation)."""
        return {}


class Basic(Auth):
    mode = "basic"

    def __init__(self, user: str, password: str) -> None:
        self._value = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        return {**headers, "Authorization": self._value}

    def websocket_headers(self) -> dict[str, str]:
        return {"Authorization": self._value}


class ApiKey(Auth):
    mode = "api-key"

    def __init__(self, key: str) -> None:
        self._key = key

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        return {**headers, "x-api-key": self._key}


class SigV4(Auth):
    """Signs with botocore's own signer, credentials from its chain (refreshed as they expire)."""

    mode = "sigv4"

    def __init__(self, profile: str | None, region: str | None, url: str) -> None:
        import botocore.session
        from botocore.exceptions import ProfileNotFound

        try:
            self._session = botocore.session.Session(profile=profile)
            found = region or region_of(url) or self._session.get_config_variable("region")
        except ProfileNotFound:
            raise CliError(f"the AWS profile '{profile}' is not in your AWS config; give an existing --aws-profile",
                           USAGE) from None
        if not found:
            raise CliError("SigV4 needs the API's AWS region: it is not in the URL; give --aws-region "
                           "(or FASTLANE_AWS_REGION, or a region in your AWS profile)", USAGE)
        self.region: str = found
        self.profile = profile
        self._credentials: Any = None

    def credentials(self) -> Any:
        """Frozen credentials for one signature (refreshable ones renew themselves)."""
        from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

        try:
            if self._credentials is None:
                self._credentials = self._session.get_credentials()
            frozen = self._credentials.get_frozen_credentials() if self._credentials is not None else None
        except ProfileNotFound:
            raise CliError(f"the AWS profile '{self.profile}' is not in your AWS config; give an existing --aws-profile",
                           USAGE) from None
        except (BotoCoreError, ClientError) as error:
            login = "aws sso login" + (f" --profile {self.profile}" if self.profile else "")
            raise CliError(f"cannot load AWS credentials ({error}); for SSO run `{login}`", AUTH) from None
        if frozen is None or not frozen.access_key:
            where = f"the profile '{self.profile}'" if self.profile else "the environment or the default profile"
            raise CliError(f"no AWS credentials found in {where}: give --aws-profile, set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, or run `aws sso login`", AUTH)
        return frozen

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(self.credentials(), SIGV4_SERVICE, self.region).add_auth(request)
        return {str(k): str(v) for k, v in request.headers.items()}


def auth_for(settings: Settings) -> Auth:
    if settings.auth == "basic":
        return Basic(settings.user or "", settings.password or "")
    if settings.auth == "api-key":
        return ApiKey(settings.api_key or "")
    if settings.auth == "sigv4":
        return SigV4(settings.aws_profile, settings.aws_region, settings.url)
    return Auth()
