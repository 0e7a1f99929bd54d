from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    """A list response, `{"object": "list", "data": [...]}`, the shape OpenAI clients expect."""

    object: str = "list"
    data: list[T]
