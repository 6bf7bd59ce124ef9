import types

import auditkit


def test_all_is_sorted_and_unique():
    assert auditkit.__all__ == sorted(set(auditkit.__all__))


def test_all_matches_the_public_names():
    # dir(): most names load on first use (PEP 562), so vars() holds only those used yet.
    public = {
        name
        for name in dir(auditkit)
        if not name.startswith("_") and not isinstance(getattr(auditkit, name), types.ModuleType)
    }
    assert public == set(auditkit.__all__)


def test_importing_the_package_loads_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import sys, auditkit; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'duckdb', 'redis') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", "`import auditkit` imports " + done.stdout


def test_every_error_derives_from_the_root():
    errors = [
        getattr(auditkit, n) for n in auditkit.__all__ if isinstance(getattr(auditkit, n), type)
    ]
    errors = [e for e in errors if issubclass(e, BaseException)]
    assert len(errors) >= 9
    assert all(issubclass(e, auditkit.AuditKitError) for e in errors)


def test_specific_errors_are_also_builtins():
    assert issubclass(auditkit.StreamNotFound, KeyError)
    assert issubclass(auditkit.WrongKeyType, TypeError)
    assert issubclass(auditkit.InvalidStreamID, ValueError)
    assert issubclass(auditkit.ConnectionFailed, ConnectionError)
    assert issubclass(auditkit.PermissionDenied, PermissionError)
    assert issubclass(auditkit.RedisServerNotFound, FileNotFoundError)


def test_the_package_is_typed():
    from importlib.resources import files

    assert files("auditkit").joinpath("py.typed").is_file()


def test_errors_show_their_public_path():
    import traceback

    errors = [getattr(auditkit, n) for n in auditkit.__all__]
    errors = [e for e in errors if isinstance(e, type) and issubclass(e, BaseException)]
    assert {e.__module__ for e in errors} == {"auditkit"}
    error = auditkit.StreamNotFound("Stream `orders` does not exist.", stream="orders")
    line = traceback.format_exception_only(error)[-1]
    assert line == "auditkit.StreamNotFound: Stream `orders` does not exist.\n"
