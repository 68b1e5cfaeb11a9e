"""Each projection's read model: the MetaData its tables are declared in, by projection
name. A projection is rebuilt, laid out and operated on with its own tables only
(`projections/rebuild.py`, `projections/layout.py`, `eddy projections`): the console's
(every context's `tables.py` registers in `projections.tables.metadata`) and the
statistics' (`projections/statistics/tables.py`) are apart, each with its own versions."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import MetaData

from projections.statistics import tables as statistics
from projections.tables import PROJECTION_NAME
from projections.tables import metadata as console

READ_MODELS: Mapping[str, MetaData] = {
    PROJECTION_NAME: console,
    statistics.STATISTICS: statistics.metadata,
}
