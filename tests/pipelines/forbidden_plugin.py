"""A plugin module with an import-time side effect: the registry must refuse it unimported."""

from __future__ import annotations

from pipelines.core import Transform
from tests.pipelines import plugins

plugins.IMPORTED.append(__name__)


class Evil(Transform):
    def process(self, item: object) -> object:
        return item
