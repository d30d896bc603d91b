"""TLS for the planner's RPC port: server contexts, and the dialling side's verification.

Theory of operation
- The planner serves TLS when it is given a certificate and key; everything else dials with TLS
  when ``GRANNY_TLS_CA`` names a CA file, and verifies the planner's certificate against it
  (hostname included: the address's host must be in the certificate, or ``GRANNY_TLS_SERVER_NAME``
  names what to check instead). There is no "TLS without verification" mode: it would let an
  on-path peer read the handshake's challenges and inject frames, which is what TLS is for.
- Workers hand ``GRANNY_TLS_CA`` down to their granules through the environment, so a granule's
  connection (and a client that a granule opens) is verified the same way.
- The handshake's HMAC still runs inside TLS: TLS proves the planner's identity and protects every
  later frame, the HMAC proves the peer knows the token or the secret.
- Same-host paths stay plaintext: the planner's Unix socket (mode 0600) and clients' result lanes
  never leave the machine.
"""

from __future__ import annotations

import socket
import ssl
from functools import lru_cache

from ..config import ENV_TLS_CA, ENV_TLS_SERVER_NAME, env
from ..errors import AuthError, ConfigError, ConnectionLostError


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The planner's context (TLS 1.2 or later); raises ConfigError on an unreadable or wrong file."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert} with key {key}: {exc}") from None
    return ctx


def client_ca() -> str:
    """The CA file dialling verifies the planner with, or "" for plain TCP."""
    return env(ENV_TLS_CA)


@lru_cache(maxsize=4)
def client_context(ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS CA file {ca} ({ENV_TLS_CA}): {exc}") from None
    return ctx


def wrap_client(sock: socket.socket, host: str, ca: str) -> ssl.SSLSocket:
    """Run the TLS handshake on a connected socket (closing it on failure) and return the TLS socket.

    Raises AuthError when the planner's certificate is not trusted by ``ca`` or does not name
    ``host``, ConnectionLostError when the peer does not speak TLS or goes away."""
    name = env(ENV_TLS_SERVER_NAME) or host
    try:
        return client_context(ca).wrap_socket(sock, server_hostname=name)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise AuthError(f"TLS: the planner's certificate was refused ({exc.verify_message}; checked against "
                        f"{ENV_TLS_CA}={ca} for the name {name!r}): point {ENV_TLS_CA} (or --tls-ca) at the CA "
                        f"that signed it") from None
    except ssl.SSLError as exc:
        sock.close()
        raise ConnectionLostError(f"TLS handshake with the planner failed ({exc.reason or exc}); is the planner "
                                  f"serving TLS (--tls-cert)?") from None
    except OSError as exc:
        sock.close()
        raise ConnectionLostError(f"connection lost during the TLS handshake: {exc}") from None
