"""auditkit.testing: test your own notebooks and audits in CI, against a real Redis.

Installed with auditkit, the pytest plugin (`auditkit.testing.plugin`) gives every test
suite the fixtures `auditkit_redis` (a client) and `auditkit_redis_url` (its URL): a real,
durable embedded redis-server per session, flushed per test. With them:

- `seed(client, stream, source)` writes events and consumer-group state from a DataFrame,
  a sample file (`auditkit sample STREAM --output FILE` cuts one from a real stream), or an
  Archive;
- `run_notebook(path, parameters={...})` executes a notebook with parameters injected and
  returns its variables, or fails naming the cell, its source and the error;
- `assert_findings(findings, expect=[...], allow=[...])` fails listing the missing and the
  unexpected findings.

See docs/testing.md.
"""

import typing as _typing

from auditkit._lazy import lazy_names as _lazy_names

if _typing.TYPE_CHECKING:
    from auditkit.testing._findings import assert_findings
    from auditkit.testing._notebooks import NotebookFailed, NotebookResult, run_notebook
    from auditkit.testing._samples import Sample, read_sample, write_sample
    from auditkit.testing._seed import seed

__all__ = [
    "NotebookFailed",
    "NotebookResult",
    "Sample",
    "assert_findings",
    "read_sample",
    "run_notebook",
    "seed",
    "write_sample",
]

# The names load on first use (PEP 562): pytest imports the plugin module, and with it this
# package, in every run where auditkit is installed, and a run that never seeds or executes
# a notebook should not pay for pandas and nbclient.
_LAZY = {
    "NotebookFailed": "auditkit.testing._notebooks",
    "NotebookResult": "auditkit.testing._notebooks",
    "Sample": "auditkit.testing._samples",
    "assert_findings": "auditkit.testing._findings",
    "read_sample": "auditkit.testing._samples",
    "run_notebook": "auditkit.testing._notebooks",
    "seed": "auditkit.testing._seed",
    "write_sample": "auditkit.testing._samples",
}


__getattr__, __dir__ = _lazy_names(__name__, _LAZY, __all__)
