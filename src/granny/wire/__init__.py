"""The wire: every message granny sends between processes, and how it is framed.

Messages are msgspec Structs, tagged and validated on decode; framing is in :mod:`granny.wire.framing`.
"""

from . import messages as _messages
from .framing import FrameReader, encode_frame, frame_bytes
from .messages import *  # noqa: F403

__all__ = [*_messages.__all__, "FrameReader", "encode_frame", "frame_bytes"]
