"""MPI groups (ordered sets of world ranks) and a minimal Info object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import MpiError
from . import runtime
from .argcheck import index_list

UNDEFINED = -32766
IDENT, SIMILAR, UNEQUAL = 0, 2, 3


class Group:
    """``Group()`` is a null handle (GROUP_NULL); ``Group(group)`` another handle to ``group``."""

    def __init__(self, members: Sequence[int] | Group | None = None) -> None:
        self._null: bool = members is None
        self._members: list[int] = []
        if isinstance(members, Group):
            self._null, self._members = members._null, list(members._members)
        elif members is not None:
            self._members = list(members)

    def Get_size(self) -> int:
        return len(self._members)

    def Get_rank(self) -> int:
        me = runtime.get().world.rank
        return self._members.index(me) if me in self._members else UNDEFINED

    size = property(Get_size)
    rank = property(Get_rank)

    def _ranks(self, ranks: Sequence[int]) -> list[int]:
        """Distinct valid ranks of this group (MPI_ERR_RANK otherwise, as MPI_Group_incl/excl)."""
        out = index_list(ranks)
        if len(set(out)) != len(out) or any(not 0 <= r < len(self._members) for r in out):
            raise MpiError(f"invalid ranks {out} for a group of {len(self._members)}", 6)  # MPI_ERR_RANK
        return out

    def Incl(self, ranks: Sequence[int]) -> Group:
        return Group([self._members[r] for r in self._ranks(ranks)])

    def Excl(self, ranks: Sequence[int]) -> Group:
        drop = set(self._ranks(ranks))
        return Group([w for i, w in enumerate(self._members) if i not in drop])

    def Translate_ranks(self, ranks: Sequence[int] | None = None, group: Group | None = None) -> list[int]:
        ranks = range(len(self._members)) if ranks is None else index_list(ranks)
        if group is None:
            return list(ranks)
        return [group._members.index(self._members[r]) if self._members[r] in group._members else UNDEFINED
                for r in ranks]

    def Compare(self, other: Group) -> int:
        if self._members == other._members:
            return IDENT
        return SIMILAR if sorted(self._members) == sorted(other._members) else UNEQUAL

    @staticmethod
    def Union(a: Group, b: Group) -> Group:
        return Group(a._members + [w for w in b._members if w not in a._members])

    @staticmethod
    def Intersection(a: Group, b: Group) -> Group:
        return Group([w for w in a._members if w in b._members])

    @staticmethod
    def Difference(a: Group, b: Group) -> Group:
        return Group([w for w in a._members if w not in b._members])

    def Free(self) -> None:
        """The handle becomes GROUP_NULL."""
        self._members, self._null = [], True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and self._null == other._null and self._members == other._members

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __bool__(self) -> bool:
        return not self._null

    def __hash__(self) -> int:
        return hash(tuple(self._members))


class Info(dict[str, str]):
    """Hints are accepted and ignored, as MPI allows."""

    @classmethod
    def Create(cls, items: Any = None) -> Info:
        return cls(items or {})

    def Set(self, key: str, value: str) -> None:
        self[key] = value

    def Get(self, key: str) -> str | None:
        return super().get(key)

    def Delete(self, key: str) -> None:
        self.pop(key, None)

    def Get_nkeys(self) -> int:
        return len(self)

    def Get_nthkey(self, n: int) -> str:
        return list(self)[n]

    def Dup(self) -> Info:
        return Info(self)

    def Free(self) -> None:
        self.clear()


INFO_NULL = Info()
INFO_ENV = Info()
