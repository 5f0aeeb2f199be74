"""Import samples from CSV, JSONL and .zip files: create, run and undo import jobs.

Policy: a file goes in whole or not at all. One pass reads every row and checks it, so the
report names every bad row; one bad row refuses the file. The good rows are staged out of
sight while the file is read: on PostgreSQL they are COPYed into the table inside one
transaction that commits only if the whole file was good; elsewhere they are spooled to a
temporary file and then written in batches of ``IMPORT_BATCH_ROWS``, each in its own
transaction with its samples tagged by the job. If writing fails (a database error, a full
disk, Ctrl-C), the job deletes every sample it tagged and records why; if its worker dies,
the next delivery of the task does the same before it starts again. ``creating`` and
``running`` hold the job's lifecycle, ``reading`` the pass, ``staging`` where its rows wait.
"""
from annotation.services.imports.creating import (
    import_format_for,
    import_job_create,
    import_job_create_from_path,
)
from annotation.services.imports.running import import_job_run, import_job_start

__all__ = [
    "import_format_for",
    "import_job_create",
    "import_job_create_from_path",
    "import_job_run",
    "import_job_start",
]
