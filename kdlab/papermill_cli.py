"""papermill's command line as `kdlab.runner` starts it for every headless run, one second sooner.

papermill imports nbformat, nbformat imports jsonschema, and jsonschema, where the `rfc3987-syntax` package is
installed (the Jupyter server's `jsonschema[format-nongpl]` brings it), compiles that package's RFC 3987 grammar at
import to check the "iri" string format: 1.0 s on a 2-core CPU, in every notebook run
(python-jsonschema/jsonschema#1392). No notebook schema uses a string format, so this process marks the package
absent: jsonschema then leaves "iri" unchecked, as it does wherever the package is not installed, and validates
notebooks exactly as before.

    python -m kdlab.papermill_cli IN.ipynb OUT.ipynb -k python3 ...   # the arguments of `python -m papermill`
"""
import sys

SKIPPED = "rfc3987_syntax"


def main():
    sys.modules.setdefault(SKIPPED, None)   # `import rfc3987_syntax` now raises ImportError
    from papermill.cli import papermill

    papermill(prog_name="papermill")


if __name__ == "__main__":
    main()
