# Sourced by scripts/demo and scripts/test: makes .venv (Python 3.11+) and installs auditkit
# with the extras named in $1 into it, again only when pyproject.toml or the extras change.
# AUDITKIT_VENV names another environment; AUDITKIT_CONSTRAINTS a pip constraints file.
extras="$1"
venv="${AUDITKIT_VENV:-.venv}"
constraints=()
if [ -n "${AUDITKIT_CONSTRAINTS:-}" ]; then constraints=(-c "$AUDITKIT_CONSTRAINTS"); fi

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x "$venv/bin/python" ]; then
    python=$(find_python) || {
        echo "auditkit needs Python 3.11 or newer; none found on PATH (set PYTHON=/path/to/python3.11)." >&2
        exit 2
    }
    echo "Creating $venv with $("$python" --version 2>&1)" >&2
    "$python" -m venv "$venv"
fi

# The stamp holds the hash of what was installed from and the extras installed; a request
# for extras already there (the demo's after the tests') installs nothing.
stamp="$venv/.auditkit-installed"
hash="$(cat pyproject.toml ${AUDITKIT_CONSTRAINTS:-} | sha256sum | cut -c1-16)"
installed="$(cat "$stamp" 2>/dev/null || true)"
needed=""
if [ "${installed%% *}" = "$hash" ]; then
    for extra in ${extras//,/ }; do
        case ",${installed#* }," in *",$extra,"*) ;; *) needed=yes ;; esac
    done
else
    needed=yes
fi
if [ -n "$needed" ]; then
    if [ "${installed%% *}" = "$hash" ]; then
        extras="${installed#* },$extras"
    fi
    echo "Installing auditkit[$extras] into $venv (first run takes a few minutes)" >&2
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip &&
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${constraints[@]}" -e ".[$extras]" ||
        { echo "Installing auditkit[$extras] failed; see the pip output above." >&2; exit 1; }
    echo "$hash $extras" > "$stamp"
fi
