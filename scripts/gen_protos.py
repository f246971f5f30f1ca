"""Regenerates policy_client/wire/generated/ from protos/ (or checks it is fresh).

Usage:
    python scripts/gen_protos.py          # regenerate
    python scripts/gen_protos.py --check  # exit 1 if the generated code is stale
"""

import argparse
import difflib
import pathlib
import re
import sys
import tempfile

from grpc_tools import protoc
import grpc_tools

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_PACKAGE_DIR = pathlib.Path("tfa_policy_grpc") / "v1"
# The Open Inference Protocol (KServe v2, package `inference`; see
# protos/inference/README.md), generated into the same package.
OIP_PACKAGE_DIR = pathlib.Path("inference")
OUT_DIR = ROOT / "policy_client" / "wire" / "generated"
INIT = '"""Generated protobuf and gRPC code for tfa_policy_grpc.v1 and inference (OIP): do not edit.\n\nRegenerate with `make proto` from the files in protos/.\n"""\n'
# protoc writes absolute imports (`from tfa_policy_grpc.v1 import x_pb2`);
# the generated package is nested in policy_client.wire, so they become
# relative. Imports of google/rpc/*.proto stay absolute: Python takes those
# modules from googleapis-common-protos (protos/google/ is a verbatim copy of
# the same files, for code generators in other languages).
_IMPORT = re.compile(r"^from (?:tfa_policy_grpc\.v1|inference) import ", re.MULTILINE)


def generate() -> dict[str, str]:
    """Runs protoc and returns {file name: text} of the generated package."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for package in (PROTO_PACKAGE_DIR, OIP_PACKAGE_DIR)
                    for p in (PROTO_ROOT / package).glob("*.proto"))
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
                f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            sys.exit("protoc failed")
        files = {"__init__.py": INIT}
        for package in (PROTO_PACKAGE_DIR, OIP_PACKAGE_DIR):
            for path in sorted((pathlib.Path(tmp) / package).iterdir()):
                files[path.name] = _IMPORT.sub("from . import ", path.read_text())
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the generated code is stale")
    args = parser.parse_args()
    files = generate()
    if args.check:
        existing = {p.name for p in OUT_DIR.glob("*.py*")} if OUT_DIR.exists() else set()
        stale = sorted(name for name, text in files.items()
                                      if not (OUT_DIR / name).exists() or (OUT_DIR / name).read_text() != text)
        stale += sorted(existing - set(files))
        if stale:
            for name in stale:
                old = (OUT_DIR / name).read_text().splitlines() if (OUT_DIR / name).exists() else []
                sys.stderr.writelines(line + "\n" for line in difflib.unified_diff(
                        old, files.get(name, "").splitlines(), f"committed/{name}", f"regenerated/{name}", lineterm="", n=1))
            print(f"stale generated code in {OUT_DIR.relative_to(ROOT)}: {', '.join(stale)}; run `make proto`",
                        file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in set(p.name for p in OUT_DIR.glob("*.py*")) - set(files):
        (OUT_DIR / stale).unlink()
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    print(f"wrote {len(files)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
