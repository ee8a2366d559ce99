"""``tfrobust <command> [--flags]``: absl-based entry point with subcommands.

Each command lives in its own module with a frozen ``Config`` dataclass (one field per flag, see
:mod:`tfrobust.cli._flags`; the dataset settings come from :class:`tfrobust.cli._common.DataConfig`),
``run(config) -> dict`` callable from Python, and ``main(argv)``; the flags are defined from
``Config`` just before parsing. Only the chosen command's module is imported, so each command
sees exactly its own flags; a bad flag (or a value its ``Config``
refuses) ends the program with one line on stderr and exit code 2. ``--version`` prints the
version and ``--helpfull`` every flag, both with exit code 0.

The console script enters through :mod:`tfrobust_launch`, which hides TensorFlow's start-up noise
(it must act before TensorFlow is imported, which importing this module already does). Here,
after parsing, TensorFlow's Python logger is set to print each warning once and to skip INFO
lines; ``--verbose_tf`` (any command) or ``TFROBUST_TF_LOGS=1`` keeps every TensorFlow log.
"""

from __future__ import annotations

import importlib
import os
import sys

# TF-MOT needs the legacy-Keras switch before TensorFlow is first imported; this is the
# process entry point, so setting it here mutates nothing a library user owns.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import logging  # noqa: E402

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from tfrobust._version import __version__  # noqa: E402
from tfrobust.cli import _flags  # noqa: E402

flags.DEFINE_bool("verbose_tf", False, "Keep all of TensorFlow's start-up and INFO logs (also: "
                  "TFROBUST_TF_LOGS=1).")

COMMANDS = {
    "train": ("tfrobust.cli.train", "train a model on a dataset and write it with metrics.json"),
    "compress": ("tfrobust.cli.compress", "prune/jp/deep_compression/lowrank/cluster/binarize a saved model"),
    "convert": ("tfrobust.cli.convert", "convert a saved model to .tflite (float/float16/dynamic/int8)"),
    "export-c": ("tfrobust.cli.export_c", "write a .tflite as a .h/.cc pair with its TFLM arena size"),
    "pipeline": ("tfrobust.cli.pipeline", "train, evaluate, compress, convert, deploy-check and report"),
    "attack": ("tfrobust.cli.attack", "run one attack (fgsm/pgd/apgd) on a saved model; JSON + Markdown"),
    "evaluate": ("tfrobust.cli.evaluate", "robust accuracy with a preset (fast/standard/adaptive) + report"),
    "lbfgs": ("tfrobust.cli.lbfgs", "box-constrained L-BFGS (Szegedy et al.) on a saved model"),
    "one-pixel": ("tfrobust.cli.one_pixel", "one-pixel attack (Su et al.) on a saved or .tflite model"),
    "proactive": ("tfrobust.cli.proactive", "proactive defense: retrain on attack A, test on held-out B"),
    "feedback": ("tfrobust.cli.feedback", "feedback learning: adversarial examples for the weakest classes"),
    "lottery": ("tfrobust.cli.lottery", "lottery tickets: iterative magnitude pruning with rewinding"),
    "substitute": ("tfrobust.cli.substitute", "black-box substitute attack (Papernot et al.), labels only"),
}

USAGE = "usage: tfrobust <command> [--flag=value ...]   (tfrobust <command> --help for its flags)"
VERBOSE = ("TensorFlow's start-up and INFO logs are hidden; add --verbose_tf after the command "
           "(or set TFROBUST_TF_LOGS=1) to see them.")


def _usage() -> str:
    lines = [USAGE, "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join([*lines, "", VERBOSE])


def _tensorflow_logging(verbose: bool) -> None:
    """Print each TensorFlow warning once; without ``verbose`` skip TensorFlow's INFO lines."""
    logger = logging.getLogger("tensorflow")
    if logger.handlers:
        # TensorFlow gave its logger a handler at import and absl.app adds one to the root logger:
        # without this every TensorFlow warning is printed twice.
        logger.propagate = False
    if not verbose:
        logger.setLevel(logging.WARNING)
        # absl.app runs at INFO, so TensorFlow's absl INFO lines (checkpoint sharding timings on
        # every save) would print; an explicit --verbosity wins.
        if not flags.FLAGS["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)


def _fail(message: str, code: int = 2):
    print(f"tfrobust: error: {message}", file=sys.stderr)
    sys.exit(code)


def _parse(argv):
    """absl ``flags_parser``: pick the command, import it, parse only its flags."""
    rest = argv[1:]
    if "--version" in rest:
        print(f"tfrobust {__version__}")
        sys.exit(0)
    if not rest or rest[0] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if rest else 2)
    command = rest[0]
    if command not in COMMANDS:
        _fail(f"unknown command {command!r}; expected one of: {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[command][0])
    _flags.define(module.Config, module.__name__)
    if any(a in ("-h", "--help", "--helpshort") for a in rest[1:]):
        print(f"usage: tfrobust {command} [--flag=value ...]\n")
        print(flags.FLAGS.module_help(module.__name__))
        sys.exit(0)
    if "--helpfull" in rest[1:]:
        # absl's own --helpfull exits with 1; asking for help is not an error.
        print(f"usage: tfrobust {command} [--flag=value ...]\n")
        print(flags.FLAGS.get_help())
        sys.exit(0)
    try:
        remaining = flags.FLAGS([f"tfrobust {command}", *rest[1:]])
    except flags.Error as e:
        _fail(f"{command}: {e}")
    if len(remaining) > 1:
        _fail(f"{command}: unexpected positional arguments {remaining[1:]}; flags look like --name=value")
    return [command, module]


def _dispatch(parsed):
    command, module = parsed
    # TFROBUST_TF_LOGS is read here as in tfrobust_launch.tf_logs_requested; not imported from it:
    # the launcher imports this module, and the dependency runs one way (launcher -> cli).
    env_logs = os.environ.get("TFROBUST_TF_LOGS", "").strip() not in ("", "0")
    _tensorflow_logging(flags.FLAGS.verbose_tf or env_logs)
    try:
        code = module.main([command])
    except _flags.ConfigError as e:
        _fail(f"{command}: {e}")  # a refused flag value: exit 2, like absl's own flag errors
    except (ValueError, TypeError, FileNotFoundError) as e:
        # Argument and data errors get one readable line, not a traceback.
        _fail(f"{command}: {type(e).__name__}: {e}", code=1)
    sys.exit(code or 0)


def main(argv=None):
    """Console-script entry point."""
    app.run(_dispatch, argv=argv if argv is not None else sys.argv, flags_parser=_parse)


if __name__ == "__main__":
    main()
