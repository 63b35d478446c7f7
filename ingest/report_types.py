"""The report types Certainly exports (``reportId``) and the dataset each is archived as.

Example: ``DATASETS[2] == "standard"``; ``dataset_of(MESSAGE_REPORT_ID) == "messages"``.
"""

from __future__ import annotations

#: reportId of Message Data, the API's default: archived as the ``messages`` dataset.
MESSAGE_REPORT_ID = 1
#: The dataset (archive folder) of Message Data.
MESSAGES = "messages"
#: Dataset of each other report type: Standard, Advanced, Content Management.
DATASETS: dict[int, str] = {2: "standard", 3: "advanced", 4: "content_management"}
#: Every reportId the API documents.
REPORT_IDS: tuple[int, ...] = (MESSAGE_REPORT_ID, *DATASETS)


def dataset_of(report_id: int) -> str:
    """The dataset a report type is archived as."""
    return MESSAGES if report_id == MESSAGE_REPORT_ID else DATASETS[report_id]
